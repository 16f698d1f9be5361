/**
 * The local broker holds a message pushed again for another id (in a frame of its own, not
 * with `ids`) as the object made for the first push, its CBOR written once for both ids'
 * deliveries (lib/local/recent-messages.ts); only the very same message is shared.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { RECENT_IDLE_TICKS, RECENT_PINNED_MAX_BYTES, RECENT_SLOTS, RecentMessages } from "../../lib/local/recent-messages.ts";
import { configureLog } from "../../lib/log.ts";
import { encode } from "../../lib/wire/codec.ts";
import { ENCODE_ONCE_MAX_BYTES, FrameWriter, isEncodedOnce } from "../../lib/wire/hot-frames.ts";
import { PROTOCOL_VERSION, type MsgsFrame } from "../../lib/wire/messages.ts";
import { RawPeer } from "../security/kit.ts";
import { buffered, scripted } from "./scripted-server.ts";

afterAll(() => configureLog());

/** A push of `n` messages of `topic` from `seq` for `id`; payload k is `fill + k` repeated, each its own buffer (as read from a socket). */
const push = (id: number, topic: string, seq: number, n: number, fill = 0, extra: Partial<MsgsFrame> = {}): MsgsFrame => ({
  op: "msgs",
  id,
  topic,
  seq,
  times: Array.from({ length: n }, (_, k) => 1_700_000_000_000 + seq + k),
  payloads: Array.from({ length: n }, (_, k) => new Uint8Array(16).fill((fill + seq + k) % 251)),
  more: false,
  ...extra,
});

describe("RecentMessages", () => {
  test("the same messages pushed for a second id are the first push's objects, encoded once when found again", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    const first = recent.messagesOf(push(1, "t", 10, 5));
    expect(first.some(isEncodedOnce)).toBe(false); // one id so far: nothing encoded ahead
    // Id 2 from seq 12: the same messages (equal bytes in buffers of their own), and two new ones.
    const second = recent.messagesOf(push(2, "t", 12, 5));
    expect(second.slice(0, 3)).toEqual(first.slice(2));
    for (let k = 0; k < 3; k++) expect(second[k]).toBe(first[k + 2]!);
    expect(second.slice(0, 3).every(isEncodedOnce)).toBe(true);
    expect(isEncodedOnce(second[3]!)).toBe(false);
    expect(counters.reused).toBe(3);
    // What a delivery of the shared messages writes is what the generic encoder writes.
    const w = new FrameWriter();
    const frame = { op: "delivery", id: 2, messages: second };
    w.frame(frame, encode);
    expect(Buffer.from(w.buf.subarray(4, w.pos)).equals(Buffer.from(encode(frame)))).toBe(true);
  });

  test("another message at the same topic and seq is not taken for it: other bytes, another time, another topic", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    const [original] = recent.messagesOf(push(1, "t", 1, 1));
    const otherBytes = recent.messagesOf(push(2, "t", 1, 1, 7))[0]!; // e.g. a server whose data was wiped
    const otherTime = recent.messagesOf({ ...push(2, "t", 1, 1), times: [5] })[0]!;
    const otherTopic = recent.messagesOf(push(2, "u", 1, 1))[0]!;
    for (const m of [otherBytes, otherTime, otherTopic]) expect(m).not.toBe(original!);
    expect(otherBytes.data[0]).toBe(8);
    expect(otherTime.time).toBe(5);
    expect(otherTopic.topic).toBe("u");
    expect(counters.reused).toBe(0);
  });

  test("pushes with headers or expiries, and payloads over ENCODE_ONCE_MAX_BYTES, are not shared", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    const withHeaders = push(1, "t", 1, 2, 0, { headers: [{ a: "1" }, {}] });
    const a = recent.messagesOf(withHeaders);
    const b = recent.messagesOf({ ...withHeaders, id: 2 });
    expect(a[0]!.headers).toEqual({ a: "1" });
    expect(b[0]).not.toBe(a[0]!);
    const big = { ...push(1, "t", 5, 1), payloads: [new Uint8Array(ENCODE_ONCE_MAX_BYTES + 1)] };
    expect(recent.messagesOf({ ...big, id: 2 })[0]).not.toBe(recent.messagesOf(big)[0]!);
    expect(counters.reused).toBe(0);
  });

  test("a frame for several ids is encoded once at once; its first message with `lost` is not (each id gets its own copy)", () => {
    const recent = new RecentMessages({ reused: 0 });
    const messages = recent.messagesOf(push(1, "t", 20, 3, 0, { ids: [2, 3], lost: 4 }));
    expect(messages.map(isEncodedOnce)).toEqual([false, true, true]);
  });

  test("the buffers its payloads keep alive are bounded: past RECENT_PINNED_MAX_BYTES no more messages are kept", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    const MiB = 1024 * 1024;
    const fit = RECENT_PINNED_MAX_BYTES / MiB;
    // Each message the only small one in a buffer of 1 MiB (a socket read of big messages of other topics).
    const inBigBuffer = (id: number, seq: number): MsgsFrame => ({ ...push(id, "t", seq, 1), payloads: [new Uint8Array(MiB).fill(seq % 251).subarray(0, 16)] });
    for (let seq = 1; seq <= fit + 8; seq++) recent.messagesOf(inBigBuffer(1, seq));
    for (let seq = 1; seq <= fit + 8; seq++) recent.messagesOf(inBigBuffer(2, seq));
    expect(counters.reused).toBe(fit);
    // Messages of one buffer count it once: 1,000 of them fit beside nothing else.
    const shared = new RecentMessages(counters);
    const block = new Uint8Array(MiB);
    const many = (id: number): MsgsFrame => ({ ...push(id, "u", 1, 1000), payloads: Array.from({ length: 1000 }, (_, k) => block.subarray(16 * k, 16 * k + 16)) });
    shared.messagesOf(many(1));
    counters.reused = 0;
    shared.messagesOf(many(2));
    expect(counters.reused).toBe(1000);
  });

  test("RECENT_IDLE_TICKS without pushes empty the table (tick); a push meanwhile keeps it", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    recent.messagesOf(push(1, "t", 1, 2));
    for (let k = 0; k < RECENT_IDLE_TICKS - 1; k++) recent.tick(); // not idle long enough: kept
    recent.messagesOf(push(2, "t", 1, 2));
    expect(counters.reused).toBe(2);
    for (let k = 0; k < RECENT_IDLE_TICKS - 1; k++) recent.tick(); // the push restarted the count: kept
    recent.messagesOf(push(3, "t", 1, 2));
    expect(counters.reused).toBe(4);
    for (let k = 0; k < RECENT_IDLE_TICKS + 1; k++) recent.tick(); // idle long enough: emptied
    recent.messagesOf(push(4, "t", 1, 2));
    expect(counters.reused).toBe(4);
  });

  test("the table is bounded: a message RECENT_SLOTS seqs later takes its slot", () => {
    const counters = { reused: 0 };
    const recent = new RecentMessages(counters);
    const [old] = recent.messagesOf(push(1, "t", 1, 1));
    recent.messagesOf(push(1, "t", 1 + RECENT_SLOTS, 1));
    expect(recent.messagesOf(push(2, "t", 1, 1))[0]).not.toBe(old!);
    expect(counters.reused).toBe(0);
  });
});

test("the local broker holds the same message pushed for two ids in two frames once; each id receives and acknowledges its own", async () => {
  configureLog({ level: "error" });
  const { server, seen } = await scripted();
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    for (let rid = 2; rid <= 3; rid++) await peer.request({ op: "create", rid });
    // Id 1 (global 1001) gets seqs 1-4, then id 2 (global 1002) seqs 3-6, each in a frame of its own.
    server.connections[0]!.send(push(1001, "t", 1, 4));
    server.connections[0]!.send(push(1002, "t", 3, 4));
    for (let i = 0; i < 100 && buffered(server.local, 2).length < 4; i++) await Bun.sleep(10);
    const [one, two] = [buffered(server.local, 1), buffered(server.local, 2)];
    expect(two[0]).toBe(one[2]!);
    expect(two[1]).toBe(one[3]!);
    expect(server.local.counters.reused).toBe(2);
    expect(server.local.counters.received).toBe(8);

    // Each id's client gets its own seqs with their bytes, and its ack goes upstream for its global id only.
    type Got = { tag: number; messages: Array<{ seq: number; data: Uint8Array }> };
    const got2 = (await peer.request({ op: "recv", rid: 4, id: 2, max: 10, wait: 0 })) as Got;
    expect(got2.messages.map((m) => [m.seq, m.data[0]])).toEqual([3, 4, 5, 6].map((s) => [s, s]));
    await peer.request({ op: "ack", rid: 5, id: 2, tag: got2.tag });
    for (let i = 0; i < 100 && !seen.some((f) => f.op === "ack"); i++) await Bun.sleep(10);
    expect(seen.filter((f) => f.op === "ack")).toEqual([{ op: "ack", id: 1002, topic: "t", seq: 6 }]);
    const got1 = (await peer.request({ op: "recv", rid: 6, id: 1, max: 2, wait: 0 })) as Got;
    expect(got1.messages.map((m) => [m.seq, m.data[0]])).toEqual([[1, 1], [2, 2]]);
    await peer.request({ op: "ack", rid: 7, id: 1, tag: got1.tag });
    for (let i = 0; i < 100 && seen.filter((f) => f.op === "ack").length < 2; i++) await Bun.sleep(10);
    expect(seen.filter((f) => f.op === "ack")[1]).toEqual({ op: "ack", id: 1001, topic: "t", seq: 2 });
    const rest1 = (await peer.request({ op: "recv", rid: 8, id: 1, max: 10, wait: 0 })) as Got;
    expect(rest1.messages.map((m) => [m.seq, m.data[0]])).toEqual([[3, 3], [4, 4]]);
  } finally {
    peer.end();
    await server.stop();
  }
});
