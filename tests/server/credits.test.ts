/**
 * The local broker's byte budgets on the server: Subscription.push within Credits, with a
 * memory log and a fake connection that records the `msgs` frames.
 */
import { describe, expect, test } from "bun:test";
import { Credits } from "../../lib/server/credits.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import { deliveryCost, type MsgsFrame } from "../../lib/wire/messages.ts";

/** A connection that is always writable and keeps what is sent. */
function fakeConnection() {
  const frames: MsgsFrame[] = [];
  const conn = { writable: true, send: (frame: MsgsFrame) => void frames.push(frame) } as unknown as Connection;
  return { conn, frames };
}

async function topicWith(name: string, count: number, size: number): Promise<Topic> {
  const log = new MemoryTopicLog();
  for (let i = 0; i < count; i++) await log.append(new Uint8Array(size), 0);
  return new Topic(name, log, new MemorySubscriberIndex());
}

/** Seqs pushed per topic, in order, from the frames. */
function pushed(frames: MsgsFrame[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const f of frames) for (let i = 0; i < f.payloads.length; i++) (out[f.topic] ??= []).push(f.seq + i);
  return out;
}

describe("Credits", () => {
  test("a subscription stops at the id's budget, going over by one message at most", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, 10_000);
    const sub = new Subscription(1, await topicWith("a", 50, 3000), 1);
    expect(sub.push(conn, credits)).toBe(4);
    // 3 messages (9 384 bytes with their overhead) leave room; the 4th goes over.
    expect(credits.bytesOf(1)).toBe(4 * deliveryCost(3000));
    expect(credits.bytesOf(1)).toBeLessThan(10_000 + deliveryCost(3000));
    expect(pushed(frames)).toEqual({ a: [1, 2, 3, 4] });
    // The frame says more is coming, so a `recv --count` keeps asking.
    expect(frames.at(-1)!.more).toBe(true);
  });

  test("a message bigger than the budget is still pushed, one at a time", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, 512 * 1024);
    const sub = new Subscription(1, await topicWith("big", 3, 1024 * 1024), 1);
    expect(sub.push(conn, credits)).toBe(1);
    expect(sub.ack(1, credits)).toBe(1);
    expect(credits.bytesOf(1)).toBe(0);
    expect(credits.pump(sub, conn)).toBe(1);
    expect(pushed(frames)).toEqual({ big: [1, 2] });
  });

  test("the broker's budget holds across ids", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(20_000, 15_000);
    const a = new Subscription(1, await topicWith("a", 50, 1000), 1);
    const b = new Subscription(2, await topicWith("b", 50, 1000), 1);
    credits.pump(a, conn);
    credits.pump(b, conn);
    expect(credits.bytesOf(1)).toBeLessThan(15_000 + deliveryCost(1000));
    expect(credits.bytes).toBeLessThan(20_000 + deliveryCost(1000));
    expect(credits.bytesOf(2)).toBeGreaterThan(0);
    expect(Object.keys(pushed(frames)).sort()).toEqual(["a", "b"]);
  });

  test("serves waiting subscriptions in turn: a topic whose acks free room does not starve the others", async () => {
    const { conn, frames } = fakeConnection();
    // Room for 4 messages of `busy` at a time.
    const credits = new Credits(Infinity, 4 * deliveryCost(1000));
    const busy = new Subscription(1, await topicWith("busy", 100, 1000), 1);
    const quiet = [new Subscription(1, await topicWith("q1", 3, 1000), 1), new Subscription(1, await topicWith("q2", 3, 1000), 1)];
    for (const sub of [busy, ...quiet]) credits.pump(sub, conn);
    expect(Object.keys(pushed(frames))).toEqual(["busy"]);
    // Waiting ones say so with an empty frame: the local broker learns that more will come.
    expect(frames.filter((f) => f.payloads.length === 0).map((f) => [f.topic, f.more])).toEqual([["q1", true], ["q2", true]]);
    // The consumer only ever has messages of `busy` to acknowledge, one at a time.
    let acked = 0;
    for (let round = 0; round < 10; round++) {
      acked++;
      busy.ack(acked, credits);
      credits.pump(busy, conn);
    }
    const got = pushed(frames);
    expect(got.q1!.length).toBeGreaterThan(0);
    expect(got.q2!.length).toBeGreaterThan(0);
    expect(credits.bytesOf(1)).toBeLessThanOrEqual(4 * deliveryCost(1000));
  });

  test("an unsubscribed subscription gives its room back to those waiting", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, 4 * deliveryCost(1000));
    const gone = new Subscription(1, await topicWith("gone", 10, 1000), 1);
    const waiting = new Subscription(1, await topicWith("waiting", 10, 1000), 1);
    credits.pump(gone, conn);
    credits.pump(waiting, conn);
    expect(pushed(frames).waiting).toBeUndefined();
    gone.drop(credits);
    expect(credits.bytesOf(1)).toBe(0);
    credits.serve(conn);
    expect(pushed(frames).waiting).toEqual([1, 2, 3, 4]);
  });

  test("without budgets (a local broker that announces none) only the window applies", async () => {
    const { conn } = fakeConnection();
    const credits = new Credits();
    const sub = new Subscription(1, await topicWith("a", 300, 10), 1);
    expect(sub.push(conn, credits)).toBe(256);
  });

  test("a budget below 1 byte is a RangeError", () => {
    expect(() => new Credits(0, 1)).toThrow(RangeError);
  });
});
