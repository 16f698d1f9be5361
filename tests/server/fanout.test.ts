/**
 * Fan-out once per local broker (lib/server/fanout.ts, Subscription.push): subscriptions of
 * several ids of one local broker to one topic share a read of the log and one `msgs` frame
 * (its `ids`), while cursors, windows, credits and acks stay per id. A memory log and a fake
 * connection that records the frames; `topic.sharesPushes` says what the server would (the
 * local broker announced MSGS_IDS_CAP, and owns the id).
 */
import { describe, expect, test } from "bun:test";
import { Credits } from "../../lib/server/credits.ts";
import { Readers } from "../../lib/server/fanout.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";
import { MIN_WINDOW_MESSAGES } from "../../lib/server/window.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import { deliveryCost, type MsgsFrame } from "../../lib/wire/messages.ts";
import { GatedLog, fakeConnection, settled } from "./push-kit.ts";

interface Setup {
  topic: Topic;
  log: MemoryTopicLog;
  subs: Subscription[];
  /** Messages counted as shared (`fanout_shared`) and expired. */
  shared: () => number;
  expired: () => number;
}

/** A topic with `count` messages of `size` bytes and subscriptions of ids 1..`ids` from seq 1, all of one local broker on `conn` (unless `shares` is false). */
async function setup(ids: number, count: number, options: { size?: number; log?: MemoryTopicLog; shares?: (conn: Connection, id: number) => boolean; expiresAt?: (seq: number) => number | undefined } = {}): Promise<Setup> {
  const log = options.log ?? new MemoryTopicLog();
  for (let seq = 1; seq <= count; seq++) {
    const expiresAt = options.expiresAt?.(seq);
    await log.append(new Uint8Array(options.size ?? 10).fill(seq & 0xff), 1000 + seq, expiresAt === undefined ? undefined : { expiresAt });
  }
  const topic = new Topic("t", log, new MemorySubscriberIndex());
  topic.sharesPushes = options.shares ?? (() => true);
  let shared = 0;
  let expired = 0;
  topic.onShared = (n) => void (shared += n);
  topic.onExpired = (n) => void (expired += n);
  const subs: Subscription[] = [];
  for (let id = 1; id <= ids; id++) {
    await topic.index.add(id, 1);
    const sub = new Subscription(id, topic, 1);
    topic.subscriptions.set(id, sub);
    subs.push(sub);
  }
  return { topic, log, subs, shared: () => shared, expired: () => expired };
}

/** What each id received, in order: seqs from the frames for it (`id`, or in `ids`). */
function received(frames: MsgsFrame[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const f of frames) {
    for (const id of [f.id, ...(f.ids ?? [])]) {
      const seqs = out.get(id) ?? [];
      for (let i = 0; i < f.payloads.length; i++) seqs.push(f.seq + i);
      out.set(id, seqs);
    }
  }
  return out;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Frames that carry messages (not the empty `more` notices). */
const dataFrames = (frames: MsgsFrame[]) => frames.filter((f) => f.payloads.length > 0);

/** As the server's publish does: every subscription of the topic pushed, one after the other, in one turn. */
function pumpAll(subs: Subscription[], conn: Connection, credits: Credits): void {
  for (const sub of subs) void sub.push(conn, credits);
}

/** As the local broker and the server's ack do: ids in `acking` acknowledge what they received so far, then are pushed again. */
function ackAndPump(subs: Subscription[], frames: MsgsFrame[], conn: Connection, credits: Credits, acking: (id: number) => boolean = () => true): void {
  const got = received(frames);
  for (const sub of subs) {
    const seqs = got.get(sub.id);
    if (!acking(sub.id) || !seqs || seqs.length === 0) continue;
    sub.ack(seqs[seqs.length - 1]!, credits);
  }
  pumpAll(subs.filter((s) => acking(s.id)), conn, credits);
}

describe("fan-out once per local broker", () => {
  test("subscriptions of one broker pushed together share one read and one frame per batch; every id gets every message once, in order", async () => {
    const { log: gated } = { log: new GatedLog() };
    const { subs, shared } = await setup(8, 50, { log: gated });
    const { conn, frames } = fakeConnection();
    let delivered = 0;
    const credits = new Credits(Infinity, Infinity, (n) => (delivered += n));
    pumpAll(subs, conn, credits);
    gated.open();
    await settled();
    expect(gated.reads).toBe(1);
    const data = dataFrames(frames);
    expect(data.map((f) => [f.id, f.ids, f.seq, f.payloads.length])).toEqual([[1, [2, 3, 4, 5, 6, 7, 8], 1, 50]]);
    const got = received(frames);
    for (const sub of subs) {
      expect(got.get(sub.id)).toEqual(range(1, 50));
      expect(sub.sentCursor).toBe(51);
      // Charged per id, as if each had been pushed on its own.
      expect(credits.bytesOf(sub.id)).toBe(50 * deliveryCost(10));
    }
    expect({ delivered, shared: shared() }).toEqual({ delivered: 8 * 50, shared: 7 * 50 });
    // Acks stay per id: one id's ack moves its cursor only.
    subs[2]!.ack(20, credits);
    expect(subs.map((s) => s.acked)).toEqual([1, 1, 21, 1, 1, 1, 1, 1]);
    expect(credits.bytesOf(3)).toBe(30 * deliveryCost(10));
  });

  test("a local broker that did not announce msgs.ids gets one frame per id, as before", async () => {
    const { subs, shared } = await setup(4, 10, { shares: () => false });
    const { conn, frames } = fakeConnection();
    pumpAll(subs, conn, new Credits(Infinity, Infinity));
    await settled();
    expect(dataFrames(frames).map((f) => [f.id, f.ids])).toEqual([
      [1, undefined],
      [2, undefined],
      [3, undefined],
      [4, undefined],
    ]);
    expect(shared()).toBe(0);
  });

  test("ids of another local broker (another connection) never ride: each broker gets its own copy", async () => {
    const a = fakeConnection();
    const b = fakeConnection();
    // Ids 1-2 belong to the broker on connection a, 3-4 to the one on b.
    const { subs } = await setup(4, 10, { shares: (conn, id) => (id <= 2 ? conn === a.conn : conn === b.conn) });
    const creditsA = new Credits(Infinity, Infinity);
    const creditsB = new Credits(Infinity, Infinity);
    for (const sub of subs) void sub.push(sub.id <= 2 ? a.conn : b.conn, sub.id <= 2 ? creditsA : creditsB);
    await settled();
    expect(dataFrames(a.frames).map((f) => [f.id, f.ids])).toEqual([[1, [2]]]);
    expect(dataFrames(b.frames).map((f) => [f.id, f.ids])).toEqual([[3, [4]]]);
  });

  test("one id that does not acknowledge stops at its window; the others go on to the end, still sharing", async () => {
    const total = 3 * MIN_WINDOW_MESSAGES;
    const { subs, shared } = await setup(4, total);
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    pumpAll(subs, conn, credits);
    await settled();
    // Bounded: every round acks and pushes the others; a window is at least MIN_WINDOW_MESSAGES.
    for (let round = 0; round < 20 && subs.slice(1).some((s) => s.sentCursor <= total); round++) {
      ackAndPump(subs, frames, conn, credits, (id) => id !== 1);
      await settled();
    }
    const got = received(frames);
    for (const id of [2, 3, 4]) expect(got.get(id)).toEqual(range(1, total));
    // The slow id got one window and waits for its acks (nothing lost, nothing twice).
    expect(got.get(1)).toEqual(range(1, subs[0]!.window.messages));
    expect(subs[0]!.acked).toBe(1);
    // Past the slow id's window the others shared frames among themselves.
    const later = dataFrames(frames).filter((f) => f.seq > subs[0]!.window.messages);
    expect(later.some((f) => f.ids !== undefined && f.ids.length === 2)).toBe(true);
    expect(shared()).toBeGreaterThan(0);
    // Once it acknowledges, it catches up on its own.
    for (let round = 0; round < 20 && subs[0]!.sentCursor <= total; round++) {
      ackAndPump(subs, frames, conn, credits);
      await settled();
    }
    expect(received(frames).get(1)).toEqual(range(1, total));
  });

  test("a rider waiting for the read is unsubscribed meanwhile: the frame is not for it, its budget is not charged, the others get everything", async () => {
    const gated = new GatedLog();
    const { topic, subs } = await setup(3, 20, { log: gated });
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    pumpAll(subs, conn, credits);
    // As the server's unsubscribe does.
    topic.subscriptions.delete(2);
    subs[1]!.drop(credits);
    gated.open();
    await settled();
    expect(dataFrames(frames).map((f) => [f.id, f.ids, f.payloads.length])).toEqual([[1, [3], 20]]);
    expect(credits.bytesOf(2)).toBe(0);
    expect(credits.bytes).toBe(2 * 20 * deliveryCost(10));
  });

  test("a rider unsubscribed with messages in flight gives them back; the leader and the others go on", async () => {
    const { topic, subs } = await setup(3, 10);
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    pumpAll(subs, conn, credits);
    await settled();
    expect(credits.bytes).toBe(3 * 10 * deliveryCost(10));
    topic.subscriptions.delete(3);
    subs[2]!.drop(credits);
    expect(credits.bytes).toBe(2 * 10 * deliveryCost(10));
    for (let seq = 11; seq <= 20; seq++) await topic.log.append(new Uint8Array(10), 0);
    pumpAll(subs.slice(0, 2), conn, credits);
    await settled();
    const got = received(frames);
    expect([got.get(1), got.get(2), got.get(3)]).toEqual([range(1, 20), range(1, 20), range(1, 10)]);
    expect(dataFrames(frames).at(-1)!.ids).toEqual([2]);
  });

  test("the leader is unsubscribed while it reads: its riders push on their own, nothing lost", async () => {
    const gated = new GatedLog();
    const { topic, subs } = await setup(3, 20, { log: gated });
    topic.repush = (sub) => void sub.push(conn, credits);
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    pumpAll(subs, conn, credits);
    topic.subscriptions.delete(1);
    subs[0]!.drop(credits);
    // Bounded: each open lets the reads waiting now return.
    for (let i = 0; i < 5; i++) {
      gated.open();
      await settled();
    }
    const got = received(frames);
    expect([got.get(1), got.get(2), got.get(3)]).toEqual([undefined, range(1, 20), range(1, 20)]);
    expect(dataFrames(frames).map((f) => [f.id, f.ids])).toEqual([[2, [3]]]);
  });

  test("a reconnect while a rider waits: the new session gets everything unacknowledged, per id", async () => {
    const gated = new GatedLog();
    const { topic, subs } = await setup(3, 20, { log: gated });
    const old = fakeConnection();
    const fresh = fakeConnection();
    const oldCredits = new Credits(Infinity, Infinity);
    const freshCredits = new Credits(Infinity, Infinity);
    // Only the new session is the broker's once it said hello.
    let session = old.conn;
    topic.sharesPushes = (conn) => conn === session;
    topic.repush = (sub) => void sub.push(session, session === old.conn ? oldCredits : freshCredits);
    pumpAll(subs, old.conn, oldCredits);
    // The connection drops; the broker says hello again: every subscription rewinds, then is pushed.
    (old.conn as { closed: boolean }).closed = true;
    session = fresh.conn;
    for (const sub of subs) sub.rewind();
    pumpAll(subs, fresh.conn, freshCredits);
    for (let i = 0; i < 5; i++) {
      gated.open();
      await settled();
    }
    expect(dataFrames(old.frames)).toEqual([]);
    const got = received(fresh.frames);
    for (const id of [1, 2, 3]) expect(got.get(id)).toEqual(range(1, 20));
    for (const id of [1, 2, 3]) expect(freshCredits.bytesOf(id)).toBe(20 * deliveryCost(10));
  });

  test("a rider behind or ahead of the leader does not ride: it pushes from its own cursor", async () => {
    const { topic, subs } = await setup(2, 10);
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    topic.repush = (sub) => void sub.push(conn, credits);
    await subs[0]!.push(conn, credits);
    for (let seq = 11; seq <= 15; seq++) await topic.log.append(new Uint8Array(10), 0);
    // Id 1 is at 11, id 2 at 1: no sharing; each gets what it misses.
    pumpAll(subs, conn, credits);
    await settled();
    const got = received(frames);
    expect([got.get(1), got.get(2)]).toEqual([range(1, 15), range(1, 15)]);
    expect(frames.every((f) => f.ids === undefined)).toBe(true);
  });

  test("hard retention deleted what was not sent: each rider's frame says `lost`, the same for all", async () => {
    const { log, subs } = await setup(3, 20);
    // The first 5 messages are deleted before any push.
    await log.trim(6, { maxAgeMs: 0, maxBytes: 0 } as Parameters<MemoryTopicLog["trim"]>[1], Date.now());
    const { conn, frames } = fakeConnection();
    pumpAll(subs, conn, new Credits(Infinity, Infinity));
    await settled();
    expect(dataFrames(frames).map((f) => [f.id, f.ids, f.seq, f.lost, f.payloads.length])).toEqual([[1, [2, 3], 6, 5, 15]]);
  });

  test("expired messages are skipped for every rider: counted per id, and their cursors move past them", async () => {
    // Seqs 3-4 and 9-10 have expired.
    const { subs, expired } = await setup(3, 10, { expiresAt: (seq) => ([3, 4, 9, 10].includes(seq) ? 1 : undefined) });
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, Infinity);
    pumpAll(subs, conn, credits);
    await settled();
    expect(dataFrames(frames).map((f) => [f.id, f.ids, f.seq, f.payloads.length, f.lost])).toEqual([
      [1, [2, 3], 1, 2, undefined],
      [1, [2, 3], 5, 4, undefined],
    ]);
    expect(expired()).toBe(3 * 4);
    for (const sub of subs) {
      expect(sub.sentCursor).toBe(11);
      // The ack of the last live message moves the cursor past the expired ones after it.
      sub.ack(8, credits);
      expect(sub.acked).toBe(11);
    }
  });

  test("credits per id: a rider without room in its id's budget does not ride, and waits for its acks", async () => {
    const { topic, subs } = await setup(3, 20, { size: 100 });
    const { conn, frames } = fakeConnection();
    const credits = new Credits(Infinity, 50 * deliveryCost(100));
    topic.repush = (sub) => credits.pump(sub, conn);
    // Id 3 already holds most of its budget (another topic's messages, say).
    credits.charge(3, 45 * deliveryCost(100));
    pumpAll(subs, conn, credits);
    await settled();
    const data = dataFrames(frames);
    expect(data[0]!.ids).toEqual([2]);
    const got = received(frames);
    expect([got.get(1), got.get(2)]).toEqual([range(1, 20), range(1, 20)]);
    // Id 3 got what its budget allows (going over by one message at most), on its own.
    const third = got.get(3) ?? [];
    expect(third).toEqual(range(1, third.length));
    expect(credits.bytesOf(3)).toBeLessThan(50 * deliveryCost(100) + deliveryCost(100));
    expect(credits.bytesOf(1)).toBe(20 * deliveryCost(100));
    expect(credits.bytesOf(2)).toBe(20 * deliveryCost(100));
    // Its acks free room: the rest comes.
    credits.release(3, 45 * deliveryCost(100));
    for (let round = 0; round < 10 && subs[2]!.sentCursor <= 20; round++) {
      ackAndPump(subs, frames, conn, credits, (id) => id === 3);
      await settled();
    }
    expect(received(frames).get(3)).toEqual(range(1, 20));
  });

  test("the broker's budget holds with riders: what they take counts in it, going over by one message at most; acks bring the rest", async () => {
    const { topic, subs } = await setup(4, 40, { size: 100 });
    const { conn, frames } = fakeConnection();
    const budget = 30 * deliveryCost(100);
    const credits = new Credits(budget, Infinity);
    topic.repush = (sub) => credits.pump(sub, conn);
    pumpAll(subs, conn, credits);
    await settled();
    expect(credits.bytes).toBeLessThanOrEqual(budget + deliveryCost(100));
    expect(dataFrames(frames).some((f) => f.ids !== undefined)).toBe(true);
    for (let round = 0; round < 40 && subs.some((s) => s.sentCursor <= 40); round++) {
      ackAndPump(subs, frames, conn, credits);
      await settled();
      expect(credits.bytes).toBeLessThanOrEqual(budget + deliveryCost(100));
    }
    const got = received(frames);
    for (const sub of subs) expect(got.get(sub.id)).toEqual(range(1, 40));
  });
});

describe("Readers", () => {
  test("Readers: the first read from a seq leads until it ends; then none, and a new read leads again", () => {
    const readers = new Readers<string>();
    const conn = {} as Connection;
    const other = {} as Connection;
    expect(readers.leaderFor(conn, 5)).toBeUndefined();
    readers.start("a", conn, 5);
    readers.start("b", conn, 5);
    expect([readers.leaderFor(conn, 5), readers.leaderFor(conn, 6), readers.leaderFor(other, 5)]).toEqual(["a", undefined, undefined]);
    readers.end("b", conn, 5); // not the leader: nothing changes
    expect(readers.leaderFor(conn, 5)).toBe("a");
    readers.end("a", conn, 5);
    expect(readers.leaderFor(conn, 5)).toBeUndefined();
    readers.start("b", conn, 5);
    expect(readers.leaderFor(conn, 5)).toBe("b");
  });
});
