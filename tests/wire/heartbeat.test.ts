/**
 * Heartbeat (lib/wire/heartbeat.ts) with a fake peer that answers, delays or drops pongs, and
 * a Connection's liveness over a fake socket: pings answered, any received bytes and a
 * draining backlog counted as life, a silent peer cut off with HeartbeatTimeout, `probe`.
 * Intervals are a few ms; every wait is bounded and waits for an event, never for time.
 */
import { describe, expect, test } from "bun:test";
import { Heartbeat, type HeartbeatPeer } from "../../lib/wire/heartbeat.ts";
import { CloseReason, Connection, type ConnectionHandler, type SocketLike } from "../../lib/wire/connection.ts";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { FrameDecoder, encodeFrames } from "../../lib/wire/frame.ts";

/** Resolves with `value()` once it is defined; fails after `ms`. */
async function until<T>(value: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = value();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} not within ${ms} ms`);
    await Bun.sleep(1);
  }
}

/** A peer that counts pings and deaths, and answers each ping after `pongAfterMs` (null: never). */
function fakePeer(pongAfterMs: number | null) {
  const state = { pings: 0, dead: 0, hb: null as Heartbeat | null };
  const peer: HeartbeatPeer = {
    ping: () => {
      state.pings++;
      if (pongAfterMs !== null) setTimeout(() => state.hb?.alive(), pongAfterMs);
    },
    dead: () => void state.dead++,
  };
  return { state, peer };
}

describe("Heartbeat", () => {
  test("Heartbeat pings a silent peer and declares it dead after maxMissed silent intervals, having sent maxMissed - 1 pings", async () => {
    const { state, peer } = fakePeer(null);
    const hb = (state.hb = new Heartbeat(peer, 5, 3));
    await until(() => (state.dead > 0 ? true : undefined), 2000, "dead");
    expect({ pings: state.pings, dead: state.dead, stopped: hb.stopped }).toEqual({ pings: 2, dead: 1, stopped: true });
  });

  test("Heartbeat keeps a peer whose pongs come later than one interval but within maxMissed - 1 intervals", async () => {
    const { state, peer } = fakePeer(30); // interval 20 ms, 4 missed: a pong has 60 ms
    const hb = (state.hb = new Heartbeat(peer, 20, 4));
    await until(() => (state.pings >= 10 || state.dead > 0 ? true : undefined), 5000, "10 pings");
    hb.stop();
    expect({ dead: state.dead, pingedOften: state.pings >= 10 }).toEqual({ dead: 0, pingedOften: true });
  });

  test("Heartbeat sends no ping while the peer shows life every tenth of an interval (a busy connection)", async () => {
    const { state, peer } = fakePeer(null);
    const hb = (state.hb = new Heartbeat(peer, 20, 2));
    let lives = 0;
    const busy = setInterval(() => {
      lives++;
      hb.alive();
    }, 2);
    await until(() => (lives >= 200 ? true : undefined), 10_000, "200 signs of life");
    clearInterval(busy);
    expect({ pings: state.pings, dead: state.dead }).toEqual({ pings: 0, dead: 0 });
    // …and once the peer goes quiet, the usual pings, then dead.
    await until(() => (state.dead > 0 ? true : undefined), 2000, "dead");
    expect(state.pings).toBe(1);
  });

  test("Heartbeat refuses an interval that is not positive and fewer than 2 missed beats", () => {
    const peer = { ping() {}, dead() {} };
    expect(() => new Heartbeat(peer, 0, 3)).toThrow(RangeError);
    expect(() => new Heartbeat(peer, 10, 1)).toThrow(RangeError);
  });
});

/** A socket that takes at most `accept` bytes per write (0: the kernel buffer is full) and decodes what it took. */
class FakeSocket implements SocketLike {
  accept = Infinity;
  ended = false;
  terminated = false;
  readonly frames: Array<Record<string, unknown>> = [];
  private readonly decoder = new FrameDecoder({ frame: (p) => this.frames.push(decodeMap(p.slice())), invalid: () => {} }, 1 << 30);
  write(data: Uint8Array): number {
    const n = Math.min(data.length, this.accept);
    this.decoder.push(data.subarray(0, n));
    return n;
  }
  end(): void {
    this.ended = true;
  }
  terminate(): void {
    this.terminated = true;
  }
  ops(): string[] {
    return this.frames.map((f) => String(f.op));
  }
}

function connection(options: { helloTimeoutMs?: number } = {}) {
  const socket = new FakeSocket();
  const seen: string[] = [];
  let reason: CloseReason | undefined;
  const handler: ConnectionHandler = {
    frame: (_c, f) => void seen.push(f.op),
    closed: (_c, r) => void (reason = r),
  };
  const conn = new Connection(socket, handler, { maxFrameBytes: 1 << 20, label: "peer", ...options });
  return { socket, conn, seen, reason: () => reason };
}

const frame = (value: object) => encodeFrames([encode(value)]);
const ack = frame({ op: "ack", id: 1, topic: "t", seq: 1 });

describe("Connection liveness", () => {
  test("Connection answers a ping with a pong and swallows pongs; a listener does so only after hello", async () => {
    const c = connection();
    c.conn.onData(frame({ op: "ping" }));
    c.conn.onData(frame({ op: "pong" }));
    await until(() => (c.socket.frames.length > 0 ? true : undefined), 1000, "pong");
    expect({ written: c.socket.ops(), handled: c.seen }).toEqual({ written: ["pong"], handled: [] });

    const l = connection({ helloTimeoutMs: 10_000 });
    l.conn.onData(frame({ op: "ping" })); // before hello: the owner's business (the server refuses it)
    expect(l.seen).toEqual(["ping"]);
    l.conn.helloDone = true;
    l.conn.onData(frame({ op: "ping" }));
    await until(() => (l.socket.frames.length > 0 ? true : undefined), 1000, "pong");
    expect(l.socket.ops()).toEqual(["pong"]);
    l.conn.close();
  });

  test("Connection with a heartbeat pings a silent peer, then closes with HeartbeatTimeout and terminates the socket", async () => {
    const c = connection();
    c.conn.startHeartbeat(5, 3);
    await until(c.reason, 2000, "close");
    expect({ reason: c.reason(), written: c.socket.ops(), terminated: c.socket.terminated, closed: c.conn.closed }).toEqual({
      reason: CloseReason.HeartbeatTimeout,
      written: ["ping", "ping"],
      terminated: true,
      closed: true,
    });
  });

  test("Connection counts any received bytes as life, not only pongs: a peer that never answers pings but keeps sending stays", async () => {
    const c = connection();
    c.conn.startHeartbeat(20, 2);
    let sent = 0;
    const talk = setInterval(() => {
      sent++;
      // Half a frame now and the rest next time: bytes, not whole frames, are life.
      c.conn.onData(sent % 2 ? ack.subarray(0, 5) : ack.subarray(5));
    }, 2);
    await until(() => (sent >= 200 || c.reason() ? true : undefined), 10_000, "200 chunks");
    clearInterval(talk);
    expect({ reason: c.reason(), pings: c.socket.ops().filter((o) => o === "ping").length }).toEqual({ reason: undefined, pings: 0 });
    await until(c.reason, 2000, "close once silent");
    expect(c.reason()).toBe(CloseReason.HeartbeatTimeout);
  });

  test("Connection counts a peer taking our backlog as life: a slow reader behind a large backlog is not cut off", async () => {
    const c = connection();
    c.socket.accept = 0; // the socket is full: everything sent waits in the backlog, our pings behind it
    c.conn.send({ op: "msgs", id: 1, topic: "t", seq: 1, times: [1], payloads: [new Uint8Array(1 << 20)] });
    await until(() => (c.conn.pendingBytes > 0 ? true : undefined), 1000, "backlog");
    c.conn.startHeartbeat(20, 2);
    let drains = 0;
    const slowReader = setInterval(() => {
      drains++;
      c.socket.accept = 1000; // a little at a time, never the whole backlog
      c.conn.onDrain();
      c.socket.accept = 0;
    }, 2);
    await until(() => (drains >= 200 || c.reason() ? true : undefined), 10_000, "200 drains");
    clearInterval(slowReader);
    expect({ reason: c.reason(), stillQueued: c.conn.pendingBytes > 0 }).toEqual({ reason: undefined, stillQueued: true });
    await until(c.reason, 2000, "close once the reader stops");
    expect(c.reason()).toBe(CloseReason.HeartbeatTimeout);
  });

  test("Connection.probe pings and resolves true at the next bytes, false after its bound or when the connection closes", async () => {
    const c = connection();
    const answered = c.conn.probe(5000);
    c.conn.onData(frame({ op: "pong" }));
    expect(await answered).toBe(true);
    expect(await c.conn.probe(10)).toBe(false);
    const pending = c.conn.probe(5000);
    c.conn.onClose();
    expect(await pending).toBe(false);
    expect(c.socket.ops().slice(0, 2)).toEqual(["ping", "ping"]);
  });
});
