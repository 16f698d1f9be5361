/**
 * Backpressure on the way in (lib/wire/connection.ts): on a listener's connection
 * (`answersPeer`), while the answers a peer has not read pass HOLD_ABOVE_BYTES, its frames
 * are held as bytes, not served, and served in order once it reads. Before, the first frame
 * that came while 16 MiB waited unread cut the connection as a slow consumer: a peer reading
 * 26 MB of answers a moment late lost it (a local broker: the whole host's session).
 * A peer that goes on sending while it does not read is cut once HOLD_MAX_FRAMES frames or
 * HOLD_MAX_BYTES wait; whatever they are (pings, frames that do not decode: each would add an
 * answer), counted as they are held (their bytes, copied).
 */
import { expect, test } from "bun:test";
import { Connection, HOLD_ABOVE_BYTES, HOLD_MAX_BYTES, HOLD_MAX_FRAMES, type SocketLike } from "../../lib/wire/connection.ts";
import { frameOf, frameOfBytes } from "../security/kit.ts";

/** A socket that takes at most `accept` bytes in all until raised: a peer reading as it is let. */
class ThrottledSocket implements SocketLike {
  accept = 0;
  written = 0;
  ended = false;
  terminated = false;
  write(data: Uint8Array): number {
    const n = Math.max(0, Math.min(data.length, this.accept - this.written));
    this.written += n;
    return n;
  }
  end(): void {
    this.ended = true;
  }
  terminate(): void {
    this.terminated = true;
  }
}

const MB = 1024 * 1024;

function served(options: { answersPeer?: boolean; answerBytes?: number; closeFlushMs?: number } = {}) {
  const socket = new ThrottledSocket();
  const order: string[] = [];
  const answer = "x".repeat(options.answerBytes ?? 3 * MB);
  const conn = new Connection(
    socket,
    {
      frame: (_c, f) => {
        const frame = f as { op: string; rid?: number; id?: number };
        order.push(`${frame.op} ${frame.rid ?? frame.id}`);
        // A `topics` is answered with 3 MB at once (synchronously), as the server does.
        return frame.op === "topics" ? { topics: answer } : {};
      },
    },
    { maxFrameBytes: 4 << 20, label: "peer", answersPeer: options.answersPeer ?? true, closeFlushMs: options.closeFlushMs },
  );
  return { socket, conn, order };
}

function frames(...values: object[]): Uint8Array {
  return new Uint8Array(Buffer.concat(values.map((v) => frameOf(v))));
}

test("frames that come while the answers not read pass HOLD_ABOVE_BYTES wait, and are served in order once the peer reads", async () => {
  const { socket, conn, order } = served();
  conn.onData(frames({ op: "topics", rid: 1 }, { op: "topics", rid: 2 }, { op: "topics", rid: 3 }, { op: "topics", rid: 4 }, { op: "ack", id: 7, topic: "t", seq: 1 }, { op: "topics", rid: 5 }, { op: "topics", rid: 6 }));
  // Three answers (9 MB) are past 8 MB: the rest wait, the connection stays up.
  expect(order).toEqual(["topics 1", "topics 2", "topics 3"]);
  expect(conn.pendingBytes).toBeGreaterThan(HOLD_ABOVE_BYTES);
  await Promise.resolve();
  expect(conn.closed).toBe(false);
  // The peer reads 6 MB: 3 MB are left unread, so what waits is served until 8 MB are again
  // (3 + 3 + 3: the answer that crosses the mark goes, the next waits).
  socket.accept = 6 * MB;
  conn.onDrain();
  expect(order).toEqual(["topics 1", "topics 2", "topics 3", "topics 4", "ack 7", "topics 5"]);
  await Promise.resolve();
  socket.accept = Infinity;
  conn.onDrain();
  await Promise.resolve();
  expect(order).toEqual(["topics 1", "topics 2", "topics 3", "topics 4", "ack 7", "topics 5", "topics 6"]);
  await Promise.resolve();
  expect(conn.pendingBytes).toBe(0);
  expect(conn.closed).toBe(false);
  conn.close();
});

test("a peer that goes on sending while it reads nothing is cut once HOLD_MAX_FRAMES wait, pings and frames that do not decode too", () => {
  for (const kind of ["topics", "ping", "undecodable"] as const) {
    const { conn, order } = served();
    conn.onData(frames({ op: "topics", rid: 1 }, { op: "topics", rid: 2 }, { op: "topics", rid: 3 }));
    expect(order.length).toBe(3);
    // Each would add an answer (a pong, an error): they wait as the others do. They were answered at once, without bound.
    const one = kind === "topics" ? frameOf({ op: "topics", rid: 9 }) : kind === "ping" ? frameOf({ op: "ping" }) : frameOfBytes(new Uint8Array([0xa0]));
    const burst = new Uint8Array(one.length * HOLD_MAX_FRAMES);
    for (let i = 0; i < HOLD_MAX_FRAMES; i++) burst.set(one, i * one.length);
    conn.onData(burst);
    expect(conn.closed).toBe(false);
    conn.onData(one);
    expect(conn.closed).toBe(true);
  }
});

test("what waits is counted by its bytes, and what is served no longer counts: a peer that reads keeps its connection however much it sends in all", async () => {
  const { socket, conn, order } = served();
  conn.onData(frames({ op: "topics", rid: 1 }, { op: "topics", rid: 2 }, { op: "topics", rid: 3 }));
  // 40 frames of 1 MB wait at a time (held: 40 MB of the 64), then the peer reads everything; five rounds: 200 MB in all.
  const big = frameOf({ op: "pub", rid: 100, id: 1, topic: "t", data: new Uint8Array(MB) });
  for (let round = 0; round < 5; round++) {
    const burst = new Uint8Array(big.length * 40);
    for (let i = 0; i < 40; i++) burst.set(big, i * big.length);
    socket.accept = socket.written; // reads nothing meanwhile
    conn.onData(frames({ op: "topics", rid: 1000 + round }, { op: "topics", rid: 2000 + round }, { op: "topics", rid: 3000 + round }));
    conn.onData(burst);
    expect(conn.closed).toBe(false);
    socket.accept = Infinity;
    conn.onDrain();
    await Promise.resolve();
  }
  expect(order.filter((o) => o.startsWith("pub")).length).toBe(200);
  expect(conn.closed).toBe(false);
  // And more than HOLD_MAX_BYTES waiting at once is cut.
  socket.accept = socket.written;
  conn.onData(frames({ op: "topics", rid: 1 }, { op: "topics", rid: 2 }, { op: "topics", rid: 3 }));
  const over = Math.ceil(HOLD_MAX_BYTES / MB) + 1;
  for (let i = 0; i < over && !conn.closed; i++) conn.onData(big);
  expect(conn.closed).toBe(true);
});

test("a connection that asks (a client's, a local broker's toward its server) never holds what it receives", () => {
  const { conn, order } = served({ answersPeer: false });
  conn.onData(frames({ op: "topics", rid: 1 }, { op: "topics", rid: 2 }, { op: "topics", rid: 3 }, { op: "topics", rid: 4 }));
  expect(order.length).toBe(4);
  expect(conn.closed).toBe(false);
});

test("an answer that finds 8 MiB unread and takes the unread past MAX_UNREAD_BYTES cuts the connection; one large answer alone does not", async () => {
  const single = served({ answerBytes: 100 * MB });
  single.conn.onData(frames({ op: "topics", rid: 1 }));
  expect(single.conn.closed).toBe(false);
  single.conn.close();

  // Answers of requests served before the peer fell behind (asynchronous ones) are not held.
  const socket = new ThrottledSocket();
  const gates: Array<(v: unknown) => void> = [];
  const conn = new Connection(socket, { frame: () => new Promise((resolve) => gates.push(resolve)) }, { maxFrameBytes: 1 << 20, label: "peer", answersPeer: true });
  conn.onData(frames(...Array.from({ length: 30 }, (_, i) => ({ op: "topics", rid: i + 1 }))));
  expect(gates.length).toBe(30);
  for (const open of gates) {
    open({ topics: "x".repeat(3 * MB) });
    await Promise.resolve();
  }
  await Promise.resolve();
  expect(conn.closed).toBe(true);
  expect(conn.pendingBytes).toBeLessThan(80 * MB);
});

test("a connection closed with answers unread ends after closeFlushMs even if the peer never reads them", async () => {
  const { socket, conn } = served({ closeFlushMs: 50 });
  conn.onData(frames({ op: "topics", rid: 1 }));
  await Promise.resolve();
  conn.close();
  expect(socket.ended).toBe(false);
  for (let i = 0; i < 100 && !socket.terminated; i++) await Bun.sleep(10);
  expect(socket.terminated).toBe(true);
});
