/**
 * The schedule of delayed messages (lib/store/schedule.ts): both implementations keep what
 * was added until removed; the file one across a reopen, a torn write (crash) and damage to
 * one copy. Then the scheduler (lib/server/scheduler.ts) on a real memory topic log: order of
 * due time, and no second delivery of what was appended before a crash.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MAX_DELAY_MS } from "../../lib/config.ts";
import { MqError } from "../../lib/errors.ts";
import { MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { mirrorOf, RecordFile } from "../../lib/store/record-file.ts";
import { FileSchedule, MemorySchedule } from "../../lib/store/schedule.ts";
import type { ScheduledMessage, ScheduleStore } from "../../lib/store/types.ts";
import { deliveryKey, dueTime, fieldsOf, runsOfEqualTtl, Scheduler, SCHEDULED_ID_PREFIX } from "../../lib/server/scheduler.ts";

let dir: string;
let opened: ScheduleStore[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-schedule-"));
  opened = [];
});

afterEach(async () => {
  for (const s of opened.reverse()) await s.close().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

const b = (s: string) => new TextEncoder().encode(s);
const text = (u: Uint8Array) => new TextDecoder().decode(u);

function openFile(): FileSchedule {
  const s = new FileSchedule(path.join(dir, "scheduled"));
  opened.push(s);
  return s;
}

const file = () => path.join(dir, "scheduled", "schedule");

for (const [name, make] of [
  ["MemorySchedule", () => new MemorySchedule()],
  ["FileSchedule", () => openFile()],
] as const) {
  describe(name, () => {
    test("keeps what was added, numbered in acceptance order, until removed", async () => {
      const s = make();
      const added = await s.add([
        { topic: "a", due: 200, data: b("one") },
        { topic: "b", due: 100, data: b("two"), msgId: "k" },
      ]);
      expect(added.map((e) => e.n)).toEqual([1, 2]);
      const more = await s.add([{ topic: "a", due: 50, data: b("three") }]);
      expect(more[0]!.n).toBe(3);
      await s.remove([2]);
      expect(s.pending().map((e) => [e.n, e.topic, e.due, text(e.data), e.msgId])).toEqual([
        [1, "a", 200, "one", undefined],
        [3, "a", 50, "three", undefined],
      ]);
    });

    test("keeps a message's headers and TTL; one without has neither", async () => {
      const s = make();
      await s.add([
        { topic: "h", due: 10, data: b("with"), headers: { "x-trace": "ab12", "ключ": "значение", empty: "" }, ttlMs: 30_000 },
        { topic: "h", due: 10, data: b("ttl only"), ttlMs: 1 },
        { topic: "h", due: 10, data: b("plain") },
      ]);
      expect(s.pending().map((e) => [text(e.data), e.headers, e.ttlMs])).toEqual([
        ["with", { "x-trace": "ab12", "ключ": "значение", empty: "" }, 30_000],
        ["ttl only", undefined, 1],
        ["plain", undefined, undefined],
      ]);
    });
  });
}

describe("FileSchedule on disk", () => {
  test("a reopen finds every pending message, byte for byte, and numbers go on above the last one", async () => {
    const s = openFile();
    const payload = new Uint8Array(256).map((_, i) => i);
    await s.add([{ topic: "t", due: 1000, data: payload, msgId: "order-1" }]);
    await s.add([{ topic: "u", due: 2000, data: b("x") }]);
    await s.add([{ topic: "u", due: 3000, data: b("gone") }]);
    await s.remove([3]);
    await s.close();
    const again = openFile();
    const pending = again.pending();
    expect(pending.map((e) => [e.n, e.topic, e.due, e.msgId])).toEqual([
      [1, "t", 1000, "order-1"],
      [2, "u", 2000, undefined],
    ]);
    expect([...pending[0]!.data]).toEqual([...payload]);
    // 3 was handed out (and removed): never again.
    expect((await again.add([{ topic: "t", due: 1, data: b("y") }]))[0]!.n).toBe(4);
  });

  test("a crash while the last message was written (torn in the first copy, absent from the second) loses only that message, which was never acknowledged", async () => {
    const s = openFile();
    await s.add([{ topic: "t", due: 1, data: b("first") }]);
    await s.add([{ topic: "t", due: 2, data: b("second") }]);
    const before = fs.statSync(file()).size;
    await s.add([{ topic: "t", due: 3, data: b("third, torn") }]);
    await s.close();
    const after = fs.statSync(file()).size;
    // The first copy stops in the middle of the third record; the second never got it.
    fs.truncateSync(file(), before + Math.floor((after - before) / 2));
    fs.truncateSync(mirrorOf(file()), before);
    const again = openFile();
    expect(again.pending().map((e) => text(e.data))).toEqual(["first", "second"]);
    // The number of the torn message is not handed out again (the mark went with it).
    expect((await again.add([{ topic: "t", due: 4, data: b("fourth") }]))[0]!.n).toBeGreaterThanOrEqual(3);
    await again.close();
    // The repair left both copies whole: a third open reads the same.
    expect(openFile().pending().map((e) => text(e.data))).toEqual(["first", "second", "fourth"]);
  });

  test("a damaged record in one copy is read from the other", async () => {
    const s = openFile();
    await s.add([{ topic: "t", due: 1, data: b("AAAAAAAAAAAAAAAA") }]);
    await s.add([{ topic: "t", due: 2, data: b("BBBBBBBBBBBBBBBB") }]);
    await s.close();
    const bytes = fs.readFileSync(file());
    const at = bytes.indexOf("AAAAAAAA");
    bytes[at] = 0x5a; // one flipped byte in the payload: the record's checksum fails
    fs.writeFileSync(file(), bytes);
    expect(openFile().pending().map((e) => text(e.data))).toEqual(["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB"]);
  });

  test("removals of many messages compact the file; what is pending survives", async () => {
    const s = openFile();
    const big = new Uint8Array(64 * 1024);
    for (let i = 0; i < 40; i++) await s.add([{ topic: "t", due: i, data: big }]);
    const full = fs.statSync(file()).size;
    await s.remove(Array.from({ length: 39 }, (_, i) => i + 1));
    expect(fs.statSync(file()).size).toBeLessThan(full / 4);
    await s.close();
    expect(openFile().pending().map((e) => e.n)).toEqual([40]);
  });

  test("a record of a later version (unknown fields) keeps its known fields", async () => {
    // Later fields are new optional keys of the accepted record: this version reads past them.
    const s = openFile();
    await s.add([{ topic: "t", due: 5, data: b("x") }]);
    await s.close();
    const raw = RecordFile.open(file(), { apply: () => {}, snapshot: () => [] });
    await raw.append({ n: 2, t: "t", d: 6, p: b("y"), z: { k: "v" }, e: 99 }, true, 3);
    await raw.close();
    expect(openFile().pending().map((e) => [e.n, text(e.data)])).toEqual([
      [1, "x"],
      [2, "y"],
    ]);
  });

  test("headers (`h`) and the TTL (`l`) survive a reopen, also through a compaction", async () => {
    const s = openFile();
    const headers = { "x-trace": "ab12", "ключ": "значение 😀", empty: "" };
    await s.add([{ topic: "t", due: 1, data: b("with"), msgId: "k", headers, ttlMs: 30_000 }]);
    await s.add([{ topic: "t", due: 2, data: b("plain") }]);
    await s.close();
    const fields = (e: ScheduledMessage) => [text(e.data), e.msgId, e.headers, e.ttlMs];
    const expected = [
      ["with", "k", headers, 30_000],
      ["plain", undefined, undefined, undefined],
    ];
    const again = openFile();
    expect(again.pending().map(fields)).toEqual(expected);
    // What a compaction writes is read back the same.
    await again.remove([]);
    await (again as unknown as { file: RecordFile }).file.rewrite();
    await again.close();
    expect(openFile().pending().map(fields)).toEqual(expected);
  });

  test("a record from before headers and TTL (no `h`, no `l`) is a message without them; malformed ones are left out", async () => {
    fs.mkdirSync(path.dirname(file()), { recursive: true });
    const raw = RecordFile.open(file(), { apply: () => {}, snapshot: () => [] });
    await raw.append({ n: 1, t: "t", d: 5, p: b("old"), m: "k" }, true, 2);
    await raw.append({ n: 2, t: "t", d: 6, p: b("bad fields"), h: { k: 5 }, l: -1 }, true, 3);
    await raw.append({ n: 3, t: "t", d: 7, p: b("bad ttl"), h: { k: "v" }, l: 1.5 }, true, 4);
    await raw.close();
    // Invalid headers are left out, and said (ERROR), not dropped silently.
    const lines: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => (lines.push(String(chunk)), true)) as typeof process.stderr.write;
    let reopened: ScheduleStore;
    try {
      reopened = openFile();
    } finally {
      process.stderr.write = write;
    }
    expect(lines.filter((l) => l.includes("ERROR"))).toEqual([expect.stringContaining('delayed message 2 of topic "t": its stored headers are not valid')]);
    expect(reopened.pending().map((e) => [e.n, text(e.data), e.msgId, e.headers, e.ttlMs])).toEqual([
      [1, "old", "k", undefined, undefined],
      [2, "bad fields", undefined, undefined, undefined],
      [3, "bad ttl", undefined, { k: "v" }, undefined],
    ]);
  });
});

describe("Scheduler", () => {
  /** A scheduler whose topics are real memory logs. */
  function setup(store: ScheduleStore = new MemorySchedule()) {
    const logs = new Map<string, MemoryTopicLog>();
    const logOf = (t: string) => logs.get(t) ?? (logs.set(t, new MemoryTopicLog()), logs.get(t)!);
    const scheduler = new Scheduler(store, {
      append: async (topic, payloads, msgIds, fields) => {
        const now = Date.now();
        // As the server's: the expiry counts from the append.
        const expiresAt = fields?.ttlMs === undefined ? {} : { expiresAt: now + fields.ttlMs };
        const headersOf = (i: number) => (fields?.headers?.[i] && Object.keys(fields.headers[i]!).length > 0 ? { headers: fields.headers[i] } : {});
        await Promise.all(payloads.map((p, i) => logOf(topic).append(p, now, { msgId: msgIds[i]!, ...headersOf(i), ...expiresAt })));
        return payloads.length;
      },
      storedIds: async (topic, since) => (logs.has(topic) ? new Map((await logs.get(topic)!.recentMsgIds(since, 1e9)).map((r) => [r.msgId, r.time])) : null),
    });
    return { scheduler, logOf, store };
  }

  async function until(check: () => boolean, ms = 5000): Promise<void> {
    for (const end = Date.now() + ms; !check(); ) {
      if (Date.now() > end) throw new Error("timed out");
      await Bun.sleep(10);
    }
  }

  test("appends in order of due time, ties in order of acceptance, never before the due time", async () => {
    const { scheduler, logOf } = setup();
    await scheduler.load(Date.now());
    scheduler.start();
    const now = Date.now();
    await scheduler.schedule("t", [b("c")], undefined, now + 300);
    await scheduler.schedule("t", [b("a1"), b("a2")], undefined, now + 100);
    await scheduler.schedule("t", [b("b")], undefined, now + 200);
    expect(scheduler.pending).toBe(4);
    await until(() => logOf("t").count === 4);
    const got = await logOf("t").read(1, 10, 1e9);
    expect(got.map((m) => text(m.data))).toEqual(["a1", "a2", "b", "c"]);
    const dues = [now + 100, now + 100, now + 200, now + 300];
    got.forEach((m, i) => expect(m.time).toBeGreaterThanOrEqual(dues[i]!));
    expect(scheduler.pending).toBe(0);
    expect(scheduler.delivered).toBe(4);
    await scheduler.stop();
  });

  test("headers and the TTL go with the append; the expiry counts from the append (due), not from the acceptance", async () => {
    const { scheduler, logOf } = setup();
    await scheduler.load(Date.now());
    scheduler.start();
    const accepted = Date.now();
    await scheduler.schedule("t", [b("h1"), b("h2")], undefined, accepted + 200, { headers: [{ k: "v" }, {}], ttlMs: 50 });
    await scheduler.schedule("t", [b("plain")], undefined, accepted + 200);
    await until(() => logOf("t").count === 3);
    const got = await logOf("t").read(1, 10, 1e9);
    expect(got.map((m) => [text(m.data), m.headers])).toEqual([
      ["h1", { k: "v" }],
      ["h2", undefined],
      ["plain", undefined],
    ]);
    // Appended at or after the due time, and expiring TTL ms after that append: later than acceptance + TTL.
    for (const m of got.slice(0, 2)) {
      expect(m.time).toBeGreaterThanOrEqual(accepted + 200);
      expect(m.expiresAt).toBe(m.time + 50);
    }
    expect(got[2]!.expiresAt).toBeUndefined();
    await scheduler.stop();
  });

  test("runsOfEqualTtl / fieldsOf: one append per run of equal TTLs, in order; none without headers or TTL", () => {
    const e = (n: number, ttlMs?: number, headers?: Record<string, string>): ScheduledMessage => ({ n, topic: "t", due: 1, data: b(String(n)), ...(ttlMs === undefined ? {} : { ttlMs }), ...(headers ? { headers } : {}) });
    const list = [e(1), e(2), e(3, 100), e(4, 100, { k: "v" }), e(5), e(6, 200)];
    expect(runsOfEqualTtl(list).map((run) => run.map((m) => m.n))).toEqual([[1, 2], [3, 4], [5], [6]]);
    expect(runsOfEqualTtl([])).toEqual([]);
    expect(fieldsOf([e(1), e(2)])).toBeUndefined();
    expect(fieldsOf([e(3, 100), e(4, 100, { k: "v" })])).toEqual({ ttlMs: 100, headers: [{}, { k: "v" }] });
    expect(fieldsOf([e(1, undefined, { a: "b" })])).toEqual({ headers: [{ a: "b" }] });
    expect(fieldsOf([e(6, 200)])).toEqual({ ttlMs: 200 });
  });

  test("a msgId pending already is not scheduled again", async () => {
    const { scheduler } = setup();
    await scheduler.load(Date.now());
    const r = await scheduler.schedule("t", [b("x"), b("x again")], ["k", "k"], Date.now() + 60_000);
    expect(r.duplicates).toEqual([1]);
    expect((await scheduler.schedule("t", [b("x")], ["k"], Date.now() + 60_000)).duplicates).toEqual([0]);
    expect((await scheduler.schedule("other", [b("x")], ["k"], Date.now() + 60_000)).duplicates).toEqual([]);
    expect(scheduler.pending).toBe(2);
    await scheduler.stop();
  });

  test("at start, a due message its topic stored already (crash after the append, before the removal) is removed, not delivered twice", async () => {
    const store = new MemorySchedule();
    const [stored, notYet] = await store.add([
      { topic: "t", due: 1000, data: b("stored") },
      { topic: "t", due: 1000, data: b("not yet") },
    ]);
    const { scheduler, logOf } = setup(store);
    // What the crashed server had appended: the first message, with its delivery key.
    await logOf("t").append(b("stored"), 2000, { msgId: deliveryKey(stored!) });
    expect(deliveryKey(stored!)).toBe(`${SCHEDULED_ID_PREFIX}1`);
    await scheduler.load(Date.now());
    expect(store.pending().map((e) => e.n)).toEqual([notYet!.n]);
    scheduler.start();
    await until(() => logOf("t").count === 2);
    expect((await logOf("t").read(1, 10, 1e9)).map((m) => text(m.data))).toEqual(["stored", "not yet"]);
    await scheduler.stop();
  });

  test("dueTime: relative to the server's clock, a past `at` is now, both or too far is refused", () => {
    expect(dueTime({ delayMs: 500 }, 1000)).toBe(1500);
    expect(dueTime({ at: 5 }, 1000)).toBe(1000);
    expect(dueTime({ at: 5000 }, 1000)).toBe(5000);
    expect(() => dueTime({ delayMs: 1, at: 1 }, 1000)).toThrow(MqError);
    expect(() => dueTime({ delayMs: MAX_DELAY_MS + 1 }, 1000)).toThrow(/more than 366 days ahead/);
  });

  test("limits: publishes accepted at the same time cannot pass --max-scheduled or --max-scheduled-bytes together; a refused one holds nothing", async () => {
    const hooks = { append: async (_t: string, p: Uint8Array[]) => p.length, storedIds: async () => null };
    const byCount = new Scheduler(new MemorySchedule(), hooks, { maxScheduled: 2, maxScheduledBytes: 0 });
    const due = Date.now() + 3_600_000;
    const outcomes = await Promise.allSettled([1, 2, 3].map(() => byCount.schedule("t", [b("x")], undefined, due)));
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
    expect(String((outcomes[2] as PromiseRejectedResult).reason.message)).toContain("--max-scheduled is 2");
    expect(byCount.pending).toBe(2);

    const byBytes = new Scheduler(new MemorySchedule(), hooks, { maxScheduled: 0, maxScheduledBytes: 10 });
    await expect(byBytes.schedule("t", [b("0123456789a")], undefined, due)).rejects.toThrow(/--max-scheduled-bytes is 10/);
    expect(byBytes.pendingBytes).toBe(0);
    await byBytes.schedule("t", [b("01234"), b("56789")], undefined, due);
    expect(byBytes.pendingBytes).toBe(10);
    await byBytes.stop();
    await byCount.stop();
  });
});
