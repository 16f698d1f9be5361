/**
 * The local broker's byte budgets on the server: Subscription.push within Credits, with a
 * memory log and a fake connection that records the `msgs` frames. Pushes read the log
 * asynchronously: `settled()` waits until every read of a memory log has returned.
 */
import { describe, expect, test } from "bun:test";
import { Credits } from "../../lib/server/credits.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";
import { MIN_WINDOW_MESSAGES } from "../../lib/server/window.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { deliveryCost, type MsgsFrame } from "../../lib/wire/messages.ts";
import { GatedLog, fakeConnection, settled } from "./push-kit.ts";

async function gatedTopic(name: string, count: number, size: number): Promise<{ topic: Topic; log: GatedLog }> {
  const log = new GatedLog();
  for (let i = 0; i < count; i++) await log.append(new Uint8Array(size), 0);
  return { topic: new Topic(name, log, new MemorySubscriberIndex()), log };
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
    let delivered = 0;
    const credits = new Credits(Infinity, 10_000, (n) => (delivered += n));
    const sub = new Subscription(1, await topicWith("a", 50, 3000), 1);
    await sub.push(conn, credits);
    expect(delivered).toBe(4);
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
    await sub.push(conn, credits);
    expect(pushed(frames)).toEqual({ big: [1] });
    expect(sub.ack(1, credits)).toBe(1);
    expect(credits.bytesOf(1)).toBe(0);
    credits.pump(sub, conn);
    await settled();
    expect(pushed(frames)).toEqual({ big: [1, 2] });
  });

  test("the broker's budget holds across ids", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(20_000, 15_000);
    const a = new Subscription(1, await topicWith("a", 50, 1000), 1);
    const b = new Subscription(2, await topicWith("b", 50, 1000), 1);
    credits.pump(a, conn);
    credits.pump(b, conn);
    await settled();
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
    await settled();
    expect(Object.keys(pushed(frames))).toEqual(["busy"]);
    // Waiting ones say so with an empty frame: the local broker learns that more will come.
    expect(frames.filter((f) => f.payloads.length === 0).map((f) => [f.topic, f.more])).toEqual([["q1", true], ["q2", true]]);
    // The consumer only ever has messages of `busy` to acknowledge, one at a time.
    let acked = 0;
    for (let round = 0; round < 10; round++) {
      acked++;
      busy.ack(acked, credits);
      credits.pump(busy, conn);
      await settled();
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
    await settled();
    expect(pushed(frames).waiting).toBeUndefined();
    gone.drop(credits);
    expect(credits.bytesOf(1)).toBe(0);
    credits.serve(conn);
    await settled();
    expect(pushed(frames).waiting).toEqual([1, 2, 3, 4]);
  });

  test("without budgets (a local broker that announces none) only the window applies", async () => {
    const { conn, frames } = fakeConnection();
    let delivered = 0;
    const credits = new Credits(Infinity, Infinity, (n) => (delivered += n));
    const sub = new Subscription(1, await topicWith("a", MIN_WINDOW_MESSAGES + 44, 10), 1);
    await sub.push(conn, credits);
    expect(delivered).toBe(MIN_WINDOW_MESSAGES);
    expect(pushed(frames).a).toEqual(Array.from({ length: MIN_WINDOW_MESSAGES }, (_, i) => i + 1));
  });

  test("a push asked for while a read is pending is taken up when it returns: one read at a time, every message once, in order", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits();
    const { topic, log } = await gatedTopic("g", 10, 100);
    const sub = new Subscription(1, topic, 1);
    const first = sub.push(conn, credits);
    // A publish and an ack arrive while the read is pending.
    await log.append(new Uint8Array(100), 0);
    void sub.push(conn, credits);
    void sub.push(conn, credits);
    expect(frames).toEqual([]);
    // Bounded: each round lets the reads pending now return.
    for (let round = 0; round < 10 && log.inFlight > 0; round++) {
      log.open();
      await settled();
    }
    await first;
    expect(log.mostInFlight).toBe(1);
    expect(pushed(frames).g).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
  });

  test("a subscription dropped while its read is pending sends nothing and gives back the room it held", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(100_000, 50_000);
    const { topic, log } = await gatedTopic("g", 10, 100);
    const sub = new Subscription(1, topic, 1);
    const pending = sub.push(conn, credits);
    // The room the read may fill is taken while it is pending.
    expect(credits.bytesOf(1)).toBeGreaterThan(0);
    sub.drop(credits);
    expect(credits.bytesOf(1)).toBe(0);
    log.open();
    await pending;
    expect(frames).toEqual([]);
    expect([credits.bytes, credits.bytesOf(1)]).toEqual([0, 0]);
  });

  test("a subscription rewound by a reconnect while its read is pending sends the stale batch nowhere; the new session gets everything unacknowledged", async () => {
    const old = fakeConnection();
    const fresh = fakeConnection();
    const oldCredits = new Credits();
    const newCredits = new Credits();
    const { topic, log } = await gatedTopic("g", 5, 100);
    const sub = new Subscription(1, topic, 1);
    const pending = sub.push(old.conn, oldCredits);
    // The local broker reconnects: the server rewinds, then pumps on the new session.
    (old.conn as { closed: boolean }).closed = true;
    sub.rewind();
    void sub.push(fresh.conn, newCredits);
    for (let round = 0; round < 10 && log.inFlight > 0; round++) {
      log.open();
      await settled();
    }
    await pending;
    expect(old.frames).toEqual([]);
    expect(pushed(fresh.frames).g).toEqual([1, 2, 3, 4, 5]);
    expect(newCredits.bytesOf(1)).toBe(5 * deliveryCost(100));
  });

  test("the room a pending read may fill is taken at once: a second id waits for it instead of reading with the same room", async () => {
    const { conn, frames } = fakeConnection();
    const credits = new Credits(20_000, 20_000);
    const a = await gatedTopic("a", 50, 1000);
    const b = await gatedTopic("b", 50, 1000);
    const subA = new Subscription(1, a.topic, 1);
    const subB = new Subscription(2, b.topic, 1);
    credits.pump(subA, conn);
    credits.pump(subB, conn);
    // B found no room left: it waits in turn and does not read.
    expect([a.log.reads, b.log.reads, subB.queued]).toEqual([1, 0, true]);
    a.log.open();
    await settled();
    expect(credits.bytes).toBeLessThan(20_000 + deliveryCost(1000));
    expect(pushed(frames).a!.length).toBeGreaterThan(0);
    expect(pushed(frames).b).toBeUndefined();
  });

  test("a budget below 1 byte is a RangeError", () => {
    expect(() => new Credits(0, 1)).toThrow(RangeError);
  });
});
