/**
 * Subscription.push and TTL, with a memory log and a fake connection: expired messages are
 * skipped without `lost`, the cursor moves past them when nothing is in flight, and a long
 * run of them is read through a bit per turn of the event loop.
 */
import { describe, expect, test } from "bun:test";
import { Credits } from "../../lib/server/credits.ts";
import { MAX_EXPIRED_PER_PUSH, Subscription, Topic } from "../../lib/server/topic.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { fakeConnection } from "./push-kit.ts";

const PAST = 1;
const FUTURE = Number.MAX_SAFE_INTEGER;

/** A topic whose message i (from seq 1) expires at `expiries[i]` (undefined: no TTL); its expired count is kept. */
async function topicWith(expiries: Array<number | undefined>): Promise<{ topic: Topic; expired: () => number }> {
  const log = new MemoryTopicLog();
  for (const at of expiries) await log.append(new Uint8Array([1]), 0, at === undefined ? undefined : { expiresAt: at });
  const topic = new Topic("t", log, new MemorySubscriberIndex());
  let expired = 0;
  topic.onExpired = (n) => void (expired += n);
  return { topic, expired: () => expired };
}

describe("Subscription.push and expired messages", () => {
  test("skipped without `lost`, frames split around them, the rest pushed with their expiries", async () => {
    const { topic, expired } = await topicWith([undefined, PAST, PAST, FUTURE, undefined]);
    const { conn, frames } = fakeConnection();
    const sub = new Subscription(1, topic, 1);
    await sub.push(conn, new Credits(Infinity, Infinity));
    expect(frames.map((f) => [f.seq, f.payloads.length, f.lost, f.expires])).toEqual([
      [1, 1, undefined, undefined],
      [4, 2, undefined, [FUTURE, 0]],
    ]);
    expect(expired()).toBe(2);
  });

  test("all expired: nothing sent, the cursor moves past them at once", async () => {
    const { topic, expired } = await topicWith([PAST, PAST, PAST]);
    const { conn, frames } = fakeConnection();
    const sub = new Subscription(1, topic, 1);
    await topic.index.add(1, 1);
    await sub.push(conn, new Credits(Infinity, Infinity));
    expect(frames.filter((f) => f.payloads.length > 0)).toEqual([]);
    expect({ acked: sub.acked, cursor: topic.index.cursors.get(1), backlog: sub.backlog, expired: expired() }).toEqual({ acked: 4, cursor: 4, backlog: false, expired: 3 });
  });

  test("expired after the last message in flight: the ack of that message moves the cursor past them", async () => {
    const { topic } = await topicWith([undefined, PAST, PAST]);
    const { conn } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    const sub = new Subscription(1, topic, 1);
    await topic.index.add(1, 1);
    await sub.push(conn, credits);
    expect(sub.acked).toBe(1);
    sub.ack(1, credits);
    expect({ acked: sub.acked, cursor: topic.index.cursors.get(1) }).toEqual({ acked: 4, cursor: 4 });
  });

  test(`a run of more than ${MAX_EXPIRED_PER_PUSH} expired messages is skipped over several turns, then the live one is pushed`, async () => {
    const { topic, expired } = await topicWith([...Array.from({ length: 3 * MAX_EXPIRED_PER_PUSH }, () => PAST), undefined]);
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    const sub = new Subscription(1, topic, 1);
    let repushes = 0;
    topic.repush = (s) => {
      repushes++;
      s.push(conn, credits);
    };
    await sub.push(conn, credits);
    expect(expired()).toBeLessThan(3 * MAX_EXPIRED_PER_PUSH);
    for (let i = 0; i < 20 && frames.every((f) => f.payloads.length === 0); i++) await new Promise((r) => setImmediate(r));
    expect(frames.filter((f) => f.payloads.length > 0).map((f) => f.seq)).toEqual([3 * MAX_EXPIRED_PER_PUSH + 1]);
    expect(expired()).toBe(3 * MAX_EXPIRED_PER_PUSH);
    expect(repushes).toBeGreaterThanOrEqual(2);
  });
});
