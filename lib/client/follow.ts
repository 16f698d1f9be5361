/**
 * The client's end of push delivery (docs/protocol.md, "Push delivery"): a `Follow` gets the
 * `delivery` frames the local broker pushes for one id, hands them out in batches, and
 * acknowledges each batch (with the credits it frees) on a `credit` frame without an answer.
 * The connection routes deliveries to its follows by id (`routeDelivery`).
 */
import { Code, isCode, MqError } from "../errors.ts";
import type { Connection } from "../wire/connection.ts";
import { messageBytes, type DeliveryFrame, type Message as WireMessage } from "../wire/messages.ts";
import { Message } from "./message.ts";

/** Messages a follow lets the local broker push ahead of the user by default. */
export const DEFAULT_FOLLOW_CREDITS = 1000;
/** The most `credits` (and, for `bytes`, bytes) the local broker takes (lib/local/follow.ts). */
export const MAX_FOLLOW_CREDITS = 65_536;
export const MAX_FOLLOW_BYTES = 1024 * 1024 * 1024;

/**
 * Checks a count or a wait given to a call: undefined passes (the default), anything else must be
 * an integer within bounds, or it is a RangeError naming it (1.5 reached the engine's own error,
 * 0 and -1 were taken as something else).
 */
export function checkOption(call: string, name: string, value: number | undefined, min: number, max: number, unit: string): void {
  if (value === undefined || (Number.isSafeInteger(value) && value >= min && value <= max)) return;
  throw new RangeError(`Cannot ${call} with ${name} ${String(value)}: it must be an integer from ${min} to ${max} (${unit})`);
}

export interface FollowOptions {
  /** Messages pushed and not yet acknowledged, at most (1 to 65 536); default 1000. */
  credits?: number;
  /** Payload bytes pushed and not yet acknowledged, at most (one message may go beyond); default: no byte limit. */
  bytes?: number;
}

/** A batch of a follow: the messages, and the ack that tells the broker they reached the user. */
export interface FollowBatch {
  messages: Message[];
  /**
   * Acknowledges the batch (or its first `count` messages: the rest come again, first, in the
   * next batch) and lets the broker push as many more. Until then a crash of this process
   * gives them to the next reader. Call it once per batch, before the next `next()`.
   */
  ack(count?: number): Promise<void>;
}

/** The follows of one connection, by local id. */
function followsOf(conn: Connection): Map<number, Follow> {
  return ((conn.state as Map<number, Follow> | undefined) ??= new Map());
}

/** A `delivery` from the local broker: to the follow of its id; dropped when there is none (pushed before an unfollow, which gave it back). */
export function routeDelivery(conn: Connection, frame: DeliveryFrame): void {
  (conn.state as Map<number, Follow> | undefined)?.get(frame.id)?.onDelivery(frame);
}

/** The connection closed: its follows end with `err`. */
export function endFollows(conn: Connection, err: MqError): void {
  const follows = conn.state as Map<number, Follow> | undefined;
  if (follows) for (const f of follows.values()) f.end(err);
}

export class Follow {
  private buffer: WireMessage[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  private ended: MqError | null = null;
  /** A batch handed out and not acknowledged yet (`next` waits for its ack). */
  private open = false;
  private closing: Promise<void> | null = null;
  /** The broker ended the follow (the id is gone): there is nothing to unfollow. */
  private endedByBroker = false;

  private constructor(
    private readonly conn: Connection,
    readonly id: number,
    private readonly byteLimit: boolean,
  ) {}

  /** Starts following `id` on `conn`: from the answer on, the broker pushes its messages. */
  static async start(conn: Connection, id: number, options: FollowOptions, timeoutMs: number): Promise<Follow> {
    const credits = options.credits ?? DEFAULT_FOLLOW_CREDITS;
    if (!(Number.isSafeInteger(credits) && credits >= 1 && credits <= MAX_FOLLOW_CREDITS)) {
      throw new RangeError(`Cannot follow with credits ${String(credits)}: it must be an integer from 1 to ${MAX_FOLLOW_CREDITS} (messages pushed ahead of the reader)`);
    }
    if (options.bytes !== undefined && !(Number.isSafeInteger(options.bytes) && options.bytes >= 1 && options.bytes <= MAX_FOLLOW_BYTES)) {
      throw new RangeError(`Cannot follow with bytes ${String(options.bytes)}: it must be an integer from 1 to ${MAX_FOLLOW_BYTES} (payload bytes pushed ahead of the reader)`);
    }
    const follows = followsOf(conn);
    if (follows.has(id)) throw new MqError(Code.BadRequest, `id ${id} is followed on this connection already (one follow or messages() loop per id and client)`);
    const f = new Follow(conn, id, options.bytes !== undefined);
    // Registered first: deliveries may come right behind the answer.
    follows.set(id, f);
    try {
      await conn.request(options.bytes === undefined ? { op: "follow", id, credits } : { op: "follow", id, credits, bytes: options.bytes }, timeoutMs);
    } catch (err) {
      if (follows.get(id) === f) follows.delete(id);
      throw err;
    }
    return f;
  }

  onDelivery(frame: DeliveryFrame): void {
    if (this.closing) return;
    if (frame.code !== undefined) {
      this.endedByBroker = true;
      this.end(new MqError(isCode(frame.code) ? frame.code : Code.Internal, frame.message ?? "the follow ended"));
    }
    for (const m of frame.messages) this.buffer.push(m);
    this.wake?.();
  }

  end(err: MqError): void {
    this.ended ??= err;
    this.wake?.();
  }

  /**
   * The next batch: up to `max` messages pushed and not handed out yet, waiting for the first
   * up to `waitMs` (none: as long as it takes); empty when none came in time. Throws when
   * the follow ended (the connection closed, or the id is gone).
   */
  async next(options: { max?: number; waitMs?: number } = {}): Promise<FollowBatch> {
    if (this.open) throw new MqError(Code.BadRequest, "Cannot take the next batch of a follow before the last one is acknowledged: call its ack() first");
    checkOption("take the next batch", "max", options.max, 1, MAX_FOLLOW_CREDITS, "messages");
    if (this.closing) throw new MqError(Code.BadRequest, `the follow of id ${this.id} is closed`);
    if (this.head === this.buffer.length && !this.ended) await this.arrival(options.waitMs);
    // What was pushed and not handed out goes back to the broker with the connection: not handed out here.
    if (this.ended) throw this.ended;
    const n = Math.min(Math.max(1, options.max ?? 100), this.buffer.length - this.head);
    const messages = new Array<Message>(n);
    for (let i = 0; i < n; i++) {
      const m = this.buffer[this.head + i]!;
      // Decoded as a Message already (hot-decode's delivered-message factory), unless cbor-x decoded the frame.
      messages[i] = m instanceof Message ? m : new Message(m.topic, m.seq, m.time, m.data, m.lost, m.headers, m.expiresAt);
    }
    this.head += n;
    if (this.head === this.buffer.length) (this.buffer = []), (this.head = 0);
    if (n > 0) this.open = true;
    let acked = false;
    return {
      messages,
      ack: async (count?: number) => {
        if (count !== undefined && !(Number.isSafeInteger(count) && count >= 0 && count <= n)) {
          throw new RangeError(`Cannot acknowledge ${count} messages of a batch of ${n}: count must be an integer from 0 to ${n}`);
        }
        if (acked || n === 0) return;
        acked = true;
        this.open = false;
        const k = count ?? n;
        // Not acknowledged: handed out again first (the broker holds them unacknowledged, in this order).
        if (k < n) {
          this.buffer = (messages.slice(k) as WireMessage[]).concat(this.buffer.slice(this.head));
          this.head = 0;
        }
        if (k === 0) return;
        if (this.ended) throw this.ended;
        const frame: { op: "credit"; id: number; acked: number; credits: number; bytes?: number } = { op: "credit", id: this.id, acked: k, credits: k };
        if (this.byteLimit) {
          let bytes = 0;
          for (let i = 0; i < k; i++) bytes += messageBytes(messages[i]!);
          frame.bytes = bytes;
        }
        this.conn.send(frame);
      },
    };
  }

  /** Ends the follow: what was pushed and not acknowledged goes back to the id's buffer, for the next reader. */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= (async () => {
      this.end(new MqError(Code.BadRequest, `the follow of id ${this.id} is closed`));
      try {
        if (!this.conn.closed && !this.endedByBroker) await this.conn.request({ op: "unfollow", id: this.id }, timeoutMs);
      } catch (err) {
        // A closed connection ends the follow on the broker's side too.
        if (!this.conn.closed) throw err;
      } finally {
        const follows = followsOf(this.conn);
        if (follows.get(this.id) === this) follows.delete(this.id);
      }
    })();
    return this.closing;
  }

  private async arrival(waitMs: number | undefined): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.wake = resolve;
    const timer = waitMs === undefined ? undefined : setTimeout(resolve, Math.max(0, waitMs));
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      this.wake = null;
    }
  }
}
