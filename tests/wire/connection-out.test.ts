/**
 * The outbound side of a Connection (lib/wire/connection.ts): frames sent in one turn are
 * encoded into one reused buffer and go out in one write, whole and in order, hot frames and
 * generic ones mixed; a socket that takes only part of it keeps the rest as a backlog of its
 * own (the buffer is reused at once), and `writable` / `drain` follow the bytes not yet written.
 */
import { describe, expect, test } from "bun:test";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { Connection, OUTBOUND_BUDGET_BYTES, type SocketLike } from "../../lib/wire/connection.ts";
import { encodeFrames, FrameDecoder } from "../../lib/wire/frame.ts";
import { framesIn } from "../../lib/wire/frames-in.ts";

/** A socket that takes at most `accept` bytes per write and records every write's bytes (copied). */
class RecordingSocket implements SocketLike {
  accept = Infinity;
  readonly writes: Uint8Array[] = [];
  write(data: Uint8Array): number {
    const n = Math.min(data.length, this.accept);
    this.writes.push(data.slice(0, n));
    return n;
  }
  end(): void {}
}

/** Decodes a byte stream fed in chunks of `chunkSize` bytes into frames. */
function readFrames(stream: Uint8Array, chunkSize: number): unknown[] {
  const got: unknown[] = [];
  const decoder = new FrameDecoder({ frame: (p) => got.push(decodeMap(p.slice())), invalid: (r) => void got.push(`invalid: ${r}`) }, 1 << 30);
  for (let pos = 0; pos < stream.length; pos += chunkSize) decoder.push(stream.subarray(pos, pos + chunkSize));
  return got;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** A mix of hot frames (fast encoder) and others (generic encoder), with payloads up to 70 KB so the buffer grows. */
function frameMix(count: number): object[] {
  const frames: object[] = [];
  for (let i = 0; i < count; i++) {
    const payload = new Uint8Array(i % 50 === 0 ? 70_000 : i % 7).fill(i & 0xff);
    if (i % 4 === 0) frames.push({ op: "msgs", id: i, topic: `t.${i}`, seq: 2 ** 32 + i, times: [1_700_000_000_000 + i], payloads: [payload] });
    else if (i % 4 === 1) frames.push({ messages: [{ topic: "é.主", seq: i + 1, time: i, data: payload }], tag: i, more: false, op: "ok", rid: i + 1 });
    else if (i % 4 === 2) frames.push({ op: "msgs", id: i, topic: "x", seq: 1, times: [1], payloads: [payload], ids: [i, i + 1] }); // a field the fast path does not know
    else frames.push({ op: "sub", rid: i + 1, id: i, topics: ["a.>"] });
  }
  return frames;
}

function connection(socket: SocketLike, drained: () => void = () => {}) {
  return new Connection(socket, { frame: () => {}, drain: drained }, { maxFrameBytes: 1 << 30, label: "peer" });
}

describe("connection output", () => {
  test("frames sent in one turn go out in one write, whole and in order, read byte by byte or in odd chunks", async () => {
    const socket = new RecordingSocket();
    const conn = connection(socket);
    const frames = frameMix(400);
    for (const f of frames) conn.send(f);
    expect(socket.writes.length).toBe(0); // not yet: flushed once at the end of the turn
    await Promise.resolve();
    expect(socket.writes.length).toBe(1);
    expect(conn.pendingBytes).toBe(0);
    const expected = frames.map((f) => decodeMap(encode(f)));
    for (const chunkSize of [1, 3, 4099]) expect(readFrames(socket.writes[0]!, chunkSize)).toEqual(expected);
    conn.close();
  });

  test("a partial write keeps the rest as a backlog; frames sent meanwhile follow it intact, and drain fires once writable", async () => {
    const socket = new RecordingSocket();
    let drains = 0;
    const conn = connection(socket, () => drains++);
    socket.accept = 1001; // the kernel takes an odd part, then nothing
    const first = frameMix(120);
    for (const f of first) conn.send(f);
    await Promise.resolve();
    socket.accept = 0;
    expect(conn.pendingBytes).toBeGreaterThan(0);
    // Sent while the backlog waits: encoded into the (reused) buffer, queued behind it.
    const second = frameMix(130).slice(120);
    for (const f of second) conn.send(f);
    await Promise.resolve();
    expect(conn.writable).toBe(true); // below the budget
    // Enough to pass the budget: no longer writable.
    const big = new Uint8Array(OUTBOUND_BUDGET_BYTES);
    conn.send({ op: "msgs", id: 1, topic: "big", seq: 1, times: [1], payloads: [big] });
    await Promise.resolve();
    expect(conn.writable).toBe(false);
    socket.accept = Infinity;
    conn.onDrain();
    expect(conn.pendingBytes).toBe(0);
    expect(conn.writable).toBe(true);
    expect(drains).toBe(1);
    const stream = concat(socket.writes);
    const expected = [...first, ...second, { op: "msgs", id: 1, topic: "big", seq: 1, times: [1], payloads: [big] }].map((f) => decodeMap(encode(f)));
    expect(readFrames(stream, 8191)).toEqual(expected);
    conn.close();
  });
});

describe("lazy replies (ConnectionHandler.lazyReply)", () => {
  /** A connection whose handler answers every request at once, lazily for the ops in `lazy`. */
  function serving(socket: RecordingSocket, lazy: string[]) {
    return new Connection(socket, { frame: () => ({}), lazyReply: (op) => lazy.includes(op) }, { maxFrameBytes: 1 << 30, label: "client" });
  }
  const request = (op: string, rid: number) => {
    const body = encode({ op, rid, id: 1, tag: 1 });
    const framed = new Uint8Array(4 + body.length);
    new DataView(framed.buffer).setUint32(0, body.length);
    framed.set(body, 4);
    return framed;
  };

  test("an ack's answer waits for the connection's next write and goes out in it", async () => {
    const socket = new RecordingSocket();
    const conn = serving(socket, ["ack"]);
    conn.helloDone = true;
    conn.onData(request("ack", 7));
    await Promise.resolve();
    expect(socket.writes.length).toBe(0); // no write of its own
    conn.send({ op: "ok", rid: 8, messages: [], more: false }); // e.g. the recv's answer, later in the turn
    await Promise.resolve();
    expect(socket.writes.length).toBe(1);
    expect(readFrames(concat(socket.writes), 5).map((f) => (f as { rid: number }).rid)).toEqual([7, 8]);
  });

  test("with nothing else to write, it goes out at the next turn; other answers go at once", async () => {
    const socket = new RecordingSocket();
    const conn = serving(socket, ["ack"]);
    conn.helloDone = true;
    conn.onData(request("ack", 3));
    await Promise.resolve();
    expect(socket.writes.length).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(readFrames(concat(socket.writes), 5)).toEqual([{ op: "ok", rid: 3 }]);
    conn.onData(request("nak", 4)); // not lazy
    await Promise.resolve();
    expect(readFrames(concat(socket.writes.slice(1)), 5)).toEqual([{ op: "ok", rid: 4 }]);
  });
});

describe("framesIn (what lib/store/sync-place.ts asks whether the loop had other work)", () => {
  test("counts every frame a connection decodes from bytes, however they arrive; not those handed over in memory", () => {
    const conn = new Connection(new RecordingSocket(), { frame: () => undefined }, { maxFrameBytes: 1 << 30, label: "peer" });
    conn.helloDone = true;
    const before = framesIn.count;
    conn.onData(encodeFrames([encode({ op: "ack", id: 1, tag: 1 }), encode({ op: "nak", id: 1, tag: 2 })])); // two in one read
    const split = encodeFrames([encode({ op: "ack", id: 1, tag: 3 })]);
    conn.onData(split.subarray(0, 3)); // one in three reads
    conn.onData(split.subarray(3, 9));
    expect(framesIn.count - before).toBe(2);
    conn.onData(split.subarray(9));
    expect(framesIn.count - before).toBe(3);
    conn.onFrameObject({ op: "ack", id: 1, tag: 4 });
    expect(framesIn.count - before).toBe(3);
    conn.close();
  });
});

describe("requests beyond maxOutstanding", () => {
  test("wait in order and go as answers come; `sent` is called when one goes, never for one that failed with the connection while waiting", async () => {
    const socket = new RecordingSocket();
    const conn = connection(socket);
    conn.maxOutstanding = 1;
    const sent: number[] = [];
    const outcomes: string[] = [];
    for (const n of [1, 2, 3]) {
      void conn.request({ op: "stats" } as never, 0, () => sent.push(n)).then(
        () => outcomes.push(`${n} ok`),
        (err: Error) => outcomes.push(`${n} ${err.message}`),
      );
    }
    expect(sent).toEqual([1]);
    await Promise.resolve();
    // The first is answered (rid 1): the second goes.
    conn.onData(frameBytes({ op: "ok", rid: 1 }));
    expect(sent).toEqual([1, 2]);
    conn.onClose();
    await Promise.resolve();
    await Promise.resolve();
    expect(sent).toEqual([1, 2]); // the third never went: a batch in it is "not sent", not "may have been stored"
    expect(outcomes).toEqual(["1 ok", "2 connection to peer closed (peer closed)", "3 connection to peer closed (peer closed) before the request was sent"]);
  });
});

function frameBytes(frame: object): Uint8Array {
  return encodeFrames([encode(frame)]);
}
