/**
 * The server's dedupe window on its own: what it finds, when an id expires, and its memory
 * bound. Rebuilding it after a restart reads the ids back from the log
 * (tests/store/topic-log.*: recentMsgIds); tests/e2e/idempotent.test.ts checks it through
 * a restarted server.
 */
import { describe, expect, test } from "bun:test";
import { DedupeWindow, TopicIds } from "../../lib/server/dedupe.ts";

describe("DedupeWindow", () => {
  test("DedupeWindow.find gives the seq of an id added to the same topic, and nothing for another topic or id", () => {
    const w = new DedupeWindow(10_000, 100);
    const orders = new TopicIds();
    const invoices = new TopicIds();
    w.add(orders, "k1", 7, 1000);
    w.expire(1000);
    expect([w.find(orders, "k1"), w.find(invoices, "k1"), w.find(orders, "k2")]).toEqual([7, undefined, undefined]);
    expect(w.size).toBe(1);
  });

  test("DedupeWindow keeps an id for exactly windowMs after its append time: expire(now) drops it after that", () => {
    const w = new DedupeWindow(2000, 100);
    const t = new TopicIds();
    w.add(t, "k1", 1, 1000);
    w.add(t, "k2", 2, 1500);
    w.expire(3000);
    expect([w.find(t, "k1"), w.find(t, "k2")]).toEqual([1, 2]);
    w.expire(3001);
    expect([w.find(t, "k1"), w.find(t, "k2"), t.stored.size, w.size]).toEqual([undefined, 2, 1, 1]);
    w.expire(3501);
    expect([t.stored.size, w.size, w.evicted]).toEqual([0, 0, 0]);
  });

  test("DedupeWindow.add of an expired id again makes it count from the new append, and the old entry does not take it out", () => {
    const w = new DedupeWindow(1000, 100);
    const t = new TopicIds();
    w.add(t, "k", 1, 0);
    // Added again before the old entry was dropped (as a publish does when find missed it).
    w.add(t, "k", 9, 1001);
    w.expire(1001); // drops the first entry: the key now belongs to the second
    expect([w.find(t, "k"), w.size]).toEqual([9, 1]);
    w.expire(2002);
    expect([w.find(t, "k"), w.size]).toEqual([undefined, 0]);
  });

  test("DedupeWindow holds at most maxKeys ids over all topics, forgetting the oldest first and counting them", () => {
    const evictions: number[] = [];
    const w = new DedupeWindow(60_000, 3, (count) => evictions.push(count));
    const a = new TopicIds();
    const b = new TopicIds();
    w.add(a, "a1", 1, 100);
    w.add(b, "b1", 1, 101);
    w.add(a, "a2", 2, 102);
    w.add(b, "b2", 2, 103);
    w.add(a, "a3", 3, 104);
    w.expire(200);
    expect([w.size, w.evicted, evictions]).toEqual([3, 2, [2]]);
    expect(["a1", "a2", "a3"].map((k) => w.find(a, k))).toEqual([undefined, 2, 3]);
    expect(["b1", "b2"].map((k) => w.find(b, k))).toEqual([undefined, 2]);
    expect([a.stored.size + b.stored.size]).toEqual([3]);
  });

  test("DedupeWindow memory stays bounded under a long stream of ids: the maps and the queue never pass maxKeys", () => {
    const w = new DedupeWindow(3_600_000, 1000);
    const t = new TopicIds();
    let most = 0;
    for (let i = 1; i <= 100_000; i++) {
      w.add(t, `p:${i}`, i, i);
      if (i % 100 === 0) w.expire(i);
      most = Math.max(most, t.stored.size);
    }
    w.expire(100_000);
    expect([w.size, t.stored.size, most <= 1100, w.evicted]).toEqual([1000, 1000, true, 99_000]);
    expect([w.find(t, "p:99000"), w.find(t, "p:99001")]).toEqual([undefined, 99_001]);
  });

  test("DedupeWindow.sort puts entries added topic by topic in time order, so the bound drops the oldest of all", () => {
    const w = new DedupeWindow(60_000, 2);
    const a = new TopicIds();
    const b = new TopicIds();
    // As a restart adds them: topic a's ids, then topic b's.
    w.add(a, "a-new", 1, 500);
    w.add(b, "b-old", 1, 100);
    w.add(b, "b-mid", 2, 300);
    w.sort();
    w.expire(600);
    expect([w.find(a, "a-new"), w.find(b, "b-old"), w.find(b, "b-mid")]).toEqual([1, undefined, 2]);
  });

  test("DedupeWindow with a window of 0 is off, and refuses a bad window or bound", () => {
    expect(new DedupeWindow(0, 10).enabled).toBe(false);
    expect(new DedupeWindow(1, 10).enabled).toBe(true);
    expect(() => new DedupeWindow(-1, 10)).toThrow(RangeError);
    expect(() => new DedupeWindow(1000, 0)).toThrow(RangeError);
  });
});
