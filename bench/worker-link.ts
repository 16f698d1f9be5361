#!/usr/bin/env bun
/**
 * Prototype, not product code (issue 10, "mq up uses both cores"): `mq up` with its server in a
 * Bun Worker, linked to the local broker in the main thread by postMessage of byte frames
 * (one transferred ArrayBuffer per side per flush), against `mq up` as shipped (server and
 * local broker in one thread, lib/wire/memory-link.ts), both run from source so the
 * comparison is fair. docs/benchmarks.md, "`mq up` with the server in a Worker", has the
 * figures; bench/worker-link.sh alternates the two and runs `mq bench` against each.
 *
 *   bun bench/worker-link.ts worker|ring|memory|tcp DATA_DIR SOCKET [PORT]
 *
 * worker: (a) postMessage of byte frames; ring: (b) a SharedArrayBuffer ring per direction
 * with Atomics.waitAsync; memory: `mq up --link memory` as shipped; tcp: `--link tcp`.
 *
 * Prints "mq is up" when ready; SIGTERM/SIGINT stop it. FSYNC=always|interval|never (default
 * always); FLUSH=micro|immediate: when a side posts what its Connection wrote (default micro:
 * at the end of the current task; immediate: at the next turn, as memory-link delivers).
 *
 * What is missing for a product (see the docs section): a peer-side window (the worker is
 * handed everything at once), reconnects over a new port, a crashed worker taking the
 * process down (or restarting it), the worker's logs and stats, and a compiled-binary entry.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { MqServer, type ServerOptions } from "../lib/server/server.ts";
import { LocalBroker } from "../lib/local/local.ts";
import { runUp } from "../lib/cli/daemons.ts";
import { OUTBOUND_BUDGET_BYTES, type Connection, type SocketLike } from "../lib/wire/connection.ts";
import { DEFAULT_LOCAL_LIMITS, DEFAULT_MAX_MESSAGE_BYTES } from "../lib/config.ts";
import type { FsyncPolicy } from "../lib/store/types.ts";

type LinkMessage = { t: "bytes"; buf: ArrayBuffer; len: number } | { t: "close" } | { t: "open"; rings?: [SharedArrayBuffer, SharedArrayBuffer] } | { t: "start"; options: ServerOptions } | { t: "started" } | { t: "stop" } | { t: "stopped" };
type Post = (msg: LinkMessage, transfer?: Transferable[]) => void;

const FLUSH_AT_NEXT_TURN = process.env.FLUSH === "immediate";

/**
 * One side of the link: what the Connection writes in a task is appended to one buffer,
 * posted (transferred, not copied) to the other thread when the task ends.
 */
class PortSocket implements SocketLike {
  conn: Connection | null = null;
  private batch = new Uint8Array(64 * 1024);
  queuedBytes = 0;
  private scheduled = false;
  private closed = false;

  constructor(private readonly post: Post, readonly remoteAddress: string) {}

  write(data: Uint8Array): number {
    if (this.closed) return data.length;
    if (this.queuedBytes + data.length > this.batch.length) {
      const grown = new Uint8Array(Math.max(this.batch.length * 2, this.queuedBytes + data.length));
      grown.set(this.batch.subarray(0, this.queuedBytes));
      this.batch = grown;
    }
    // The one copy: the caller reuses its buffer as soon as this returns.
    this.batch.set(data, this.queuedBytes);
    this.queuedBytes += data.length;
    if (!this.scheduled) {
      this.scheduled = true;
      if (FLUSH_AT_NEXT_TURN) setImmediate(() => this.flush());
      else queueMicrotask(() => this.flush());
    }
    return data.length;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed || this.queuedBytes === 0) return;
    const wakeWriter = (this.conn?.pendingBytes ?? 0) >= OUTBOUND_BUDGET_BYTES;
    const buf = this.batch.buffer as ArrayBuffer;
    this.post({ t: "bytes", buf, len: this.queuedBytes }, [buf]);
    this.batch = new Uint8Array(this.batch.length);
    this.queuedBytes = 0;
    // No window on the far side yet: once posted, the writer may go on (see the header).
    if (wakeWriter) this.conn?.onDrain();
  }

  /** A message from the other thread. */
  receive(msg: LinkMessage): void {
    if (msg.t === "bytes") this.conn?.onData(new Uint8Array(msg.buf, 0, msg.len));
    else if (msg.t === "close") this.closeHere();
  }

  end(): void {
    this.flush();
    this.terminate();
  }

  terminate(): void {
    if (this.closed) return;
    this.post({ t: "close" });
    this.closeHere();
  }

  private closeHere(): void {
    if (this.closed) return;
    this.closed = true;
    this.queuedBytes = 0;
    this.conn?.onClose();
  }
}

/** The ring's control words (Int32 indices): where the reader and the writer are, in bytes. */
const HEAD = 0;
const TAIL = 1;
const RING_BYTES = 16 * 1024 * 1024;

/**
 * (b) One side of a link over two SharedArrayBuffer rings (one per direction, one writer and
 * one reader each): `write` copies into the outgoing ring, the end of the task publishes the
 * new tail and wakes the reader (Atomics.notify), which waits with Atomics.waitAsync and copies
 * what arrived out (the server keeps views of received payloads). postMessage only for close.
 */
class RingSocket implements SocketLike {
  conn: Connection | null = null;
  private readonly outCtrl: Int32Array;
  private readonly outData: Uint8Array;
  private readonly inCtrl: Int32Array;
  private readonly inData: Uint8Array;
  /** Where `write` has copied up to in the outgoing ring, not yet published. */
  private tail = 0;
  /** Chunks that did not fit in the ring, in order (a prototype's stand-in for a window). */
  private overflow: Uint8Array[] = [];
  private scheduled = false;
  private closed = false;

  constructor(private readonly post: Post, readonly remoteAddress: string, out: SharedArrayBuffer, into: SharedArrayBuffer) {
    this.outCtrl = new Int32Array(out, 0, 2);
    this.outData = new Uint8Array(out, 8);
    this.inCtrl = new Int32Array(into, 0, 2);
    this.inData = new Uint8Array(into, 8);
    this.read();
  }

  get queuedBytes(): number {
    let bytes = 0;
    for (const chunk of this.overflow) bytes += chunk.length;
    return bytes;
  }

  write(data: Uint8Array): number {
    if (this.closed) return data.length;
    if (this.overflow.length > 0 || !this.copyIn(data)) this.overflow.push(data.slice());
    this.schedule();
    return data.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (FLUSH_AT_NEXT_TURN) setImmediate(() => this.flush());
    else queueMicrotask(() => this.flush());
  }

  /** Copies `data` after the tail when the ring has room for all of it (one byte stays free). */
  private copyIn(data: Uint8Array): boolean {
    const size = this.outData.length;
    const head = Atomics.load(this.outCtrl, HEAD);
    const free = (head - this.tail - 1 + size) % size;
    if (data.length > free) return false;
    const first = Math.min(data.length, size - this.tail);
    this.outData.set(data.subarray(0, first), this.tail);
    if (first < data.length) this.outData.set(data.subarray(first), 0);
    this.tail = (this.tail + data.length) % size;
    return true;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    const wakeWriter = (this.conn?.pendingBytes ?? 0) >= OUTBOUND_BUDGET_BYTES;
    while (this.overflow.length > 0 && this.copyIn(this.overflow[0]!)) this.overflow.shift();
    if (Atomics.load(this.outCtrl, TAIL) !== this.tail) {
      Atomics.store(this.outCtrl, TAIL, this.tail);
      Atomics.notify(this.outCtrl, TAIL);
    }
    if (this.overflow.length > 0) {
      // The reader is behind: look again soon.
      setTimeout(() => this.flush(), 1);
      return;
    }
    if (wakeWriter) this.conn?.onDrain();
  }

  /** Takes what arrived, then waits for more. */
  private read = (): void => {
    if (this.closed) return;
    const size = this.inData.length;
    const head = Atomics.load(this.inCtrl, HEAD);
    const tail = Atomics.load(this.inCtrl, TAIL);
    if (tail !== head) {
      const length = (tail - head + size) % size;
      const chunk = new Uint8Array(length);
      const first = Math.min(length, size - head);
      chunk.set(this.inData.subarray(head, head + first));
      if (first < length) chunk.set(this.inData.subarray(0, length - first), first);
      Atomics.store(this.inCtrl, HEAD, tail);
      this.conn?.onData(chunk);
    }
    const wait = Atomics.waitAsync(this.inCtrl, TAIL, tail);
    if (wait.async) wait.value.then(this.read);
    else setImmediate(this.read);
  };

  receive(msg: LinkMessage): void {
    if (msg.t === "close") this.closeHere();
  }

  end(): void {
    this.flush();
    this.terminate();
  }

  terminate(): void {
    if (this.closed) return;
    this.post({ t: "close" });
    this.closeHere();
  }

  private closeHere(): void {
    if (this.closed) return;
    this.closed = true;
    // Wakes this side's pending waitAsync so that it ends.
    Atomics.notify(this.inCtrl, TAIL);
    this.conn?.onClose();
  }
}

/** A ring's shared memory: the two control words, then the bytes. */
function newRing(): SharedArrayBuffer {
  return new SharedArrayBuffer(8 + RING_BYTES);
}

/** The worker: the server, and the far side of the local broker's connection. */
function runWorker(): void {
  const post: Post = (msg, transfer) => (self as unknown as Worker).postMessage(msg, transfer ?? []);
  let srv: MqServer | undefined;
  let socket: PortSocket | RingSocket | undefined;
  self.onmessage = async (event: MessageEvent<LinkMessage>) => {
    const msg = event.data;
    if (msg.t === "start") {
      srv = await MqServer.start(msg.options);
      post({ t: "started" });
    } else if (msg.t === "open") {
      // The rings: [to the server, to the local broker].
      socket = msg.rings ? new RingSocket(post, "in-process", msg.rings[1], msg.rings[0]) : new PortSocket(post, "in-process");
      socket.conn = srv!.acceptInProcess(socket, "in-process (worker)");
    } else if (msg.t === "stop") {
      await srv?.stop();
      post({ t: "stopped" });
    } else socket?.receive(msg);
  };
}

async function main(): Promise<void> {
  const [mode, dataDir, socketPath, portArg] = process.argv.slice(2);
  if (!["worker", "ring", "memory", "tcp"].includes(mode ?? "") || !dataDir || !socketPath) {
    console.error("usage: bun bench/worker-link.ts worker|ring|memory|tcp DATA_DIR SOCKET [PORT]");
    process.exit(2);
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(16).toString("hex");
  const server: ServerOptions = {
    hostname: "127.0.0.1",
    port: Number(portArg ?? 7695),
    dataDir: path.join(dataDir, "server"),
    defaultTopics: ["general"],
    fsync: (process.env.FSYNC ?? "always") as FsyncPolicy,
    fsyncIntervalMs: 50,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    token,
  };
  const local = { socketPath, dataDir: path.join(dataDir, "local"), token, limits: DEFAULT_LOCAL_LIMITS };
  if (mode === "memory" || mode === "tcp") process.exit(await runUp(server, local, {}, mode as "memory" | "tcp"));

  const worker = new Worker(new URL(import.meta.url).href);
  let toLocal: PortSocket | RingSocket | undefined;
  let onStarted!: () => void;
  let onStopped!: () => void;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  const stopped = new Promise<void>((resolve) => (onStopped = resolve));
  worker.onmessage = (event: MessageEvent<LinkMessage>) => {
    const msg = event.data;
    if (msg.t === "started") onStarted();
    else if (msg.t === "stopped") onStopped();
    else toLocal?.receive(msg);
  };
  const post: Post = (msg, transfer) => worker.postMessage(msg, transfer ?? []);
  post({ t: "start", options: server });
  await started;
  const loc = await LocalBroker.start({
    ...local,
    server: { hostname: "127.0.0.1", port: server.port },
    inProcess: (attach) => {
      if (mode === "ring") {
        const rings: [SharedArrayBuffer, SharedArrayBuffer] = [newRing(), newRing()];
        post({ t: "open", rings });
        toLocal = new RingSocket(post, "in-process", rings[0], rings[1]);
      } else {
        post({ t: "open" });
        toLocal = new PortSocket(post, "in-process");
      }
      toLocal.conn = attach(toLocal);
      return toLocal.conn;
    },
  });
  console.log(`mq is up (server in a worker, link ${mode}, socket ${socketPath})`);
  const stop = async () => {
    await loc.stop();
    post({ t: "stop" });
    await stopped;
    worker.terminate();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (Bun.isMainThread) await main();
else runWorker();
