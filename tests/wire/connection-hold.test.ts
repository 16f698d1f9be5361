/**
 * Backpressure on the way in (lib/wire/connection.ts): while the answers a peer has not read
 * pass HOLD_ABOVE_BYTES, its frames are held, not served, and served in order once it reads.
 * Before, the first frame that came while 16 MiB waited unread cut the connection as a slow
 * consumer: one `topics` answer of 23 MB (100,000 topics of 200-byte names) cut the session
 * of a whole host at its next ack. A peer that goes on sending while it does not read is
 * still cut, once what it sent passes HOLD_MAX_FRAMES frames or HOLD_MAX_BYTES.
 */
import { expect, test } from "bun:test";
import { Connection, HOLD_ABOVE_BYTES, HOLD_MAX_FRAMES, type SocketLike } from "../../lib/wire/connection.ts";
import { frameOf } from "../security/kit.ts";

/** A socket that takes at most `accept` bytes in all until raised: a peer reading as it is let. */
class ThrottledSocket implements SocketLike {
  accept = 0;
  written = 0;
  ended = false;
  write(data: Uint8Array): number {
    const n = Math.max(0, Math.min(data.length, this.accept - this.written));
    this.written += n;
    return n;
  }
  end(): void {
    this.ended = true;
  }
}

const ANSWER_BYTES = 3 * 1024 * 1024;

function served() {
  const socket = new ThrottledSocket();
  const order: string[] = [];
  const conn = new Connection(
    socket,
    {
      frame: (_c, f) => {
        const frame = f as { op: string; rid?: number; id?: number };
        order.push(`${frame.op} ${frame.rid ?? frame.id}`);
        // A `topics` is answered with 3 MB at once (synchronously), as the server does.
        return frame.op === "topics" ? { topics: "x".repeat(ANSWER_BYTES) } : {};
      },
    },
    { maxFrameBytes: 1 << 20, label: "peer" },
  );
  return { socket, conn, order };
}

test("frames that come while the answers not read pass HOLD_ABOVE_BYTES wait, and are served in order once the peer reads", async () => {
  const { socket, conn, order } = served();
  const frames = [frameOf({ op: "topics", rid: 1 }), frameOf({ op: "topics", rid: 2 }), frameOf({ op: "topics", rid: 3 }), frameOf({ op: "topics", rid: 4 }), frameOf({ op: "ack", id: 7, topic: "t", seq: 1 }), frameOf({ op: "topics", rid: 5 }), frameOf({ op: "topics", rid: 6 })];
  conn.onData(new Uint8Array(Buffer.concat(frames)));
  // Three answers (9 MB) are past 8 MB: the rest wait, the connection stays up.
  expect(order).toEqual(["topics 1", "topics 2", "topics 3"]);
  expect(conn.pendingBytes).toBeGreaterThan(HOLD_ABOVE_BYTES);
  await Promise.resolve();
  expect(conn.closed).toBe(false);
  // A ping is answered all the same: the peer must not take us for dead while it reads.
  conn.onData(frameOf({ op: "ping" }));
  expect(conn.closed).toBe(false);
  // The peer reads 6 MB: 3 MB are left unread, so what waits is served until 8 MB are again
  // (3 + 3 + 3: the answer that crosses the mark goes, the next waits).
  socket.accept = 6 * 1024 * 1024;
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

test("a peer that goes on sending while it reads nothing is cut as a slow consumer once HOLD_MAX_FRAMES wait", () => {
  const { conn, order } = served();
  const frames = Array.from({ length: 3 + HOLD_MAX_FRAMES + 1 }, (_, i) => frameOf({ op: "topics", rid: i + 1 }));
  conn.onData(new Uint8Array(Buffer.concat(frames)));
  expect(order.length).toBe(3);
  expect(conn.closed).toBe(true);
});
