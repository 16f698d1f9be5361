/**
 * Tools of the security tests: a seeded PRNG, a raw protocol peer that can send any bytes
 * and reads the frames the daemon answers, frame builders, and a health check of a cluster.
 */
import { expect } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Socket } from "bun";
// The pure-JS entry point, like lib/wire/codec.ts (the package root loads a native addon).
import { Encoder } from "cbor-x/encode";
import { decodeMap } from "../../lib/wire/codec.ts";
import { FrameDecoder, encodeFrames } from "../../lib/wire/frame.ts";
import { mq, type Daemon } from "../e2e/harness.ts";

// --- seeded randomness -------------------------------------------------------------------

/** mulberry32: small, fast, good enough to pick fuzz cases; the same seed gives the same cases. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

// --- frames ------------------------------------------------------------------------------

/** A CBOR encoder that writes whatever it is given (arrays, integers, tags…), unlike the codec's typed `encode`. */
export const rawCbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true } as never);

/** One frame (length prefix + CBOR) holding any value. */
export function frameOf(value: unknown): Uint8Array {
  return encodeFrames([rawCbor.encode(value)]);
}

/** One frame around raw body bytes. */
export function frameOfBytes(body: Uint8Array): Uint8Array {
  return encodeFrames([body]);
}

/** A bare 4-byte length prefix. */
export function lengthPrefix(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}

export type WireMap = Record<string, unknown>;

// --- a raw peer --------------------------------------------------------------------------

export type Target = { unix: string } | { hostname: string; port: number };

/**
 * A connection that speaks bytes, not the protocol: tests write anything with `write` or
 * `send`, and read the frames the daemon answers with `next`, `reply` or `waitClosed`.
 * Frames that arrive are decoded with the real codec; a frame it cannot decode is recorded as
 * `{ op: "<undecodable>" }` so a test sees it.
 */
export class RawPeer {
  /** Frames received and not yet taken by `next`/`reply`. */
  readonly inbox: WireMap[] = [];
  /** Every frame received, in order. */
  readonly all: WireMap[] = [];
  closed = false;
  /**
   * Answer the server's heartbeat pings with pongs, as a real local broker does (pings are
   * not put in `inbox` or `all`, only counted). Off: a peer that is silent unless told.
   */
  answerPings = true;
  pings = 0;
  private readonly out: Uint8Array[] = [];
  private waiters: Array<() => void> = [];
  private socket!: Socket<undefined>;
  private readonly decoder = new FrameDecoder(
    {
      frame: (payload) => {
        let map: WireMap;
        try {
          map = decodeMap(payload.slice());
        } catch {
          map = { op: "<undecodable>" };
        }
        if (map.op === "ping" && Object.keys(map).length === 1) {
          this.pings++;
          if (this.answerPings) this.send({ op: "pong" });
          return;
        }
        this.inbox.push(map);
        this.all.push(map);
        this.notify();
      },
      invalid: () => {
        this.inbox.push({ op: "<bad length>" });
        this.notify();
      },
    },
    1 << 30,
  );

  private constructor() {}

  static async connect(target: Target): Promise<RawPeer> {
    const peer = new RawPeer();
    const handlers = {
      data: (_s: Socket<undefined>, chunk: Uint8Array) => peer.decoder.push(chunk),
      drain: () => peer.flush(),
      close: () => peer.onClose(),
      error: () => peer.onClose(),
    };
    peer.socket = "unix" in target ? await Bun.connect({ unix: target.unix, socket: handlers }) : await Bun.connect({ hostname: target.hostname, port: target.port, socket: handlers });
    return peer;
  }

  private onClose(): void {
    this.closed = true;
    this.notify();
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Writes bytes (queued behind earlier writes the kernel has not taken yet). */
  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.out.push(bytes);
    this.flush();
  }

  /** Writes one frame holding `value` (any CBOR value, not only maps). */
  send(value: unknown): void {
    this.write(frameOf(value));
  }

  /** Sends a request and waits for the frame that echoes its rid. */
  async request(frame: WireMap, ms = 5000): Promise<WireMap> {
    this.send(frame);
    return this.reply(frame.rid as number, ms);
  }

  /** True when every byte written has been handed to the kernel. */
  get flushed(): boolean {
    return this.out.length === 0;
  }

  private flush(): void {
    while (this.out.length > 0 && !this.closed) {
      const head = this.out[0]!;
      const n = this.socket.write(head);
      if (n < head.length) {
        this.out[0] = head.subarray(Math.max(n, 0));
        return;
      }
      this.out.shift();
    }
  }

  /** Waits until `check` returns a value; throws after `ms`. */
  private async until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw peer: ${what} not within ${ms} ms (closed: ${this.closed}; frames: ${JSON.stringify(this.all.slice(-5))})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next frame, or null once the connection is closed and every frame has been read. */
  next(ms = 5000): Promise<WireMap | null> {
    return this.until(() => (this.inbox.length > 0 ? this.inbox.shift()! : this.closed ? null : undefined), ms, "a frame");
  }

  /** The frame that echoes `rid` (other frames stay in the inbox). */
  reply(rid: number, ms = 5000): Promise<WireMap> {
    return this.until(
      () => {
        const i = this.inbox.findIndex((f) => f.rid === rid);
        if (i >= 0) return this.inbox.splice(i, 1)[0]!;
        if (this.closed) throw new Error(`raw peer: closed before the reply to rid ${rid}; frames: ${JSON.stringify(this.all.slice(-5))}`);
        return undefined;
      },
      ms,
      `the reply to rid ${rid}`,
    );
  }

  /** Waits for `count` frames in the inbox (takes them). */
  async take(count: number, ms = 5000): Promise<WireMap[]> {
    await this.until(() => (this.inbox.length >= count ? true : this.closed ? true : undefined), ms, `${count} frames`);
    return this.inbox.splice(0, count);
  }

  /** True if the daemon closes the connection within `ms`. */
  async waitClosed(ms: number): Promise<boolean> {
    try {
      await this.until(() => (this.closed ? true : undefined), ms, "close");
      return true;
    } catch {
      return false;
    }
  }

  /** Stops reading from the socket: the daemon's answers pile up on its side. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    if (!this.closed) this.socket.end();
    this.closed = true;
  }
}

// --- daemons -----------------------------------------------------------------------------

let brokerCount = 0;

/** A hello that each daemon accepts: the server needs a (unique) broker identity and a secret, the local broker ignores them. */
export function helloFor(kind: "server" | "local", rid = 1, extra: WireMap = {}): WireMap {
  return kind === "server"
    ? { op: "hello", rid, version: 1, broker: `raw-peer-${process.pid}-${++brokerCount}`, secret: RAW_SECRET, ...extra }
    : { op: "hello", rid, version: 1, ...extra };
}

/** The secret raw peers present on the server hop (each identity is bound to it at first contact). */
export const RAW_SECRET = "raw-peer-secret";

/** Connects and says hello; fails the test unless the hello is answered `ok`. */
export async function helloPeer(target: Target, kind: "server" | "local", extra: WireMap = {}): Promise<RawPeer> {
  const peer = await RawPeer.connect(target);
  const r = await peer.request(helloFor(kind, 1, extra));
  expect(r).toMatchObject({ op: "ok", rid: 1, version: 1 });
  return peer;
}

export function expectAlive(...daemons: Daemon[]): void {
  for (const d of daemons) expect({ daemon: d.name, exitCode: d.proc.exitCode, signal: d.proc.signalCode }).toEqual({ daemon: d.name, exitCode: null, signal: null });
}

let roundTrips = 0;

/** Normal use through the real CLI: create, sub, pub, recv on a fresh topic; fails the test otherwise. */
export async function expectRoundTrip(socket: string): Promise<void> {
  const topic = `sec.rt.${process.pid}.${++roundTrips}`;
  const c = await mq(socket, ["create"]);
  expect({ step: "create", code: c.code, stderr: c.stderr }).toEqual({ step: "create", code: 0, stderr: "" });
  const id = c.stdout.trim();
  const s = await mq(socket, ["sub", id, topic]);
  expect({ step: "sub", code: s.code, stderr: s.stderr }).toEqual({ step: "sub", code: 0, stderr: "" });
  const p = await mq(socket, ["pub", id, topic, `hello ${roundTrips}`]);
  expect({ step: "pub", code: p.code, stderr: p.stderr }).toEqual({ step: "pub", code: 0, stderr: "" });
  const r = await mq(socket, ["recv", id, "--wait", "5"]);
  expect({ step: "recv", code: r.code, stdout: r.stdout }).toEqual({ step: "recv", code: 0, stdout: `hello ${roundTrips}\n` });
}

/** Every file under `dir` with its size, as sorted "relative/path size" lines. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        out.push(`${path.relative(dir, p)}/`);
        walk(p);
      } else out.push(`${path.relative(dir, p)} ${fs.statSync(p).size}`);
    }
  };
  walk(dir);
  return out.sort();
}

/** Retries `fn` until it returns true, at most `tries` times `everyMs` apart. */
export async function eventually(fn: () => Promise<boolean> | boolean, tries = 50, everyMs = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await fn()) return true;
    await Bun.sleep(everyMs);
  }
  return false;
}
