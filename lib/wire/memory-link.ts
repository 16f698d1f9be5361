/**
 * A pair of in-memory sockets joining two Connections of one process (`mq up`: the local
 * broker and the server). The frames are the same bytes as on TCP, but a write is a copy
 * handed to the peer's decoder on a microtask: no syscall, no kernel wake-up, no loopback.
 *
 * What TCP gives a Connection and this keeps:
 * - order: the chunks of one side reach the other in the order written;
 * - no reuse: the peer gets its own copy (Connection reuses its outbound buffer, and the
 *   server keeps views of received payloads until they are stored);
 * - no re-entry: delivery never runs inside `write`, so a peer's answer cannot land in
 *   the middle of the writer's flush;
 * - close: `end()` delivers what was written, then both sides see the close; `terminate()`
 *   drops what is undelivered and closes both at once;
 * - backpressure: the peer decodes everything it is handed (what it holds afterwards is
 *   bounded by its own budgets: credits, forward window), so a write takes all its bytes; a
 *   writer that filled its outbound budget in one turn is told to go on (`onDrain`) once
 *   the peer has taken the bytes, as a TCP socket tells it when the kernel buffer empties.
 */
import { OUTBOUND_BUDGET_BYTES, type Connection, type SocketLike } from "./connection.ts";

/** Where a side delivers: the Connection built on the socket (set right after it is made). */
export class MemorySocket implements SocketLike {
  conn: Connection | null = null;
  peer!: MemorySocket;
  /** Chunks written and not yet delivered to the peer, in order. */
  private queued: Uint8Array[] = [];
  private deliveryScheduled = false;
  /** A chunk at least the outbound budget was delivered: the writer's producers may be paused. */
  private wakeWriter = false;
  private ending = false;
  private closed = false;

  constructor(readonly remoteAddress: string) {}

  write(data: Uint8Array): number {
    if (this.closed || this.ending) return data.length;
    // A copy: the caller reuses its buffer as soon as this returns.
    this.queued.push(data.slice());
    if (data.length >= OUTBOUND_BUDGET_BYTES) this.wakeWriter = true;
    this.schedule();
    return data.length;
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.schedule();
  }

  terminate(): void {
    this.queued = [];
    this.closeBoth();
  }

  private schedule(): void {
    if (this.deliveryScheduled) return;
    this.deliveryScheduled = true;
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.deliveryScheduled = false;
    if (this.closed) return;
    const chunks = this.queued;
    this.queued = [];
    const target = this.peer.conn;
    if (target) for (const chunk of chunks) target.onData(chunk);
    if (this.ending) return this.closeBoth();
    if (this.wakeWriter) {
      this.wakeWriter = false;
      this.conn?.onDrain();
    }
  }

  /** Both sides see the close, as a TCP connection's both ends do. */
  private closeBoth(): void {
    for (const side of [this, this.peer]) {
      if (side.closed) continue;
      side.closed = true;
      side.queued = [];
      side.conn?.onClose();
    }
  }
}

/**
 * Two joined sockets: `[a, b]`, what is written on one arrives at the other. Set each
 * one's `conn` to the Connection made on it before the next microtask.
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
