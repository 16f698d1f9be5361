/** The ids of a run written as bytes (lib/store/id-run.ts): the same bytes as the id string, in the same record. */
import { describe, expect, test } from "bun:test";
import { digitCount, idAt, prefixBytes, writeRunId } from "../../lib/store/id-run.ts";
import { recordMsgId, recordSize, writeRecord, writeRecordOfRun } from "../../lib/store/segment.ts";

const utf8 = new TextEncoder();
const NUMBERS = [0, 1, 9, 10, 99, 100, 12345, 999_999_999, 1_000_000_000, 2 ** 32, 2 ** 32 + 1, 10 ** 15, Number.MAX_SAFE_INTEGER];

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
        expect(new TextDecoder().decode(recordMsgId(run, new DataView(run.buffer), 2)!)).toBe(`pré:${n}`);
      }
    }
  });
});
