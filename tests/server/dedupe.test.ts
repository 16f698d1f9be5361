/**
 * The server's dedupe window on its own: what it finds, the two shapes of id (runs of `P:n`
 * and other ids), when an id expires, its memory bound, and the rebuild from the ids a log
 * gives back after a restart (tests/store/topic-log.*: recentMsgIds reads them;
 * tests/e2e/idempotent.test.ts checks it all through a restarted server).
 */
import { describe, expect, test } from "bun:test";
import { DedupeWindow, Runs, splitMsgId, TopicIds } from "../../lib/server/dedupe.ts";
import { expandMsgIdRuns } from "../../lib/store/id-run.ts";

describe("splitMsgId", () => {
  test("splitMsgId splits P:n at the last colon when n is a number as written in decimal, and nothing else", () => {
    const cases: Array<[string, ReturnType<typeof splitMsgId>]> = [
      ["AbCdEfGhIjK:17", { prefix: "AbCdEfGhIjK:", n: 17 }],
      ["run-7:0", { prefix: "run-7:", n: 0 }],
      ["a:b:12", { prefix: "a:b:", n: 12 }],
      [":5", { prefix: ":", n: 5 }],
      ["k:9007199254740991", { prefix: "k:", n: 9007199254740991 }],
      ["k:9007199254740992", null], // above 2^53 - 1
      ["k:05", null], // a leading zero: "k:05" and "k:5" are different ids
      ["k:", null],
      ["k:1a", null],
      ["k:+1", null],
      ["order-1042", null],
      ["k:１", null], // a full-width digit is not a digit here
    ];
    for (const [key, want] of cases) expect({ key, got: splitMsgId(key) }).toEqual({ key, got: want });
  });
});

describe("Runs", () => {
  test("Runs finds the seq of any id of a run, and knows which ranges are free", () => {
    const r = new Runs();
    r.insert(10, 19, 100); // ids 10..19 → seqs 100..109
    r.insert(30, 30, 200);
    r.insert(1, 5, 50); // out of order: goes first
    expect([1, 5, 6, 10, 15, 19, 20, 30, 31].map((n) => r.find(n))).toEqual([50, 54, undefined, 100, 105, 109, undefined, 200, undefined]);
    expect([r.free(6, 9), r.free(6, 10), r.free(20, 29), r.free(19, 25), r.free(31, 1000)]).toEqual([true, false, true, false, true]);
    r.pending.push({ from: 40, to: 49, seqs: Promise.resolve([]), index: 0 });
    expect([r.free(31, 39), r.free(45, 60), r.pendingOf(44)?.from, r.pendingOf(50)]).toEqual([true, false, 40, undefined]);
  });

  test("Runs.remove takes out exactly the run named by its first id and seq, from the front or the middle", () => {
    const r = new Runs();
    r.insert(1, 5, 50);
    r.insert(10, 19, 100);
    r.insert(30, 30, 200);
    expect([r.remove(10, 999), r.remove(11, 101)]).toEqual([0, 0]); // not that run
    expect(r.remove(10, 100)).toBe(10);
    expect([r.find(15), r.find(3), r.size]).toEqual([undefined, 52, 2]);
    expect(r.remove(1, 50)).toBe(5);
    expect([r.find(3), r.find(30), r.size]).toEqual([undefined, 200, 1]);
  });
});

describe("DedupeWindow", () => {
  test("DedupeWindow.find gives the seq of an id added to the same topic, and nothing for another topic or id, for both shapes of id", () => {
    const w = new DedupeWindow(10_000, 100);
    const orders = new TopicIds();
    const invoices = new TopicIds();
    w.add(orders, "order-1042", 7, 1000);
    w.add(orders, "p:3", 8, 1000);
    w.expire(1000);
    expect([w.find(orders, "order-1042"), w.find(invoices, "order-1042"), w.find(orders, "order-1043")]).toEqual([7, undefined, undefined]);
    expect([w.find(orders, "p:3"), w.find(orders, "p:03"), w.find(orders, "p:4"), w.find(invoices, "p:3")]).toEqual([8, undefined, undefined, undefined]);
    expect([orders.keys.size, orders.runs.get("p:")?.size, w.size]).toEqual([1, 1, 2]);
  });

  test("DedupeWindow.addRun: ids P:a…P:b are one entry, found one by one", () => {
    const w = new DedupeWindow(10_000, 100);
    const t = new TopicIds();
    w.addRun(t.runsOf("prod:"), 1, 1024, 5000, 1000);
    w.expire(1000);
    expect([w.find(t, "prod:1"), w.find(t, "prod:512"), w.find(t, "prod:1024"), w.find(t, "prod:1025"), w.size]).toEqual([5000, 5511, 6023, undefined, 1]);
  });

  test("DedupeWindow keeps an id for exactly windowMs after its append time: expire(now) drops it after that", () => {
    const w = new DedupeWindow(2000, 100);
    const t = new TopicIds();
    w.add(t, "k1", 1, 1000);
    w.addRun(t.runsOf("p:"), 1, 10, 2, 1500);
    w.expire(3000);
    expect([w.find(t, "k1"), w.find(t, "p:5")]).toEqual([1, 6]);
    w.expire(3001);
    expect([w.find(t, "k1"), w.find(t, "p:5"), t.keys.size, w.size]).toEqual([undefined, 6, 0, 1]);
    w.expire(3501);
    expect([w.find(t, "p:5"), t.runs.get("p:")!.size, w.size, w.evicted]).toEqual([undefined, 0, 0, 0]);
  });

  test("DedupeWindow.add of an expired id again makes it count from the new append, and the old entry does not take it out", () => {
    const w = new DedupeWindow(1000, 100);
    const t = new TopicIds();
    w.add(t, "k", 1, 0);
    // Added again before the old entry was dropped (as a publish does once it is past the window).
    w.add(t, "k", 9, 1001);
    w.expire(1001); // drops the first entry: the key now belongs to the second
    expect([w.find(t, "k"), w.size]).toEqual([9, 1]);
    w.expire(2002);
    expect([w.find(t, "k"), w.size]).toEqual([undefined, 0]);
  });

  test("DedupeWindow holds at most maxKeys entries over all topics, forgetting the oldest first and counting the ids they held", () => {
    const evictions: number[] = [];
    const w = new DedupeWindow(60_000, 3, (count) => evictions.push(count));
    const a = new TopicIds();
    const b = new TopicIds();
    w.add(a, "a1", 1, 100);
    w.addRun(b.runsOf("b:"), 1, 10, 1, 101); // 10 ids, one entry
    w.add(a, "a2", 2, 102);
    w.add(b, "b2", 20, 103);
    w.add(a, "a3", 3, 104);
    w.expire(200);
    expect([w.size, w.evicted, evictions]).toEqual([3, 11, [11]]);
    expect(["a1", "a2", "a3"].map((k) => w.find(a, k))).toEqual([undefined, 2, 3]);
    expect(["b:1", "b2"].map((k) => w.find(b, k))).toEqual([undefined, 20]);
  });

  test("DedupeWindow memory stays bounded under a long stream: the maps, the runs and the queue never pass maxKeys", () => {
    const w = new DedupeWindow(3_600_000, 1000);
    const t = new TopicIds();
    let most = 0;
    for (let i = 1; i <= 100_000; i++) {
      if (i % 2 === 0) w.add(t, `order-${i}`, i, i);
      else w.addRun(t.runsOf("p:"), i, i, i, i);
      if (i % 100 === 0) w.expire(i);
      most = Math.max(most, t.keys.size + t.runs.get("p:")!.size);
    }
    w.expire(100_000);
    expect([w.size, t.keys.size + t.runs.get("p:")!.size, most <= 1100, w.evicted]).toEqual([1000, 1000, true, 99_000]);
    expect([w.find(t, "order-99000"), w.find(t, "order-99002"), w.find(t, "p:98999"), w.find(t, "p:99001")]).toEqual([undefined, 99_002, undefined, 99_001]);
  });

  test("DedupeWindow.addStored rebuilds one run from the records of one append, and keeps the first of an id stored twice", () => {
    const w = new DedupeWindow(60_000, 100);
    const t = new TopicIds();
    // What a log gives back, oldest first: a batch of 4 (one append time), a retry-free second batch, an id stored twice.
    const records = [
      ...[1, 2, 3, 4].map((n) => ({ msgId: `P:${n}`, seq: 10 + n, time: 500 })),
      ...[5, 6].map((n) => ({ msgId: `P:${n}`, seq: 20 + n, time: 600 })),
      { msgId: "order-9", seq: 30, time: 700 },
      { msgId: "order-9", seq: 31, time: 701 },
      { msgId: "P:2", seq: 32, time: 702 },
    ];
    for (const r of records) w.addStored(t, r.msgId, r.seq, r.time);
    expect(w.size).toBe(3);
    expect(["P:1", "P:4", "P:5", "P:6", "P:2", "order-9"].map((k) => w.find(t, k))).toEqual([11, 14, 25, 26, 12, 30]);
  });

  test("DedupeWindow.addStoredRun gives the lookups addStored of each id gives: one entry per append, extended by the next run of it, the first of an id stored twice", () => {
    // Runs as the file log reads them back (MsgIdRun), and the same ids one by one.
    const runs = [
      { msgId: "P:1", seq: 11, time: 500, count: 4 },
      { msgId: "P:5", seq: 15, time: 500, count: 2 }, // the same append, next in a new segment
      { msgId: "P:7", seq: 25, time: 600, count: 2 },
      { msgId: "order-9", seq: 30, time: 700, count: 1 },
      { msgId: "P:2", seq: 31, time: 701, count: 3 }, // P:2..P:4 stored again (deduplication was off): the first seqs count
      { msgId: "Q:0", seq: 40, time: 800, count: 1 },
    ];
    const byRun = new DedupeWindow(60_000, 100);
    const byId = new DedupeWindow(60_000, 100);
    const a = new TopicIds();
    const b = new TopicIds();
    for (const r of runs) byRun.addStoredRun(a, r.msgId, r.count, r.seq, r.time);
    for (const r of expandMsgIdRuns(runs)) byId.addStored(b, r.msgId, r.seq, r.time);
    const keys = ["P:1", "P:4", "P:5", "P:6", "P:7", "P:8", "P:9", "P:2", "order-9", "Q:0", "Q:1"];
    expect(keys.map((k) => byRun.find(a, k))).toEqual([11, 14, 15, 16, 25, 26, undefined, 12, 30, 40, undefined]);
    expect(keys.map((k) => byId.find(b, k))).toEqual(keys.map((k) => byRun.find(a, k)));
    expect(byRun.size).toBe(4); // P:1-6, P:7-8, order-9, Q:0 (here as many as id by id)
    expect(byId.size).toBe(4);
    expect(() => byRun.addStoredRun(a, "not-a-run", 2, 50, 900)).toThrow(RangeError);
  });

  test("DedupeWindow.sort puts entries added topic by topic in time order, so the bound drops the oldest of all", () => {
    const w = new DedupeWindow(60_000, 2);
    const a = new TopicIds();
    const b = new TopicIds();
    // As a restart adds them: topic a's ids, then topic b's.
    w.addStored(a, "a-new", 1, 500);
    w.addStored(b, "b-old", 1, 100);
    w.addStored(b, "q:1", 2, 300);
    w.sort();
    w.expire(600);
    expect([w.find(a, "a-new"), w.find(b, "b-old"), w.find(b, "q:1")]).toEqual([1, undefined, 2]);
  });

  test("DedupeWindow with a window of 0 is off, and refuses a bad window or bound", () => {
    expect(new DedupeWindow(0, 10).enabled).toBe(false);
    expect(new DedupeWindow(1, 10).enabled).toBe(true);
    expect(() => new DedupeWindow(-1, 10)).toThrow(RangeError);
    expect(() => new DedupeWindow(1000, 0)).toThrow(RangeError);
  });
});
