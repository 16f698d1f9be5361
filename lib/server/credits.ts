/**
 * The byte budgets of one local broker, as the server keeps them for its session: what was
 * pushed to it and not yet acknowledged, for the whole broker and per id, and the
 * subscriptions waiting for room. The local broker announces the budgets in its hello.
 *
 * A subscription stopped by a budget (or by the connection's outbound budget) waits in its
 * id's queue; ids with room take turns, and so do the subscriptions of one id, one push each
 * (at most one window of the subscription). A topic with a backlog therefore never keeps
 * the others of its broker from being pushed. Acks free room and serve the queue.
 */
import type { Connection } from "../wire/connection.ts";
import { Fifo } from "../wire/fifo.ts";

/** What Credits needs of a subscription (lib/server/topic.ts). */
export interface Pushable {
  readonly id: number;
  /** In an id's queue of this Credits; only Credits sets it (and a rewind clears it). */
  queued: boolean;
  /** Unsubscribed or destroyed: skipped when its turn comes. */
  readonly dropped: boolean;
  /**
   * Pushes what its window and `credits.room` allow; calls `credits.wait` when a shared
   * budget stopped it. Before it awaits (a read), it charges what it may use (at least
   * MESSAGE_OVERHEAD_BYTES), so `serve` sees the room taken at once.
   */
  push(conn: Connection, credits: Credits): Promise<void>;
  /** Tells the local broker, once, that the log holds more than it was sent. */
  announce(conn: Connection): void;
  /** The log holds messages not yet pushed. */
  readonly backlog: boolean;
}

interface IdBudget {
  /** Bytes of this id in flight (pushed, not acknowledged). */
  bytes: number;
  waiting: Fifo<Pushable>;
  /** In `ready`: it has waiting subscriptions and room. */
  listed: boolean;
}

export class Credits {
  /** Bytes in flight to the whole broker. Sizes are `deliveryCost` (payload + overhead). */
  bytes = 0;
  private readonly ids = new Map<number, IdBudget>();
  /** Ids with waiting subscriptions and room, in turn. */
  private readonly ready = new Fifo<IdBudget>();
  private waitingCount = 0;

  /**
   * Budgets of at least 1 byte; Infinity (a local broker that announced none) leaves only
   * the per-subscription window. `onDelivered` counts the messages pushed.
   */
  constructor(
    readonly brokerBytes = Infinity,
    readonly idBytes = Infinity,
    private readonly onDelivered: (messages: number) => void = () => {},
  ) {
    if (!(brokerBytes >= 1 && idBytes >= 1)) throw new RangeError(`Cannot use a buffer budget below 1 byte (${brokerBytes}, ${idBytes} per id)`);
  }

  /**
   * Bytes `id` may still be pushed: 0 or less when its budget or the broker's is used up.
   * A push may overshoot by one message, so that a message above a budget still goes.
   */
  room(id: number): number {
    return Math.min(this.brokerBytes - this.bytes, this.idBytes - (this.ids.get(id)?.bytes ?? 0));
  }

  /** Bytes in flight of `id`. */
  bytesOf(id: number): number {
    return this.ids.get(id)?.bytes ?? 0;
  }

  /** A push sent `messages` messages (pushes end asynchronously: they report here). */
  delivered(messages: number): void {
    this.onDelivered(messages);
  }

  charge(id: number, bytes: number): void {
    this.bytes += bytes;
    this.budget(id).bytes += bytes;
  }

  /** Acknowledged (or dropped) bytes of `id` free room; `serve` hands it out. */
  release(id: number, bytes: number): void {
    if (bytes === 0) return;
    this.bytes -= bytes;
    const b = this.ids.get(id);
    if (!b) return;
    b.bytes -= bytes;
    if (!b.listed && b.waiting.length > 0 && b.bytes < this.idBytes) this.list(b);
  }

  /** Puts `sub` at the back of its id's queue (once). */
  wait(sub: Pushable): void {
    if (sub.queued) return;
    sub.queued = true;
    const b = this.budget(sub.id);
    b.waiting.push(sub);
    this.waitingCount++;
    if (!b.listed && b.bytes < this.idBytes) this.list(b);
  }

  /**
   * Pushes `sub` (a publish to its topic, or an ack that freed its window): at once when
   * nobody waits for room, else in its turn behind those who do.
   */
  pump(sub: Pushable, conn: Connection): void {
    if (this.waitingCount === 0) {
      void sub.push(conn, this);
      return;
    }
    if (sub.backlog) this.wait(sub);
    this.serve(conn);
    // Still waiting: the local broker must know that more will come (`recv --count`).
    if (sub.queued) sub.announce(conn);
  }

  /** Gives the room there is to waiting subscriptions, round-robin. */
  serve(conn: Connection): void {
    // Ends: every turn pops an id, and puts it back only after a push that used room
    // (each message costs at least MESSAGE_OVERHEAD_BYTES, charged before the push awaits)
    // or took its subscription out.
    while (this.ready.length > 0 && conn.writable && this.bytes < this.brokerBytes) {
      const b = this.ready.shift()!;
      b.listed = false;
      if (b.bytes >= this.idBytes) continue; // listed again when its acks free room
      const sub = b.waiting.shift();
      if (!sub) continue;
      this.waitingCount--;
      sub.queued = false;
      if (!sub.dropped) void sub.push(conn, this);
      if (!b.listed && b.waiting.length > 0 && b.bytes < this.idBytes) this.list(b);
    }
  }

  /** After a destroy: forgets the id, and frees what it still had in flight. */
  forget(id: number): void {
    const b = this.ids.get(id);
    if (!b) return;
    this.ids.delete(id);
    this.bytes -= b.bytes;
    this.waitingCount -= b.waiting.length;
    b.waiting = new Fifo();
  }

  private budget(id: number): IdBudget {
    let b = this.ids.get(id);
    if (!b) this.ids.set(id, (b = { bytes: 0, waiting: new Fifo(), listed: false }));
    return b;
  }

  private list(b: IdBudget): void {
    b.listed = true;
    this.ready.push(b);
  }
}
