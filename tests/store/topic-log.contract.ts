/**
 * The TopicLog contract: every implementation runs this suite (see topic-log.test.ts).
 * Implementations that persist say so in `TopicLogTraits` and give `reopen`, which closes
 * the log and opens it again on the same storage; the suite then also checks what survives.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { TopicLog } from "../../lib/store/types.ts";

export interface TopicLogFixture {
  log: TopicLog;
  /** Closes `log` and opens the same storage again (persistent implementations only). */
  reopen?: () => Promise<TopicLog>;
  /** Closes whatever is open and removes the storage. */
  cleanup: () => Promise<void>;
}

/** What the suite must know of an implementation to expect exact results. */
export interface TopicLogTraits {
  /** The log survives close and `reopen` (tests of what survives are skipped otherwise). */
  persistent: boolean;
  /**
   * How many messages `trim(before)` deletes when messages 1..`total` (each a 100-byte
   * payload) are all old enough: all below `before` for a log that deletes message by
   * message, only whole segments below `before` (never the newest) for a file log.
   */
  trimmed(before: number, total: number): number;
}

/** A payload of `n` bytes derived from `seed`, so that any two differ and a misplaced byte shows. */
export function payload(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 131 + i * 7) & 0xff;
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const ALL = Number.MAX_SAFE_INTEGER;

export function runTopicLogSuite(name: string, newLog: () => Promise<TopicLogFixture>, traits: TopicLogTraits): void {
  const volatile = !traits.persistent;
  describe(`TopicLog contract: ${name}`, () => {
    let fx: TopicLogFixture;
    let log: TopicLog;

    beforeEach(async () => {
      fx = await newLog();
      log = fx.log;
    });

    afterEach(async () => {
      await fx.cleanup();
    });

    /** Appends payloads one after the other; returns their seqs. */
    async function appendAll(payloads: Uint8Array[], time = 1000): Promise<number[]> {
      const seqs: number[] = [];
      for (const [i, p] of payloads.entries()) seqs.push(await log.append(p, time + i));
      return seqs;
    }

    test("TopicLog starts empty with firstSeq and nextSeq at 1", async () => {
      expect(log.firstSeq).toBe(1);
      expect(log.nextSeq).toBe(1);
      expect(await log.read(1, 10, ALL)).toEqual([]);
    });

    test("TopicLog.append returns dense seqs from 1 and moves nextSeq", async () => {
      for (let i = 1; i <= 5; i++) {
        expect(await log.append(payload(3, i), 1000 + i)).toBe(i);
        expect(log.nextSeq).toBe(i + 1);
      }
      expect(log.firstSeq).toBe(1);
    });

    test("TopicLog.appendBatch: consecutive seqs in order, beside single appends in flight, each with its fields", async () => {
      // Every log here has it (a log without it would be appended to message by message: lib/store/append-all.ts).
      if (!log.appendBatch) throw new Error("this log has no appendBatch");
      await log.append(payload(1, 0), 999);
      const batch = [1, 2, 3].map((i) => payload(i * 3, i));
      const fields = [{ msgId: "k:1", headers: { a: "1" } }, undefined, { msgId: "k:3", expiresAt: 9_999_999_999_999 }];
      // Added in one tick with single appends before and after: all in flight together.
      const before = log.append(payload(2, 10), 1000);
      const seqs = log.appendBatch(batch, 1000, fields);
      const after = log.append(payload(2, 11), 1000);
      expect(await Promise.all([before, seqs, after])).toEqual([2, [3, 4, 5], 6]);
      expect(await log.appendBatch([], 1000, [])).toEqual([]);
      const read = await log.read(3, 3, ALL);
      expect(read.map((m) => [m.seq, m.time, [...m.data], m.headers, m.expiresAt])).toEqual([
        [3, 1000, [...batch[0]!], { a: "1" }, undefined],
        [4, 1000, [...batch[1]!], undefined, undefined],
        [5, 1000, [...batch[2]!], undefined, 9_999_999_999_999],
      ]);
      expect((await log.recentMsgIds(0, 10)).map((r) => [r.msgId, r.seq])).toEqual([["k:1", 3], ["k:3", 5]]);
      if (fx.reopen) {
        log = await fx.reopen();
        expect((await log.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      }
    });

    test("TopicLog.read returns seq, time and data of each message from `from` on", async () => {
      const payloads = [1, 2, 3, 4].map((i) => payload(i * 5, i));
      await appendAll(payloads, 1_700_000_000_000);
      expect(await log.read(1, 10, ALL)).toEqual(payloads.map((data, i) => ({ seq: i + 1, time: 1_700_000_000_000 + i, data })));
      expect(await log.read(3, 10, ALL)).toEqual([
        { seq: 3, time: 1_700_000_000_002, data: payloads[2]! },
        { seq: 4, time: 1_700_000_000_003, data: payloads[3]! },
      ]);
    });

    test("TopicLog.read from 0 starts at firstSeq", async () => {
      await appendAll([payload(1, 1), payload(1, 2)]);
      expect((await log.read(0, 10, ALL)).map((m) => m.seq)).toEqual([1, 2]);
    });

    test("TopicLog.read stops at maxCount", async () => {
      await appendAll([1, 2, 3, 4, 5].map((i) => payload(4, i)));
      expect((await log.read(2, 2, ALL)).map((m) => m.seq)).toEqual([2, 3]);
      expect((await log.read(1, 1, ALL)).map((m) => m.seq)).toEqual([1]);
      expect(await log.read(1, 0, ALL)).toEqual([]);
    });

    test("TopicLog.read returns one message when the first alone exceeds maxBytes", async () => {
      await appendAll([payload(100, 1), payload(100, 2)]);
      expect((await log.read(1, 10, 10)).map((m) => m.seq)).toEqual([1]);
      expect((await log.read(1, 10, 0)).map((m) => m.seq)).toEqual([1]);
    });

    test("TopicLog.read stops after the message that reaches maxBytes", async () => {
      // "About maxBytes": messages are added while the total is below the budget.
      await appendAll([1, 2, 3, 4, 5, 6].map((i) => payload(10, i)));
      expect((await log.read(1, 10, 25)).map((m) => m.seq)).toEqual([1, 2, 3]);
      expect((await log.read(1, 10, 20)).map((m) => m.seq)).toEqual([1, 2]);
      expect((await log.read(1, 10, 21)).map((m) => m.seq)).toEqual([1, 2, 3]);
      expect((await log.read(4, 10, 1000)).map((m) => m.seq)).toEqual([4, 5, 6]);
    });

    test("TopicLog.read stops only for maxCount, maxBytes or the end", async () => {
      const sizes = [0, 7, 1, 30, 2, 2, 64, 0, 5, 9, 13, 1];
      await appendAll(sizes.map((n, i) => payload(n, i)));
      for (let from = 1; from <= sizes.length + 1; from++) {
        for (const maxCount of [1, 2, 5, 100]) {
          for (const maxBytes of [0, 1, 8, 31, 40, 1000]) {
            const got = await log.read(from, maxCount, maxBytes);
            const seqs = got.map((m) => m.seq);
            const expected: number[] = [];
            let bytes = 0;
            for (let s = from; s <= sizes.length && expected.length < maxCount && (expected.length === 0 || bytes < maxBytes); s++) {
              expected.push(s);
              bytes += sizes[s - 1]!;
            }
            expect({ from, maxCount, maxBytes, seqs }).toEqual({ from, maxCount, maxBytes, seqs: expected });
          }
        }
      }
    });

    test("TopicLog.read past the end is empty", async () => {
      await appendAll([payload(2, 1), payload(2, 2)]);
      expect(await log.read(3, 10, ALL)).toEqual([]);
      expect(await log.read(4, 10, ALL)).toEqual([]);
      expect(await log.read(1_000_000, 10, ALL)).toEqual([]);
    });

    test("TopicLog.append called concurrently gives distinct dense seqs in call order", async () => {
      const payloads = Array.from({ length: 200 }, (_, i) => payload(1 + (i % 17), i));
      const seqs = await Promise.all(payloads.map((p, i) => log.append(p, i)));
      expect(seqs).toEqual(payloads.map((_, i) => i + 1));
      expect(log.nextSeq).toBe(201);
      const got = await log.read(1, 1000, ALL);
      expect(got.map((m) => m.seq)).toEqual(seqs);
      for (const [i, m] of got.entries()) expect({ seq: m.seq, same: sameBytes(m.data, payloads[i]!) }).toEqual({ seq: i + 1, same: true });
    });

    test("TopicLog.append called concurrently in several waves keeps seqs dense", async () => {
      const first = log.append(payload(1, 0), 0);
      const wave1 = Promise.all([1, 2, 3].map((i) => log.append(payload(2, i), i)));
      expect(await first).toBe(1);
      const wave2 = Promise.all([4, 5].map((i) => log.append(payload(2, i), i)));
      expect(await wave1).toEqual([2, 3, 4]);
      expect(await wave2).toEqual([5, 6]);
      expect((await log.read(1, 100, ALL)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    });

    test("TopicLog keeps an empty payload", async () => {
      await appendAll([payload(3, 1), new Uint8Array(0), payload(3, 2)]);
      const got = await log.read(1, 10, ALL);
      expect(got.map((m) => m.data.length)).toEqual([3, 0, 3]);
      expect(got[1]).toEqual({ seq: 2, time: 1001, data: new Uint8Array(0) });
    });

    test("TopicLog keeps a 1 MiB payload byte for byte", async () => {
      const big = payload(1 << 20, 42);
      await appendAll([payload(5, 1), big, payload(5, 2)]);
      const got = await log.read(2, 1, ALL);
      expect(got.length).toBe(1);
      expect(got[0]!.seq).toBe(2);
      expect(got[0]!.data.length).toBe(1 << 20);
      expect(sameBytes(got[0]!.data, big)).toBe(true);
      expect((await log.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1, 2, 3]);
      expect(sameBytes((await log.read(3, 1, ALL))[0]!.data, payload(5, 2))).toBe(true);
    });

    test("TopicLog keeps every byte value", async () => {
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      await log.append(all, 1);
      expect((await log.read(1, 1, ALL))[0]!.data).toEqual(all);
    });

    test("TopicLog keeps the payload as it was when append resolved", async () => {
      const p = payload(8, 1);
      await log.append(p, 1);
      p.fill(0);
      expect((await log.read(1, 1, ALL))[0]!.data).toEqual(payload(8, 1));
    });

    test("TopicLog keeps many messages in order", async () => {
      const n = 2000;
      const seqs = await Promise.all(Array.from({ length: n }, (_, i) => log.append(payload(100, i), i)));
      expect(seqs[n - 1]).toBe(n);
      let from = 1;
      let seen = 0;
      while (true) {
        const batch = await log.read(from, 333, 10_000);
        if (batch.length === 0) break;
        for (const m of batch) {
          expect(m.seq).toBe(from);
          if (!sameBytes(m.data, payload(100, m.seq - 1))) throw new Error(`message ${m.seq} has the wrong payload`);
          from++;
          seen++;
        }
      }
      expect(seen).toBe(n);
    });

    test("TopicLog has lastSeq 0, count 0 and lost 0 when empty, and tracks them as messages are appended", async () => {
      expect([log.lastSeq, log.count, log.lost]).toEqual([0, 0, 0]);
      await appendAll([payload(1, 1), payload(2, 2), payload(3, 3)]);
      expect([log.firstSeq, log.lastSeq, log.nextSeq, log.count, log.lost]).toEqual([1, 3, 4, 3, 0]);
    });

    test("TopicLog.read returns ascending seqs, each at most lastSeq, and something from every seq up to lastSeq", async () => {
      await appendAll(Array.from({ length: 30 }, (_, i) => payload(5, i)));
      for (let from = 1; from <= log.lastSeq; from++) {
        const got = (await log.read(from, 7, ALL)).map((m) => m.seq);
        expect(got.length).toBeGreaterThan(0);
        expect(got[0]!).toBeGreaterThanOrEqual(from);
        for (let i = 1; i < got.length; i++) expect(got[i]!).toBeGreaterThan(got[i - 1]!);
        expect(got[got.length - 1]!).toBeLessThanOrEqual(log.lastSeq);
      }
      expect(await log.read(log.lastSeq + 1, 7, ALL)).toEqual([]);
    });

    test.skipIf(volatile)("TopicLog keeps messages, times and nextSeq across reopen (persistent logs only)", async () => {
      const payloads = [payload(0, 1), payload(10, 2), payload(1 << 20, 3), payload(7, 4)];
      await appendAll(payloads, 5000);
      log = await fx.reopen!();
      expect(log.firstSeq).toBe(1);
      expect(log.nextSeq).toBe(5);
      expect([log.lastSeq, log.count, log.lost]).toEqual([4, 4, 0]);
      const got = await log.read(1, 10, ALL);
      expect(got.map((m) => [m.seq, m.time, m.data.length])).toEqual(payloads.map((p, i) => [i + 1, 5000 + i, p.length]));
      for (const [i, m] of got.entries()) expect(sameBytes(m.data, payloads[i]!)).toBe(true);
    });

    const TAIL_N = 12_000; // 1.2 MB of payloads: more than an in-memory tail holds
    const tailExpected = Array.from({ length: TAIL_N }, (_, i): [number, number] => [i + 1, i]);
    /** Every message as [seq, time], read in batches of `batch`, checking each payload. */
    const readAll = async (l: TopicLog, batch: number) => {
      const out: Array<[number, number]> = [];
      for (let from = 1; ; ) {
        const got = await l.read(from, batch, 64 * 1024);
        if (got.length === 0) return out;
        for (const m of got) {
          if (!sameBytes(m.data, payload(100, m.seq - 1))) throw new Error(`message ${m.seq} has the wrong payload`);
          out.push([m.seq, m.time]);
        }
        from = got[got.length - 1]!.seq + 1;
      }
    };

    test("TopicLog serves every message past any in-memory tail", async () => {
      await Promise.all(Array.from({ length: TAIL_N }, (_, i) => log.append(payload(100, i), i)));
      expect(await readAll(log, 257)).toEqual(tailExpected);
    });

    test.skipIf(volatile)("TopicLog serves the same messages after reopen, past any in-memory tail (persistent logs only)", async () => {
      await Promise.all(Array.from({ length: TAIL_N }, (_, i) => log.append(payload(100, i), i)));
      log = await fx.reopen!();
      expect(await readAll(log, 64)).toEqual(tailExpected);
      expect((await log.read(TAIL_N - 5, 3, ALL)).map((m) => m.seq)).toEqual([TAIL_N - 5, TAIL_N - 4, TAIL_N - 3]);
    });

    test.skipIf(volatile)("TopicLog continues dense seqs after reopen (persistent logs only)", async () => {
      await appendAll([payload(1, 1), payload(1, 2)]);
      log = await fx.reopen!();
      expect(await log.append(payload(1, 3), 3)).toBe(3);
      log = await fx.reopen!();
      expect(log.nextSeq).toBe(4);
      expect((await log.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1, 2, 3]);
    });

    test("TopicLog.trim never deletes a message at or after `before`, and what is left reads from firstSeq", async () => {
      await appendAll(Array.from({ length: 40 }, (_, i) => payload(100, i)));
      const removed = await log.trim(21, { maxAgeMs: 0, maxBytes: Infinity }, Date.now() + 60_000);
      expect(removed).toBe(traits.trimmed(21, 40));
      expect(log.firstSeq).toBe(1 + removed);
      expect([log.count, log.lastSeq, log.lost]).toEqual([40 - removed, 40, 0]);
      expect(log.nextSeq).toBe(41);
      expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(Array.from({ length: 40 - removed }, (_, i) => 1 + removed + i));
      expect(await log.append(payload(1, 99), 5000)).toBe(41);
    });

    test("TopicLog.trim keeps everything younger than maxAgeMs while under maxBytes", async () => {
      await appendAll(Array.from({ length: 40 }, (_, i) => payload(100, i)), Date.now());
      expect(await log.trim(41, { maxAgeMs: 3_600_000, maxBytes: Infinity }, Date.now())).toBe(0);
      expect(log.firstSeq).toBe(1);
    });

    test("TopicLog.appendBatch with ids as a run: each message stored with prefix + number, as if given in its fields (after reopen too)", async () => {
      if (!log.appendBatch) throw new Error("this log has no appendBatch");
      await log.append(payload(1, 0), 999, { msgId: "p:7" });
      const batch = [1, 2, 3, 4].map((i) => payload(i * 5, i));
      const fields = [undefined, { headers: { a: "1" } }, undefined, { expiresAt: 9_999_999_999_999 }];
      // Digits change length inside the run (9 → 10), and a prefix of several UTF-8 bytes.
      expect(await log.appendBatch(batch, 1000, fields, { prefix: "é😀:", from: 8 })).toEqual([2, 3, 4, 5]);
      expect(await log.appendBatch([payload(3, 9)], 1001, [undefined], { prefix: "p:", from: Number.MAX_SAFE_INTEGER })).toEqual([6]);
      const ids = [["p:7", 1], ["é😀:8", 2], ["é😀:9", 3], ["é😀:10", 4], ["é😀:11", 5], [`p:${Number.MAX_SAFE_INTEGER}`, 6]];
      expect((await log.recentMsgIds(0, ALL)).map((r) => [r.msgId, r.seq])).toEqual(ids);
      const shape = (m: { seq: number; headers?: unknown; expiresAt?: unknown; data: Uint8Array }) => [m.seq, [...m.data], m.headers, m.expiresAt];
      const want = [[2, [...batch[0]!], undefined, undefined], [3, [...batch[1]!], { a: "1" }, undefined], [4, [...batch[2]!], undefined, undefined], [5, [...batch[3]!], undefined, 9_999_999_999_999]];
      expect((await log.read(2, 4, ALL)).map(shape)).toEqual(want);
      if (fx.reopen) {
        log = await fx.reopen();
        expect((await log.recentMsgIds(0, ALL)).map((r) => [r.msgId, r.seq])).toEqual(ids);
        expect((await log.read(2, 4, ALL)).map(shape)).toEqual(want);
      }
    });

    test("TopicLog.trim keeps a whole log that the subscribers have not passed", async () => {
      await appendAll(Array.from({ length: 10 }, (_, i) => payload(100, i)));
      expect(await log.trim(1, { maxAgeMs: 0, maxBytes: 0 }, Date.now() + 60_000)).toBe(0);
      expect(await log.read(1, ALL, ALL)).toHaveLength(10);
    });

    test("TopicLog.append with a msgId keeps the payload exactly, and recentMsgIds gives the ids back with seq and time", async () => {
      const ids = [undefined, "k1", "k2", undefined, "é-ключ-😀", "k1"];
      for (const [i, id] of ids.entries()) await log.append(payload(100, i), 1000 + i, id === undefined ? undefined : { msgId: id });
      expect((await log.read(1, ALL, ALL)).map((m) => [m.seq, m.time, sameBytes(m.data, payload(100, m.seq - 1))])).toEqual(ids.map((_, i) => [i + 1, 1000 + i, true]));
      // The log keeps what it is given: deduplication is the server's business.
      expect(await log.recentMsgIds(0, ALL)).toEqual([
        { msgId: "k1", seq: 2, time: 1001 },
        { msgId: "k2", seq: 3, time: 1002 },
        { msgId: "é-ключ-😀", seq: 5, time: 1004 },
        { msgId: "k1", seq: 6, time: 1005 },
      ]);
    });

    test("TopicLog.append with headers and an expiry: read gives them back with the message (after reopen too), a plain message has neither, the msgId stays out of read", async () => {
      const headers = { a: "b=c", "ключ": "значение 😀", empty: "" };
      await log.append(payload(100, 0), 1000);
      await log.append(payload(100, 1), 1001, { headers, expiresAt: 5000 });
      await log.append(payload(100, 2), 1002, { msgId: "k3", expiresAt: 6000 });
      await log.append(payload(100, 3), 1003, { msgId: "k4", headers: { x: "1" } });
      const expected = [{ seq: 1 }, { seq: 2, headers, expiresAt: 5000 }, { seq: 3, expiresAt: 6000 }, { seq: 4, headers: { x: "1" } }];
      const shape = (m: { seq: number; headers?: unknown; expiresAt?: unknown; data: Uint8Array }) => ({ seq: m.seq, ...(m.headers ? { headers: m.headers } : {}), ...(m.expiresAt !== undefined ? { expiresAt: m.expiresAt } : {}), same: sameBytes(m.data, payload(100, m.seq - 1)) });
      const want = expected.map((e) => ({ ...e, same: true }));
      expect((await log.read(1, ALL, ALL)).map(shape)).toEqual(want);
      for (const m of await log.read(1, ALL, ALL)) expect(Object.keys(m).sort()).toEqual(["data", "seq", "time", ...(m.headers ? ["headers"] : []), ...(m.expiresAt !== undefined ? ["expiresAt"] : [])].sort());
      expect((await log.recentMsgIds(0, ALL)).map((r) => r.msgId)).toEqual(["k3", "k4"]);
      if (fx.reopen) {
        log = await fx.reopen();
        expect((await log.read(1, ALL, ALL)).map(shape)).toEqual(want);
        expect((await log.read(3, 1, ALL)).map(shape)).toEqual(want.slice(2, 3));
        expect((await log.recentMsgIds(0, ALL)).map((r) => r.msgId)).toEqual(["k3", "k4"]);
      }
    });

    test("TopicLog.recentMsgIds gives only messages appended at or after `since`, oldest first, at most `limit` (the newest)", async () => {
      await Promise.all(Array.from({ length: 40 }, (_, i) => log.append(payload(100, i), 1000 + i, { msgId: `id-${i + 1}` })));
      const seqs = async (since: number, limit: number) => (await log.recentMsgIds(since, limit)).map((r) => r.seq);
      expect(await seqs(1030, ALL)).toEqual(Array.from({ length: 10 }, (_, i) => 31 + i));
      expect(await seqs(1000, 5)).toEqual([36, 37, 38, 39, 40]);
      expect(await seqs(2000, ALL)).toEqual([]);
      expect(await log.recentMsgIds(1039, ALL)).toEqual([{ msgId: "id-40", seq: 40, time: 1039 }]);
    });

    test("TopicLog.seqAtTime gives the first seq appended at or after a time, nextSeq past the end", async () => {
      expect(await log.seqAtTime(0)).toBe(1); // empty: the next message
      // 60 messages of 100 bytes (several segments of a 1 KiB log), times 1000, 1010, … with ties in pairs.
      for (let i = 0; i < 60; i++) await log.append(payload(100, i), 1000 + Math.floor(i / 2) * 10);
      expect(await log.seqAtTime(0)).toBe(1);
      expect(await log.seqAtTime(1000)).toBe(1);
      expect(await log.seqAtTime(1001)).toBe(3);
      expect(await log.seqAtTime(1010)).toBe(3);
      expect(await log.seqAtTime(1145)).toBe(31);
      for (let k = 0; k < 30; k++) expect(await log.seqAtTime(1000 + k * 10)).toBe(2 * k + 1);
      expect(await log.seqAtTime(1290)).toBe(59);
      expect(await log.seqAtTime(1291)).toBe(61);
      expect(await log.seqAtTime(Number.MAX_SAFE_INTEGER)).toBe(log.nextSeq);
    });

    test("TopicLog.seqAtTime finds every time inside one long segment (binary search by seq)", async () => {
      // 500 small records with ties in threes: many records per segment.
      const times = Array.from({ length: 500 }, (_, i) => 5000 + Math.floor(i / 3) * 7);
      for (let i = 0; i < times.length; i++) await log.append(payload(8, i), times[i]!);
      const want = (t: number) => {
        const k = times.findIndex((x) => x >= t);
        return k < 0 ? log.nextSeq : log.firstSeq + k;
      };
      for (let t = 4990; t <= times[times.length - 1]! + 3; t += 3) expect(await log.seqAtTime(t)).toBe(want(t));
    });

    test.skipIf(volatile)("TopicLog.seqAtTime gives the same seqs after reopen (persistent logs only)", async () => {
      for (let i = 0; i < 40; i++) await log.append(payload(100, i), 2000 + i * 5);
      log = await fx.reopen!();
      expect(await log.seqAtTime(2000)).toBe(1);
      expect(await log.seqAtTime(2101)).toBe(22);
      expect(await log.seqAtTime(2195)).toBe(40);
      expect(await log.seqAtTime(2196)).toBe(41);
    });

    test.skipIf(volatile)("TopicLog.recentMsgIds gives the same ids after reopen (persistent logs only)", async () => {
      await Promise.all(Array.from({ length: 40 }, (_, i) => log.append(payload(100, i), 1000 + i, i % 3 === 0 ? undefined : { msgId: `id-${i + 1}` })));
      const before = await log.recentMsgIds(1010, ALL);
      log = await fx.reopen!();
      expect(await log.recentMsgIds(1010, ALL)).toEqual(before);
      expect(before.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 11 + i).filter((seq) => (seq - 1) % 3 !== 0));
    });

    test.skipIf(volatile)("TopicLog.close waits for appends in flight (persistent logs only)", async () => {
      const seqs = Promise.all([1, 2, 3].map((i) => log.append(payload(4, i), i)));
      log = await fx.reopen!();
      expect(await seqs).toEqual([1, 2, 3]);
      expect((await log.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1, 2, 3]);
    });
  });
}
