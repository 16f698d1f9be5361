import { afterAll, beforeAll, describe, expect, test } from "bun:test";
// The pure-JS entry points, like codec.ts (the package root loads a native addon).
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { FrameDecoder } from "../../lib/wire/frame.ts";
import { type DeliveredMessageFactory, readHotFrame, setDeliveredMessageFactory } from "../../lib/wire/hot-decode.ts";
import { bytesOfItem, EncodedArray, type HeldItem, ENCODE_ONCE_MAX_BYTES, encodeOnce, encodeOncePlain, FrameWriter, isEncodedOnce, ItemBlocks, ITEM_BLOCK_BYTES, markPlain, writeHotFrame } from "../../lib/wire/hot-frames.ts";
import { pushedMessage } from "../../lib/local/pushed-extra.ts";
import { jscDescribe as describeValue } from "bun:jsc";

/** JavaScriptCore's id of the object's shape (its Structure), from bun:jsc's description of it. */
function structureOf(value: object): string {
  return /StructureID: (\d+)/.exec(describeValue(value))![1]!;
}

/** A small seeded generator (mulberry32), so a failure replays. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const EDGE_UINTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 1_700_000_000_123, 2 ** 53 - 1];
const STRINGS = ["", "a", "orders.eu", "é", "主题.订单", "emoji.😀.x", "x".repeat(23), "x".repeat(24), "é".repeat(40), "主".repeat(63), "t".repeat(64), "ü".repeat(300), "y".repeat(70_000)];

function gen(random: () => number) {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const uint = () => (random() < 0.5 ? pick(EDGE_UINTS) : Math.floor(random() * 2 ** (1 + Math.floor(random() * 53))));
  const str = () => (random() < 0.7 ? pick(STRINGS) : String.fromCharCode(...Array.from({ length: Math.floor(random() * 80) }, () => 32 + Math.floor(random() * 0x2fff))));
  const bytes = () => {
    const sizes = [0, 1, 23, 24, 255, 256, 65536, 100_000];
    const b = new Uint8Array(random() < 0.3 ? pick(sizes) : Math.floor(random() * 300));
    for (let i = 0; i < b.length; i += 97) b[i] = Math.floor(random() * 256);
    return b;
  };
  const count = () => (random() < 0.2 ? 0 : random() < 0.1 ? 30 + Math.floor(random() * 300) : 1 + Math.floor(random() * 5));
  const list = <T>(f: () => T) => Array.from({ length: count() }, f);
  const headers = () => {
    const h: Record<string, string> = {};
    for (let i = random() < 0.05 ? 30 : Math.floor(random() * 4); i > 0; i--) h[str().slice(0, 40) + i] = str().slice(0, 100);
    return h;
  };
  const maybe = (frame: Record<string, unknown>, key: string, f: () => unknown) => {
    if (random() < 0.4) frame[key] = f();
  };
  /** A message as the local broker holds it (lib/local/local.ts `pushedTo`): in recv replies and deliveries. */
  const message = () => {
    const m: Record<string, unknown> = { topic: str(), seq: uint(), time: uint(), data: bytes() };
    maybe(m, "lost", uint);
    maybe(m, "headers", headers);
    maybe(m, "expiresAt", uint);
    return m;
  };
  return {
    message,
    msgs() {
      const n = count();
      const f: Record<string, unknown> = { op: "msgs", id: uint(), topic: str(), seq: uint(), times: Array.from({ length: n }, uint), payloads: Array.from({ length: n }, bytes) };
      maybe(f, "more", () => random() < 0.5);
      maybe(f, "lost", uint);
      maybe(f, "headers", () => Array.from({ length: n }, headers));
      maybe(f, "expires", () => Array.from({ length: n }, uint));
      maybe(f, "explicit", () => true);
      maybe(f, "ids", () => Array.from({ length: 1 + Math.floor(random() * 9) }, uint));
      return f;
    },
    pubs() {
      const f: Record<string, unknown> = { op: "pubs", id: uint(), topic: str(), payloads: list(bytes) };
      maybe(f, "idPrefix", () => "k:");
      maybe(f, "idFrom", uint);
      maybe(f, "headers", () => list(headers));
      maybe(f, "ttl", uint);
      maybe(f, "after", str);
      f.rid = uint();
      return f;
    },
    pub() {
      const f: Record<string, unknown> = { op: "pub", id: uint(), topic: str(), data: bytes() };
      maybe(f, "msgId", str);
      maybe(f, "headers", headers);
      maybe(f, "after", str);
      f.rid = uint();
      return f;
    },
    ack() {
      const f: Record<string, unknown> = random() < 0.5 ? { op: "ack", id: uint(), topic: str(), seq: uint() } : { op: "ack", id: uint(), tag: uint() };
      maybe(f, "seqs", () => list(uint));
      maybe(f, "count", uint);
      maybe(f, "rid", uint);
      return f;
    },
    recv() {
      return { op: "recv", id: uint(), max: uint(), wait: uint(), rid: uint() };
    },
    /** In the field order lib/client/follow.ts writes. */
    credit() {
      const f: Record<string, unknown> = { op: "credit", id: uint(), acked: uint(), credits: uint() };
      maybe(f, "bytes", uint);
      maybe(f, "rid", uint);
      return f;
    },
    recvReply() {
      return { messages: list(message), tag: uint(), more: random() < 0.5, op: "ok", rid: uint() };
    },
    /** A follow's push (local → client), in the field order lib/local/follow.ts writes; sometimes the end of the follow. */
    delivery() {
      if (random() < 0.1) return { op: "delivery", id: uint(), messages: [], code: "UNKNOWN_ID", message: str() };
      return { op: "delivery", id: uint(), messages: list(message) };
    },
    pubsReply() {
      const f: Record<string, unknown> = { topic: str(), seqs: list(uint), subscribers: uint(), created: random() < 0.5 };
      maybe(f, "duplicates", () => list(uint));
      return { ...f, op: "ok", rid: uint() };
    },
  };
}

function fast(frame: object): Uint8Array | null {
  const w = new FrameWriter();
  w.pos = 3; // not at the start of the buffer, as after other frames
  if (!writeHotFrame(w, frame)) {
    expect(w.pos).toBe(3);
    return null;
  }
  return w.buf.slice(3, w.pos);
}

describe("hot frames: the fast encoder writes what the generic encoder writes", () => {
  const shapes = ["msgs", "pubs", "pub", "ack", "recv", "credit", "recvReply", "delivery", "pubsReply"] as const;
  test.each(shapes)("%s: 300 random frames, byte-identical and decoding to the same map", (shape) => {
    const random = rng(shape.length * 7919 + shape.charCodeAt(0));
    const g = gen(random);
    for (let i = 0; i < 300; i++) {
      const frame = g[shape]();
      const bytes = fast(frame);
      if (bytes === null) throw new Error(`${shape} #${i} took the generic path`);
      const generic = encode(frame);
      expect(decodeMap(bytes)).toEqual(decodeMap(generic));
      expect(Buffer.from(bytes).equals(Buffer.from(generic))).toBe(true);
    }
  });


  test("edge values: empty arrays, 0, 2^32, 2^53-1, 24 keys and more", () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 300; i++) many[`k${i}`] = "v";
    const frames = [
      { op: "msgs", id: 0, topic: "", seq: 0, times: [], payloads: [] },
      { op: "msgs", id: 2 ** 32, topic: "a", seq: 2 ** 53 - 1, times: [2 ** 32 - 1, 2 ** 32], payloads: [new Uint8Array(0), Buffer.from("x")], more: true },
      { op: "pub", id: 1, topic: "t", data: new Uint8Array(0), headers: many, rid: 1 },
      { messages: [], more: false, op: "ok", rid: 1 },
      { op: "ok", rid: 5 },
      // A payload as the local broker holds it: a Buffer view (a Uint8Array subclass) into a bigger block.
      { op: "delivery", id: 3, messages: [{ topic: "t", seq: 1, time: 2 ** 40, data: Buffer.from("abcdef").subarray(2, 5) }] },
      { op: "delivery", id: 0, messages: [] },
    ];
    for (const frame of frames) {
      const bytes = fast(frame)!;
      expect(bytes).not.toBeNull();
      expect(Buffer.from(bytes).equals(Buffer.from(encode(frame)))).toBe(true);
    }
  });

  test("a frame the fast path does not know takes the generic path, nothing lost", () => {
    const unknownField = { op: "msgs", id: 1, topic: "a", seq: 1, times: [1], payloads: [new Uint8Array(1)], someday: [1, 2] };
    const others = [
      unknownField,
      { op: "sub", rid: 1, id: 1, topics: ["a"] }, // not a hot op
      { op: "ack", id: 1, topic: "a", seq: -1 }, // negative
      { op: "ack", id: 1, topic: "a", seq: 1.5 }, // not an integer
      { op: "ack", id: 1, topic: "a", seq: 2 ** 53 }, // beyond the safe integers
      { op: "ack", id: 1, topic: "a", seq: undefined },
      { op: "ok", rid: 1, messages: [{ topic: "a", seq: 1, time: 1, data: new Uint8Array(1), at: new Date(0) }] },
      { op: "ok", rid: 1, topic: null },
      { op: "delivery", id: 1, messages: [{ topic: "a", seq: 1, time: 1, data: new Uint8Array(1), at: new Date(0) }] },
      { op: "delivery", id: 1, messages: [], someday: true },
    ];
    for (const frame of others) expect(fast(frame)).toBeNull();
  });

  test("messages encoded once (encodeOnce) and carried in deliveries and recv replies, whole, in part, mixed: byte-identical", () => {
    const random = rng(2026);
    const g = gen(random);
    for (let round = 0; round < 200; round++) {
      // As the local broker buffers a push for several ids: one object per message, shared.
      const pushed = Array.from({ length: 1 + Math.floor(random() * 40) }, () => g.message());
      if (random() < 0.2) pushed.push({ topic: "t", seq: 1, time: 2, data: new Uint8Array(ENCODE_ONCE_MAX_BYTES + 1) }); // too big: not encoded once
      encodeOnce(pushed as Array<{ data: Uint8Array }>);
      const other = Array.from({ length: Math.floor(random() * 5) }, () => g.message());
      // What one id's frame may carry: a slice of the push, with messages of other pushes before and after.
      const from = Math.floor(random() * pushed.length);
      const to = from + Math.floor(random() * (pushed.length - from + 1));
      const messages = [...other.slice(0, 2), ...pushed.slice(from, to), ...other.slice(2)];
      if (random() < 0.2) messages.reverse();
      const frames = [
        { op: "delivery", id: round, messages },
        { messages, tag: round, more: random() < 0.5, op: "ok", rid: round },
      ];
      for (const frame of frames) {
        const bytes = fast(frame);
        if (bytes === null) throw new Error(`round ${round} took the generic path`);
        expect(Buffer.from(bytes).equals(Buffer.from(encode(frame)))).toBe(true);
      }
    }
  });

  test("plain messages encoded once by the fixed layout (encodeOncePlain): byte-identical in deliveries and recv replies, topics changing", () => {
    const random = rng(77);
    const g = gen(random);
    const topics = ["t", "orders.eu", "é", "主题.订单", "x".repeat(23), "x".repeat(24), "t".repeat(64), "ü".repeat(300)];
    for (let round = 0; round < 300; round++) {
      const topic = topics[Math.floor(random() * topics.length)]!;
      const messages = Array.from({ length: 1 + Math.floor(random() * 30) }, () => {
        const m = g.message();
        // The keys and their order of a pushed message without lost, headers or expiry.
        return { topic: random() < 0.8 ? topic : topics[Math.floor(random() * topics.length)]!, seq: m.seq as number, time: m.time as number, data: (m.data as Uint8Array).subarray(0, Math.floor(random() * (ENCODE_ONCE_MAX_BYTES + 1))) };
      });
      encodeOncePlain(messages);
      expect(messages.every(isEncodedOnce)).toBe(true); // by the fixed layout, not left to the generic path
      for (const frame of [{ op: "delivery", id: round, messages }, { messages, tag: round, more: false, op: "ok", rid: round }]) {
        const bytes = fast(frame);
        if (bytes === null) throw new Error(`round ${round} took the generic path`);
        expect(Buffer.from(bytes).toString("hex")).toBe(Buffer.from(encode(frame)).toString("hex"));
      }
    }
  });

  test("messages marked plain (markPlain) are written by the fixed layout: byte-identical to cbor-x, and their keys are not walked", () => {
    const random = rng(78);
    const g = gen(random);
    const topics = ["t", "orders.eu", "é", "主题.订单", "x".repeat(24), "ü".repeat(300)];
    for (let round = 0; round < 200; round++) {
      const messages = Array.from({ length: 1 + Math.floor(random() * 30) }, () => {
        const m = g.message();
        const plain = { topic: topics[Math.floor(random() * topics.length)]!, seq: m.seq as number, time: m.time as number, data: m.data as Uint8Array };
        if (random() < 0.8) markPlain(plain);
        return plain;
      });
      for (const frame of [{ op: "delivery", id: round, messages }, { messages, tag: round, more: false, op: "ok", rid: round }]) {
        const bytes = fast(frame);
        if (bytes === null) throw new Error(`round ${round} took the generic path`);
        expect(Buffer.from(bytes).toString("hex")).toBe(Buffer.from(encode(frame)).toString("hex"));
      }
    }
    // A key added against the rule is not written: the layout is fixed, not walked.
    const m = { topic: "t", seq: 7, time: 1_700_000_000_000, data: Buffer.from("hello") };
    markPlain(m);
    const before = fast({ op: "delivery", id: 1, messages: [m] })!;
    (m as Record<string, unknown>).extra = 1;
    expect(Buffer.from(fast({ op: "delivery", id: 1, messages: [m] })!).equals(Buffer.from(before))).toBe(true);
    expect(Object.keys(m)).toEqual(["topic", "seq", "time", "data", "extra"]); // the mark is not a visible key
  });

  test("the local broker marks a pushed message plain only without lost, headers or expiry", () => {
    const frame = { op: "msgs", id: 1, topic: "t", seq: 5, times: [1, 2], payloads: [Buffer.from("a"), Buffer.from("b")], lost: 3 };
    const plainOne = pushedMessage(frame as never, 1, false);
    const withLost = pushedMessage(frame as never, 0, true);
    const withHeaders = pushedMessage({ ...frame, headers: [{}, { k: "v" }] } as never, 1, false);
    const markOf = (m: object) => Object.getOwnPropertySymbols(m).map(String);
    expect(markOf(plainOne)).toEqual(["Symbol(mq.plain)", "Symbol(mq.encoded)"]); // the slot encodeOnce fills, empty
    expect(markOf(withLost)).toEqual([]);
    expect(markOf(withHeaders)).toEqual([]);
    // and what the fast path writes for each is what cbor-x writes
    for (const msg of [plainOne, withLost, withHeaders]) {
      const frameOut = { op: "delivery", id: 1, messages: [msg] };
      expect(Buffer.from(fast(frameOut)!).toString("hex")).toBe(Buffer.from(encode(frameOut)).toString("hex"));
    }
  });

  test("a pushed message keeps its object shape when encodeOnce writes it (one shape for the JIT)", () => {
    const frame = { op: "msgs", id: 1, topic: "t", seq: 5, times: [1, 2], payloads: [Buffer.from("a"), Buffer.from("b")] };
    const encoded = pushedMessage(frame as never, 0, false);
    const plain = pushedMessage(frame as never, 1, false);
    encodeOncePlain([encoded as never]);
    expect(isEncodedOnce(encoded)).toBe(true);
    expect(isEncodedOnce(plain)).toBe(false);
    expect(structureOf(encoded)).toBe(structureOf(plain));
  });

  test("a message encoded once is copied, not encoded again (so buffered messages must not change)", () => {
    const m = { topic: "t", seq: 7, time: 1_700_000_000_000, data: Buffer.from("hello") };
    const before = fast({ op: "delivery", id: 1, messages: [m] })!;
    encodeOnce([m]);
    m.seq = 8; // breaks the rule on purpose, to see which bytes are written
    expect(Buffer.from(fast({ op: "delivery", id: 1, messages: [m] })!).equals(Buffer.from(before))).toBe(true);
    expect(Object.keys(m)).toEqual(["topic", "seq", "time", "data"]); // nothing visible was added
  });

  test("payloads written ahead (ItemBlocks) and sent as an EncodedArray: the same bytes as the plain array, by the fast path and by the generic one", () => {
    const random = rng(4242);
    const sizes = [0, 1, 23, 24, 255, 256, 65535, 65536, ITEM_BLOCK_BYTES / 4 - 9, ITEM_BLOCK_BYTES / 4 - 8, 100_000];
    const blocks = new ItemBlocks();
    const sources: Uint8Array[] = [];
    const items: HeldItem[] = [];
    // Enough bytes for several blocks; items of every head size, some above a quarter block (a block of their own).
    for (let i = 0; i < 2000; i++) {
      const data = new Uint8Array(random() < 0.05 ? sizes[Math.floor(random() * sizes.length)]! : Math.floor(random() * 300));
      for (let k = 0; k < data.length; k += 13) data[k] = Math.floor(random() * 256);
      const item: HeldItem = { block: new Uint8Array(0), start: 0, end: 0, blockOf: null };
      blocks.bytes(data, item);
      sources.push(data.slice());
      data.fill(0xee); // the caller reuses its buffer: the item is a copy
      items.push(item);
    }
    expect(new Set(items.map((item) => item.block)).size).toBeGreaterThan(3);
    for (let i = 0; i < items.length; i++) expect(Buffer.from(bytesOfItem(items[i]!)).equals(Buffer.from(sources[i]!))).toBe(true);
    // Batches of every length, from anywhere in the list (runs within a block, across blocks, alone).
    for (let from = 0; from < items.length; ) {
      const n = 1 + Math.floor(random() * 600);
      const plain = { op: "pubs", id: 3, topic: "t", payloads: sources.slice(from, from + n), idPrefix: "p:", idFrom: from + 1, rid: from + 1 };
      const ahead = { ...plain, payloads: new EncodedArray(items.slice(from, from + n)) };
      const expected = Buffer.from(encode(plain));
      expect(Buffer.from(fast(ahead)!).equals(expected)).toBe(true);
      // The generic encoder (cbor-x) reads them back: the same bytes again.
      expect(Buffer.from(encode(ahead)).equals(expected)).toBe(true);
      from += n;
    }
  });

  test("ItemBlocks: a block is written over only once every item in it was released; a held item keeps its bytes", () => {
    const blocks = new ItemBlocks();
    const item = (fill: number, size = 1000): HeldItem => {
      const it: HeldItem = { block: new Uint8Array(0), start: 0, end: 0, blockOf: null };
      blocks.bytes(new Uint8Array(size).fill(fill), it);
      return it;
    };
    const same = (it: HeldItem, fill: number, size = 1000) => expect(Buffer.from(bytesOfItem(it)).equals(Buffer.from(new Uint8Array(size).fill(fill)))).toBe(true);
    // Released at once, one by one (one publish awaited at a time): the same bytes of one block again and again.
    const first = item(1);
    blocks.release(first);
    const again = item(2);
    expect(again.block).toBe(first.block);
    expect(again.start).toBe(first.start);
    blocks.release(again);
    blocks.release(again); // twice: nothing more given back
    // One item held among many released: its block is not written over, through many blocks' worth of items.
    const held = item(7);
    const perBlock = Math.floor(ITEM_BLOCK_BYTES / 1003);
    const seen = new Set<Uint8Array>();
    for (let i = 0; i < 20 * perBlock; i++) {
      const it = item(i % 251);
      seen.add(it.block);
      if (it.block === held.block) expect(it.start).toBeGreaterThanOrEqual(held.end);
      blocks.release(it);
    }
    same(held, 7);
    // Released blocks are used again: far fewer blocks than 20 blocks' worth of items.
    expect(seen.size).toBeLessThanOrEqual(6);
    // A large item has a block of its own, never given to another item.
    const big = item(9, ITEM_BLOCK_BYTES);
    blocks.release(big);
    const after = item(3);
    expect(after.block).not.toBe(big.block);
    same(big, 9, ITEM_BLOCK_BYTES);
  });

  test("ItemBlocks.detach: held items move to bytes of their own, so their shared block is written over again; alone items never share one", () => {
    const blocks = new ItemBlocks();
    const item = (fill: number, alone = false): HeldItem => {
      const it: HeldItem = { block: new Uint8Array(0), start: 0, end: 0, blockOf: null };
      blocks.bytes(new Uint8Array(100 + fill).fill(fill), it, alone);
      return it;
    };
    const same = (it: HeldItem, fill: number) => expect(Buffer.from(bytesOfItem(it)).equals(Buffer.from(new Uint8Array(100 + fill).fill(fill)))).toBe(true);
    // Two held items (a batch being sent again) among others, released as they are answered.
    const a = item(1);
    const other = item(2);
    const b = item(3);
    const shared = a.block;
    blocks.release(other);
    blocks.detach([a, b]);
    expect(a.block).not.toBe(shared);
    expect(b.block).toBe(a.block); // one buffer for the batch: still one run
    expect(b.start).toBe(a.end);
    same(a, 1);
    same(b, 3);
    // Nothing holds the shared block now: the next item is written at its start.
    const next = item(4);
    expect([next.block, next.start]).toEqual([shared, 0]);
    blocks.detach([a, b]); // again: nothing to move
    blocks.release(a);
    blocks.release(b);
    same(next, 4);
    // `alone` (a publish behind a batch being sent again): its own bytes, the shared block untouched.
    const alone = item(5, true);
    expect(alone.block).not.toBe(shared);
    expect(alone.blockOf).toBeNull();
    same(alone, 5);
    expect(item(6).block).toBe(shared);
  });

  test("FrameWriter.frame: other frames go through the generic encoder; one that throws appends nothing", () => {
    const w = new FrameWriter();
    const sub = { op: "sub", rid: 1, id: 2, topics: ["a.>"] };
    w.frame(sub, encode);
    const body = encode(sub);
    expect(new DataView(w.buf.buffer).getUint32(0)).toBe(body.length);
    expect(Buffer.from(w.buf.subarray(4, w.pos)).equals(Buffer.from(body))).toBe(true);
    const before = w.pos;
    expect(() =>
      w.frame(sub, () => {
        throw new Error("cannot encode");
      }),
    ).toThrow("cannot encode");
    expect(w.pos).toBe(before);
  });

  test("FrameWriter: a burst above 64 KiB takes a spare buffer, gives it back at reset, and the next writer's frames are its own bytes", () => {
    const big = { op: "pubs", rid: 1, id: 2, topic: "t", payloads: Array.from({ length: 600 }, (_, i) => new Uint8Array(128).fill(i & 0xff)) };
    const small = { op: "ack", rid: 3, id: 2, topic: "t", seq: 9 };
    const framed = (frame: object) => {
      const body = encode(frame);
      const out = new Uint8Array(4 + body.length);
      new DataView(out.buffer).setUint32(0, body.length);
      out.set(body, 4);
      return Buffer.from(out);
    };
    const a = new FrameWriter();
    a.frame(small, encode);
    a.frame(big, encode);
    const burst = a.buf;
    expect(burst.length).toBeGreaterThan(64 * 1024);
    expect(Buffer.from(a.buf.subarray(0, a.pos)).equals(Buffer.concat([framed(small), framed(big)]))).toBe(true);
    a.reset();
    expect(a.buf.length).toBeLessThanOrEqual(64 * 1024); // back to the buffer it grew out of
    expect(a.buf).not.toBe(burst);
    // Another writer's burst gets the spare (its old bytes are overwritten, never sent).
    const b = new FrameWriter();
    b.frame(big, encode);
    expect(b.buf).toBe(burst);
    b.frame(small, encode);
    expect(Buffer.from(b.buf.subarray(0, b.pos)).equals(Buffer.concat([framed(big), framed(small)]))).toBe(true);
    b.reset();
    // Frames of a small writer never take a spare.
    const c = new FrameWriter();
    c.frame(small, encode);
    expect(c.buf).not.toBe(burst);
  });

  test("many hot frames in one buffer, read back byte by byte and in odd chunks, arrive whole and in order", () => {
    const g = gen(rng(42));
    const frames: object[] = [];
    const w = new FrameWriter();
    for (let i = 0; i < 90; i++) {
      const frame = i % 4 === 0 ? g.msgs() : i % 4 === 1 ? g.recvReply() : i % 4 === 2 ? g.delivery() : g.ack();
      frames.push(frame);
      w.frame(frame, () => {
        throw new Error("a hot frame took the generic path");
      });
    }
    const stream = w.buf.slice(0, w.pos);
    for (const chunkSize of [1, 7, 4093]) {
      const got: unknown[] = [];
      const decoder = new FrameDecoder({ frame: (p) => got.push(decodeMap(p.slice())), invalid: (r) => { throw new Error(r); } }, 1 << 30);
      for (let pos = 0; pos < stream.length; pos += chunkSize) decoder.push(stream.subarray(pos, pos + chunkSize));
      expect(got.length).toBe(frames.length);
      for (let i = 0; i < frames.length; i++) expect(got[i]).toEqual(decodeMap(encode(frames[i]!)));
    }
  });
});

/** The generic decoder with codec.ts's options, to compare against. */
const cborx = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as never);
/** A plain encoder that writes whatever we ask, to build frames the fast reader must give up on. */
const raw = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true } as never);

describe("hot frames: the small decoder reads what cbor-x reads", () => {
  // Plain values, as cbor-x gives: without the client library's Message factory, which
  // another test file of the same run may have registered (it is per process).
  let factory: DeliveredMessageFactory | undefined;
  beforeAll(() => void (factory = setDeliveredMessageFactory(undefined)));
  afterAll(() => void setDeliveredMessageFactory(factory));
  const shapes = ["msgs", "pubs", "pub", "ack", "recv", "credit", "recvReply", "delivery", "pubsReply"] as const;
  test.each(shapes)("%s: 300 random frames decode to the same value", (shape) => {
    const g = gen(rng(shape.length * 104_729 + shape.charCodeAt(1)));
    for (let i = 0; i < 300; i++) {
      const bytes = encode(g[shape]());
      const fast = readHotFrame(bytes);
      if (fast === undefined) throw new Error(`${shape} #${i} was given up`);
      expect(fast).toEqual(cborx.decode(bytes));
      expect(Object.getPrototypeOf(fast)).toBe(Object.prototype);
    }
  });

  test.each(["recvReply", "delivery"] as const)("%s: 300 random frames with a message factory give the messages cbor-x gives", (shape) => {
    // As the client library's factory, but plain objects: the fields it is given, those present.
    const before = setDeliveredMessageFactory((topic, seq, time, data, lost, headers, expiresAt) => {
      const m: Record<string, unknown> = { topic, seq, time, data };
      if (lost !== undefined) m.lost = lost;
      if (headers !== undefined) m.headers = headers;
      if (expiresAt !== undefined) m.expiresAt = expiresAt;
      return m;
    });
    try {
      const g = gen(rng(shape.length * 7_919));
      for (let i = 0; i < 300; i++) {
        const frame = g[shape]();
        // Topics repeat, as in a real batch, and change, ASCII and not.
        if (i % 3 === 0) for (const m of (frame as { messages: Array<{ topic: unknown }> }).messages) m.topic = i % 2 ? "orders.eu" : "é";
        const bytes = encode(frame);
        const fast = readHotFrame(bytes);
        if (fast === undefined) throw new Error(`${shape} #${i} was given up`);
        expect(fast).toEqual(cborx.decode(bytes));
      }
      // Bytes of another key of the same length as a message key: given up (cbor-x decodes it).
      for (const odd of [{ sex: 1 }, { tame: 1 }, { date: 1 }, { last: 1 }, { topix: "t" }, { headerz: {} }, { expiresAx: 1 }, { "Ã©": 1 }]) {
        expect(readHotFrame(encode({ op: "delivery", id: 1, messages: [{ topic: "t", seq: 1, time: 1, data: new Uint8Array(1), ...odd }] }))).toBeUndefined();
      }
      // A topic whose UTF-16 units look like another topic's UTF-8 bytes is not taken for it.
      const latin = readHotFrame(encode({ op: "delivery", id: 1, messages: [{ topic: "Ã©", seq: 1, time: 1, data: new Uint8Array(1) }, { topic: "é", seq: 2, time: 1, data: new Uint8Array(1) }] }));
      expect((latin!.messages as Array<{ topic: string }>).map((m) => m.topic)).toEqual(["Ã©", "é"]);
    } finally {
      setDeliveredMessageFactory(before);
    }
  });

  test("the same short strings read again are equal (the cache never returns another string)", () => {
    const topics = ["a", "b", "ab", "ba", "orders.eu", "orders.us", "x".repeat(24), "y".repeat(25)];
    for (let round = 0; round < 3; round++) {
      for (const topic of topics) expect(readHotFrame(encode({ op: "ack", id: 1, topic, seq: 2 }))).toEqual({ op: "ack", id: 1, topic, seq: 2 });
    }
  });

  test("anything it does not know is given up, and codec's decodeMap still decodes it as cbor-x does", () => {
    const lone = new Uint8Array([0xa1, 0x61, 0x74, 0x63, 0xed, 0xa0, 0x80]); // {t: lone surrogate in WTF-8}
    const badUtf8 = new Uint8Array([0xa1, 0x61, 0x74, 0x62, 0xc3, 0x28]);
    const uint64Big = new Uint8Array([0xa1, 0x61, 0x73, 0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0]); // {s: 2^53}
    const cases: Array<[string, Uint8Array]> = [
      ["a float", raw.encode({ op: "ack", seq: 1.5 })],
      ["a negative integer", raw.encode({ op: "ack", seq: -1 })],
      ["null", raw.encode({ op: "ack", topic: null })],
      ["a tag", raw.encode({ op: "ack", at: new Date(0) })],
      ["a non-text key", raw.encode(new Map<unknown, unknown>([[1, 2]]))],
      ["__proto__ as a key", new Uint8Array([0xa1, 0x69, ...Buffer.from("__proto__"), 0xa0])],
      ["a lone surrogate", lone],
      ["invalid UTF-8", badUtf8],
      ["a uint64 of 2^53", uint64Big],
    ];
    for (const [what, bytes] of cases) {
      expect([what, readHotFrame(bytes)]).toEqual([what, undefined]);
      let expected: unknown;
      let expectedError: unknown;
      try {
        expected = cborx.decode(bytes);
      } catch (err) {
        expectedError = err;
      }
      if (expectedError === undefined && Object.getPrototypeOf(expected) === Object.prototype) expect(decodeMap(bytes)).toEqual(expected as Record<string, unknown>);
      else expect(() => decodeMap(bytes)).toThrow();
    }
  });

  test("a frame cut short, with bytes after it, or not a map is given up at every cut", () => {
    const g = gen(rng(7));
    const bytes = encode(g.recvReply());
    for (let cut = 0; cut < bytes.length; cut += Math.max(1, Math.floor(bytes.length / 500))) expect(readHotFrame(bytes.subarray(0, cut))).toBeUndefined();
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(readHotFrame(longer)).toBeUndefined();
    expect(readHotFrame(raw.encode([1, 2]))).toBeUndefined();
    expect(readHotFrame(new Uint8Array(0))).toBeUndefined();
  });
});
