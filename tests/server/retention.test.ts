/**
 * trimTopic (lib/server/retention.ts) on the memory log: soft retention stops at the
 * slowest subscriber's acknowledged cursor; hard retention applies the limits anyway and
 * counts, per subscriber, the unacknowledged messages it deleted, once. (Through the binary,
 * segments and restarts: tests/e2e/retention.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { configureLog } from "../../lib/log.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { RetentionDrops, trimTopic } from "../../lib/server/retention.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";

const T0 = 1_000_000;

// The warning each hard drop logs is not what these tests look at.
beforeAll(() => configureLog({ level: "error" }));
afterAll(() => configureLog());

/** A topic of `n` messages appended at T0, with subscribers acknowledged up to the given cursors (id → cursor). */
async function topicWith(n: number, cursors: Record<number, number>): Promise<Topic> {
  const topic = new Topic("t", new MemoryTopicLog(), new MemorySubscriberIndex());
  for (let i = 0; i < n; i++) await topic.log.append(new Uint8Array([i]), T0);
  for (const [id, cursor] of Object.entries(cursors)) topic.subscriptions.set(Number(id), new Subscription(Number(id), topic, cursor));
  return topic;
}

const expired = { maxAgeMs: 1000, maxBytes: Infinity };
const later = T0 + 10_000;

describe("trimTopic", () => {
  // A start reads the dedupe window's ids back from the records: retention that deleted them
  // (--retention 1s) made 260 of 300 lines sent again after a restart stored twice.
  for (const limit of ["soft", "hard"] as const) {
    test(`${limit}: messages appended within the dedupe window stay, whatever the limits; they go once it has passed`, async () => {
      const topic = await topicWith(10, {});
      const drops = new RetentionDrops();
      const policy = { maxAgeMs: 1000, maxBytes: 3, limit };
      expect(await trimTopic(topic, policy, T0 + 5000, drops, 120_000)).toBe(0);
      expect(topic.log.firstSeq).toBe(1);
      expect(await trimTopic(topic, policy, T0 + 120_001, drops, 120_000)).toBeGreaterThan(0);
    });
  }

  test("soft (the default): nothing past the slowest subscriber's acknowledged cursor goes, however old", async () => {
    const topic = await topicWith(10, { 1: 4, 2: 11 });
    const drops = new RetentionDrops();
    expect(await trimTopic(topic, expired, later, drops)).toBe(3);
    expect(topic.log.firstSeq).toBe(4);
    expect(await trimTopic(topic, { ...expired, limit: "soft" }, later, drops)).toBe(0);
    expect(drops.list()).toEqual([]);
  });

  test("soft: a topic without subscribers is trimmed by the limits alone", async () => {
    const topic = await topicWith(10, {});
    expect(await trimTopic(topic, expired, later, new RetentionDrops())).toBe(10);
  });

  test("hard: the limits win; each subscriber behind the new first seq is counted for its unacknowledged messages deleted", async () => {
    const topic = await topicWith(10, { 1: 1, 2: 4, 3: 11 });
    const drops = new RetentionDrops();
    expect(await trimTopic(topic, { maxAgeMs: 1000, maxBytes: 3, limit: "hard" }, T0, drops)).toBe(7);
    expect(topic.log.firstSeq).toBe(8);
    expect(drops.list()).toEqual([
      { global_id: 1, topic: "t", dropped: 7 },
      { global_id: 2, topic: "t", dropped: 4 },
    ]);
    // A later trim counts only what it deletes itself: the cursors have not moved.
    expect(await trimTopic(topic, { ...expired, limit: "hard" }, later, drops)).toBe(3);
    expect(drops.list()).toEqual([
      { global_id: 1, topic: "t", dropped: 10 },
      { global_id: 2, topic: "t", dropped: 7 },
    ]);
  });

  test("hard, with nothing old or big enough: nothing goes, nothing is counted", async () => {
    const topic = await topicWith(5, { 1: 1 });
    const drops = new RetentionDrops();
    expect(await trimTopic(topic, { ...expired, limit: "hard" }, T0, drops)).toBe(0);
    expect(drops.list()).toEqual([]);
  });

  test("forget: an id destroyed or unsubscribed no longer shows in the counts", () => {
    const drops = new RetentionDrops();
    drops.add(1, "a", 2);
    drops.add(1, "b", 3);
    drops.add(2, "a", 4);
    drops.forget(1, "a");
    expect(drops.list()).toEqual([
      { global_id: 2, topic: "a", dropped: 4 },
      { global_id: 1, topic: "b", dropped: 3 },
    ]);
    drops.forget(1);
    drops.forget(2);
    expect(drops.list()).toEqual([]);
  });
});
