/** The ids of a run written as bytes (lib/store/id-run.ts): the same bytes as the id string, in the same record. */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { splitMsgId } from "../../lib/server/dedupe.ts";
import { digitCount, dropFromRun, expandMsgIdRuns, idAt, prefixBytes, runIdNumber, writeRunId } from "../../lib/store/id-run.ts";
import { extraFieldsOf } from "../../lib/store/record-fields.ts";
import { recordMsgId, recordSize, writeRecord, writeRecordOfRun } from "../../lib/store/segment.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";
import type { AppendFields } from "../../lib/store/types.ts";
import { layout } from "./segment-kit.ts";

const utf8 = new TextEncoder();
// Every digit-count boundary, and both sides of 2^31 (integer math below it, floating above).
const NUMBERS = [0, 1, 12345, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 9, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER];
for (let k = 1; k <= 15; k++) NUMBERS.push(10 ** k - 1, 10 ** k);

describe("id-run", () => {
  test("digitCount and writeRunId give the bytes of the string prefix + n", () => {
    for (const prefix of ["p:", "é😀-ключ:", "x".repeat(200) + ":"]) {
      for (const n of NUMBERS) {
        const id = idAt({ prefix, from: n }, 0);
        expect(digitCount(n)).toBe(String(n).length);
        const buf = new Uint8Array(300).fill(0xee);
        const written = writeRunId(buf, 5, prefixBytes({ prefix, from: n }), n);
        expect([...buf.subarray(5, 5 + written)]).toEqual([...utf8.encode(id)]);
        expect(buf[4]).toBe(0xee);
        expect(buf[5 + written]).toBe(0xee);
        // The digit count given by the caller (as the topic log does) writes the same.
        const again = new Uint8Array(300).fill(0xee);
        expect(writeRunId(again, 5, prefixBytes({ prefix, from: n }), n, String(n).length)).toBe(written);
        expect([...again]).toEqual([...buf]);
      }
    }
    expect(idAt({ prefix: "a:", from: 9 }, 1)).toBe("a:10");
  });

  test("a record written with a run id is byte for byte the record written with the id string (old and new writers, one reader)", () => {
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    for (const n of NUMBERS) {
      for (const extra of [undefined, { headers: new Uint8Array([9, 8, 7]), expiresAt: 1234 }, { headers: undefined, expiresAt: 5 }]) {
        const id = utf8.encode(`pré:${n}`);
        const size = recordSize(data.length, id.length, extra ? (extra.headers ? 6 : 0) + 11 : 0);
        const old = new Uint8Array(size + 4);
        const run = new Uint8Array(size + 4);
        expect(writeRecord(old, new DataView(old.buffer), 2, 77, 1_700_000_000_000, data, id, extra)).toBe(size);
        expect(writeRecordOfRun(run, new DataView(run.buffer), 2, 77, 1_700_000_000_000, data, utf8.encode("pré:"), n, extra)).toBe(size);
        expect([...run]).toEqual([...old]);
        const withDigits = new Uint8Array(size + 4);
        expect(writeRecordOfRun(withDigits, new DataView(withDigits.buffer), 2, 77, 1_700_000_000_000, data, utf8.encode("pré:"), n, extra, String(n).length)).toBe(size);
        expect([...withDigits]).toEqual([...old]);
        expect(new TextDecoder().decode(recordMsgId(run, new DataView(run.buffer), 2)!)).toBe(`pré:${n}`);
      }
    }
  });

  test("the topic log's appends are on disk byte for byte the records writeRecord makes of the same messages with string ids", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-id-run-"));
    try {
      // Small segments: batches are split across segment files.
      const log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 4096 });
      const expected: Array<{ data: Uint8Array; time: number; fields: AppendFields | undefined }> = [];
      const payload = (i: number) => new Uint8Array((i * 37) % 300).map((_, k) => (i + k) & 0xff);
      let from = 9_990; // ids cross 10,000: their digit count changes inside a batch
      for (let b = 0; b < 12; b++) {
        const n = 1 + ((b * 7) % 23);
        const time = 1_700_000_000_000 + b;
        const data = Array.from({ length: n }, (_, i) => payload(b * 100 + i));
        const fields: Array<AppendFields | undefined> = data.map((_, i) => (i % 3 === 1 ? { headers: { k: `v${i}` } } : i % 3 === 2 ? { expiresAt: time + i } : undefined));
        if (b % 3 === 0) {
          await log.appendBatch(data, time, fields, { prefix: "prod-é:", from });
          data.forEach((d, i) => expected.push({ data: d, time, fields: { ...fields[i], msgId: `prod-é:${from + i}` } }));
          from += n;
        } else if (b % 3 === 1) {
          const withIds = fields.map((f, i) => ({ ...f, msgId: `given-${b}-${i}` }));
          await log.appendBatch(data, time, withIds);
          data.forEach((d, i) => expected.push({ data: d, time, fields: withIds[i] }));
        } else {
          await Promise.all(data.map((d, i) => log.append(d, time, fields[i])));
          data.forEach((d, i) => expected.push({ data: d, time, fields: fields[i] }));
        }
      }
      await log.close();
      const records = layout(dir);
      expect(records.length).toBe(expected.length);
      expect(new Set(records.map((r) => r.file)).size).toBeGreaterThan(3);
      const files = new Map<string, Buffer>();
      for (const [k, r] of records.entries()) {
        const { data, time, fields } = expected[k]!;
        const id = fields?.msgId === undefined ? undefined : utf8.encode(fields.msgId);
        const extra = fields && extraFieldsOf(fields.headers, fields.expiresAt);
        const want = new Uint8Array(r.end - r.start);
        writeRecord(want, new DataView(want.buffer), 0, k + 1, time, data, id, extra);
        if (!files.has(r.file)) files.set(r.file, fs.readFileSync(r.file));
        expect(r.seq).toBe(k + 1);
        expect([...files.get(r.file)!.subarray(r.start, r.end)]).toEqual([...want]);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("runIdNumber reads the bytes of an id as the server's splitMsgId reads its string", () => {
    const ids = ["P:0", "P:1", "P:01", "P:", ":5", "a:b:12", "no-colon", "x:1234567890123456", "x:12345678901234567", "p:9007199254740991", "p:9007199254740992", "日本:7", "a:1b", "a:-1", "k:٣"];
    for (const id of ids) {
      const split = splitMsgId(id);
      const got = runIdNumber(utf8.encode(id));
      expect({ id, got: got && { prefix: new TextDecoder().decode(utf8.encode(id).subarray(0, got.prefixLength)), n: got.n } }).toEqual({ id, got: split && { prefix: split.prefix, n: split.n } });
    }
  });

  test("expandMsgIdRuns gives a run's ids one by one; dropFromRun cuts its oldest", () => {
    const runs = [{ msgId: "a-key", seq: 3, time: 10, count: 1 }, { msgId: "P:9", seq: 4, time: 11, count: 3 }];
    expect(expandMsgIdRuns(runs)).toEqual([
      { msgId: "a-key", seq: 3, time: 10 },
      { msgId: "P:9", seq: 4, time: 11 },
      { msgId: "P:10", seq: 5, time: 11 },
      { msgId: "P:11", seq: 6, time: 11 },
    ]);
    expect(dropFromRun(runs[1]!, 2)).toEqual({ msgId: "P:11", seq: 6, time: 11, count: 1 });
  });
});
