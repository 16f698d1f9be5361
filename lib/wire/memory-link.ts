/**
 * A pair of in-memory sockets joining two Connections of one process (`mq up`: the local
 * broker and the server). The frames are the same as on TCP, but what one side sends in a
 * turn of the event loop is handed to the other at the next turn (`setImmediate`): no
 * syscall, no kernel wake-up, no loopback. The next turn, not a microtask: as with a socket,
 * the peer's work waits behind the I/O already due (the clients' reads), and a chain of
 * hops cannot run to its end in one turn — measured: with microtasks, `--fsync never`
 * deliveries fell ~90 ms behind the publishes (docs/benchmarks.md).
 *
 * What TCP gives a Connection and this keeps:
 * - order: the chunks of one side reach the other in the order written;
 * - no reuse: the peer gets its own copy (Connection reuses its outbound buffer, and the
 *   server keeps views of received payloads until they are stored);
 * - no re-entry: delivery never runs inside `write`, so a peer's answer cannot land in
 *   the middle of the writer's flush;
 * - close: `end()` delivers what was written, then both sides see the close; `terminate()`
 *   drops what is undelivered and closes both at once;
 * - the hot frames (pushes, publishes, acks and naks, and the replies to publishes) are not
 *   encoded at all: `sendFrame` hands the frame object itself to the peer's `onFrameObject`,
 *   in order with the encoded ones (everything else: the hello, subscriptions, stats). The
 *   peer trusts them (our own process made them) and keeps their payload views, which
 *   nothing reuses: the server's are stored messages (never changed), the local broker's
 *   are views of its clients' socket reads (each a new buffer). A sender never changes a
 *   frame after sending it (each is built for the send).
 * - backpressure: the peer takes everything it is handed at the next turn (what it
 *   holds afterwards is bounded by its own budgets: credits, forward window), so a write
 *   takes all its bytes; until then they count in the writer's `pendingBytes` (`queuedBytes`),
 *   and a writer that filled its outbound budget in one turn is told to go on (`onDrain`)
 *   once the peer has it, as a TCP socket tells it when the kernel buffer empties.
 */
import { objectFrameBytes, OUTBOUND_BUDGET_BYTES, type Connection, type SocketLike } from "./connection.ts";
import type { Frame } from "./messages.ts";

/** The ops handed over as objects: built by our own code from plain values (see `sendFrame`). */
const OBJECT_OPS: ReadonlySet<string> = new Set(["msgs", "pub", "pubs", "ack", "nak"]);
/** The fields of the `ok` replies handed over as objects (a publish's reply, an ack's empty one). */
const OBJECT_REPLY_FIELDS: ReadonlySet<string> = new Set(["op", "rid", "topic", "seq", "seqs", "subscribers", "created", "duplicate", "duplicates", "scheduled", "due"]);

/** True for a frame that goes as it is: a hot op, or an `ok` with only a publish reply's fields. */
function goesAsObject(frame: object): boolean {
  const op = (frame as { op?: unknown }).op as string;
  if (OBJECT_OPS.has(op)) return true;
  if (op !== "ok") return false;
  for (const key in frame) if (!OBJECT_REPLY_FIELDS.has(key)) return false;
  return true;
}

/** Where a side delivers: the Connection built on the socket (set right after it is made). */
export class MemorySocket implements SocketLike {
  conn: Connection | null = null;
  peer!: MemorySocket;
  /** Chunks written and frames sent as they are, not yet delivered to the peer, in order. */
  private queued: Array<Uint8Array | Frame> = [];
  private deliveryScheduled = false;
  /**
   * The bytes of what is queued (frames as objects: their payloads and a little more), counted
   * in the writer's `pendingBytes` until delivered, as a TCP socket's unsent bytes would be.
   */
  queuedBytes = 0;
  private ending = false;
  private closed = false;

  constructor(readonly remoteAddress: string) {}

  write(data: Uint8Array): number {
    if (this.closed || this.ending) return data.length;
    // A copy: the caller reuses its buffer as soon as this returns.
    this.queued.push(data.slice());
    this.queuedBytes += data.length;
    this.schedule();
    return data.length;
  }

  sendFrame(frame: object): boolean {
    if (!goesAsObject(frame)) return false;
    if (this.closed || this.ending) return true;
    this.queued.push(frame as Frame);
    this.queuedBytes += objectFrameBytes(frame as Frame);
    this.schedule();
    return true;
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.schedule();
  }

  terminate(): void {
    this.queued = [];
    this.queuedBytes = 0;
    this.closeBoth();
  }

  private schedule(): void {
    if (this.deliveryScheduled) return;
    this.deliveryScheduled = true;
    setImmediate(() => this.deliver());
  }

  private deliver(): void {
    this.deliveryScheduled = false;
    if (this.closed) return;
    const chunks = this.queued;
    this.queued = [];
    // The writer may have stopped producing at its outbound budget: once the peer has it all, it may go on.
    const wakeWriter = (this.conn?.pendingBytes ?? 0) >= OUTBOUND_BUDGET_BYTES;
    this.queuedBytes = 0;
    const target = this.peer.conn;
    if (target) for (const item of chunks) item instanceof Uint8Array ? target.onData(item) : target.onFrameObject(item);
    if (this.ending) return this.closeBoth();
    if (wakeWriter) this.conn?.onDrain();
  }

  /** Both sides see the close, as a TCP connection's both ends do. */
  private closeBoth(): void {
    for (const side of [this, this.peer]) {
      if (side.closed) continue;
      side.closed = true;
      side.queued = [];
      side.queuedBytes = 0;
      side.conn?.onClose();
    }
  }
}

/**
 * Two joined sockets: `[a, b]`, what is written on one arrives at the other. Set each
 * one's `conn` to the Connection made on it before the event loop turns.
 */
export function memorySocketPair(aAddress = "in-process", bAddress = "in-process"): [MemorySocket, MemorySocket] {
  const a = new MemorySocket(bAddress);
  const b = new MemorySocket(aAddress);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * Joins a connection made by `connect` (the local broker's side) to one made by `accept`
 * (the server's) over an in-memory pair; returns the connecting side's Connection.
 */
export function joinInMemory(accept: (socket: SocketLike) => Connection, connect: (socket: SocketLike) => Connection): Connection {
  const [near, far] = memorySocketPair();
  far.conn = accept(far);
  near.conn = connect(near);
  return near.conn;
}
