/**
 * Push delivery on the client hop (`follow`, `credit`, `unfollow`; docs/protocol.md, "Push
 * delivery"): a connection that follows an id gets `delivery` frames of the id's messages as
 * they arrive, within the credits it granted, and acknowledges them cumulatively, in push
 * order, on `credit` frames. What it was pushed and did not acknowledge goes back to the id's
 * buffer when it unfollows or its connection closes, as a recv's unacknowledged batch does.
 */
import { Code, MqError } from "../errors.ts";
import type { Connection } from "../wire/connection.ts";
import { MAX_MSGS_PER_FRAME, messageBytes, type DeliveryFrame, type Message } from "../wire/messages.ts";
import type { Inbox } from "./inbox.ts";

/** Most messages a follow may have granted and unacknowledged at once (the local broker's budgets bound their bytes too). */
export const MAX_FOLLOW_CREDITS = 65_536;
/**
 * Delivery frames a follow may have unacknowledged at once: a client that keeps up gets each
 * message at once; one that is busy gets what arrived meanwhile in one bigger frame (fewer
 * frames and acks per message), as a recv loop would.
 */
export const MAX_FRAMES_AHEAD = 2;
/** Most payload bytes a follow may have granted at once. */
export const MAX_FOLLOW_BYTES = 1024 * 1024 * 1024;

/** One connection following one id. */
interface Follow {
  conn: Connection;
  local: number;
  inbox: Inbox;
  /** Messages it may still be pushed. */
  credits: number;
  /** Payload bytes it may still be pushed (below 0 after a big message went beyond); Infinity when the follow gave no byte limit. */
  bytes: number;
  /** Pushed and not yet acknowledged, in push order: `unacked[unackedHead..]`. */
  unacked: Message[];
  /** The inbox's epoch when each of `unacked` was taken (inbox.ts), index for index. */
  unackedEpochs: number[];
  unackedHead: number;
  /** Per delivery frame not wholly acknowledged, the count of messages pushed up to its end; and the counts pushed and acknowledged. */
  frameEnds: number[];
  pushedCount: number;
  ackedCount: number;
}

/** What the follows need of the local broker. */
export interface FollowHooks {
  /** The id's buffer; throws UNKNOWN_ID for an id that is not served. */
  inbox(local: number): Inbox;
  /** The client acknowledged `messages` of `local`, taken at the inbox's `epoch`: tell the server when the floor moved. */
  acknowledge(local: number, inbox: Inbox, messages: Message[], epoch: number): void;
  /**
   * The client did not acknowledge `messages` (taken at `epoch`). `counted`: its connection
   * closed with them, maybe in the middle of processing one (a message that crashes its
   * consumer): those of explicit subscriptions go back to the server as a delivery. Else it
   * ended the follow and said they never reached the application: back to the buffer,
   * uncounted, as the rest of a recv acknowledged in part.
   */
  giveBack(local: number, inbox: Inbox, messages: Message[], epoch: number, counted: boolean): void;
  /** Serves whoever waits on `inbox` (recvs, then follows). */
  serve(inbox: Inbox): void;
  /** Counts messages handed to clients. */
  delivered(count: number): void;
}

export class Follows {
  /** Per connection, its follows by local id. */
  private readonly byConn = new Map<Connection, Map<number, Follow>>();
  /** Per buffer, the follows it feeds, served in turn. */
  private readonly byInbox = new Map<Inbox, Follow[]>();

  constructor(private readonly hooks: FollowHooks) {}

  follow(conn: Connection, local: number, credits: number, bytes: number | undefined): Record<string, never> {
    checkGrant("follow", "credits", credits, 1, MAX_FOLLOW_CREDITS, "messages");
    if (bytes !== undefined) checkGrant("follow", "bytes", bytes, 1, MAX_FOLLOW_BYTES, "bytes");
    const inbox = this.hooks.inbox(local);
    let mine = this.byConn.get(conn);
    if (mine?.has(local)) throw new MqError(Code.BadRequest, `follow: id ${local} is followed on this connection already; one follow per id and connection (unfollow it first)`);
    if (!mine) this.byConn.set(conn, (mine = new Map()));
    const f: Follow = { conn, local, inbox, credits, bytes: bytes ?? Infinity, unacked: [], unackedEpochs: [], unackedHead: 0, frameEnds: [], pushedCount: 0, ackedCount: 0 };
    mine.set(local, f);
    const list = this.byInbox.get(inbox);
    if (list) list.push(f);
    else this.byInbox.set(inbox, [f]);
    // After the `ok` goes out: the client learns the follow started before its first delivery.
    queueMicrotask(() => this.hooks.serve(inbox));
    return {};
  }

  credit(conn: Connection, local: number, acked = 0, credits = 0, bytes = 0): Record<string, never> {
    const f = this.byConn.get(conn)?.get(local);
    if (!f) throw new MqError(Code.BadRequest, `credit: id ${local} is not followed on this connection; send follow first (after unfollow, credits and acks are not taken)`);
    const unacked = f.unacked.length - f.unackedHead;
    if (acked > unacked) throw new MqError(Code.BadRequest, `credit: field "acked" is ${acked}, but the follow of id ${local} has ${unacked} unacknowledged messages`);
    const open = f.credits + unacked - acked + credits;
    if (credits > 0 && open > MAX_FOLLOW_CREDITS) {
      throw new MqError(Code.BadRequest, `credit: field "credits" is ${credits}: the follow of id ${local} would have ${open} messages granted or unacknowledged, above the limit of ${MAX_FOLLOW_CREDITS}; grant what was acknowledged`);
    }
    if (bytes > 0 && f.bytes !== Infinity && f.bytes + bytes > MAX_FOLLOW_BYTES) {
      throw new MqError(Code.BadRequest, `credit: field "bytes" is ${bytes}: the follow of id ${local} would have ${f.bytes + bytes} bytes granted, above the limit of ${MAX_FOLLOW_BYTES}`);
    }
    if (acked > 0) {
      const seen = f.unacked.slice(f.unackedHead, f.unackedHead + acked);
      const epochs = f.unackedEpochs.slice(f.unackedHead, f.unackedHead + acked);
      f.unackedHead += acked;
      if (f.unackedHead === f.unacked.length) (f.unacked = []), (f.unackedEpochs = []), (f.unackedHead = 0);
      else if (f.unackedHead > 1024 && f.unackedHead * 2 > f.unacked.length) {
        f.unacked = f.unacked.slice(f.unackedHead);
        f.unackedEpochs = f.unackedEpochs.slice(f.unackedHead);
        f.unackedHead = 0;
      }
      forEachTake(seen, epochs, (messages, epoch) => this.hooks.acknowledge(local, f.inbox, messages, epoch));
      f.ackedCount += acked;
      while (f.frameEnds.length > 0 && f.frameEnds[0]! <= f.ackedCount) f.frameEnds.shift();
    }
    f.credits += credits;
    if (f.bytes !== Infinity) f.bytes += bytes;
    if (f.credits > 0 && f.inbox.pending > 0) this.hooks.serve(f.inbox);
    return {};
  }

  unfollow(conn: Connection, local: number): Record<string, never> {
    const f = this.byConn.get(conn)?.get(local);
    if (!f) throw new MqError(Code.BadRequest, `unfollow: id ${local} is not followed on this connection`);
    this.remove(f);
    this.giveBack(f, false);
    this.hooks.serve(f.inbox);
    return {};
  }

  /** Messages pushed to follows and not acknowledged yet. */
  unacknowledged(): number {
    let n = 0;
    for (const mine of this.byConn.values()) for (const f of mine.values()) n += f.unacked.length - f.unackedHead;
    return n;
  }

  /** The connection closed: its follows end, and what they were pushed and not acknowledged goes back. */
  connectionClosed(conn: Connection): void {
    const mine = this.byConn.get(conn);
    if (!mine) return;
    const touched = new Set<Inbox>();
    for (const f of mine.values()) {
      this.remove(f);
      this.giveBack(f, true);
      touched.add(f.inbox);
    }
    for (const inbox of touched) this.hooks.serve(inbox);
  }

  /** The id is no longer served (destroyed, or unknown to the server): its follows end with `err`, said to their clients. */
  end(inbox: Inbox, err: MqError): void {
    for (const f of [...(this.byInbox.get(inbox) ?? [])]) {
      this.remove(f);
      f.conn.send({ op: "delivery", id: f.local, messages: [], code: err.code, message: err.message } satisfies DeliveryFrame);
    }
  }

  /** Pushes what `inbox` holds to its follows with credits, in turn; called after recvs waiting on it were served. */
  serve(inbox: Inbox): void {
    const list = this.byInbox.get(inbox);
    if (!list) return;
    // Bounded: each round pushes at least one message, or stops.
    for (let turn = 0; turn < list.length && inbox.pending > 0; turn++) {
      const f = list[0]!;
      // The next follow goes first next time: followers of one id share it, like recvs.
      if (list.length > 1) list.push(list.shift()!);
      if (f.credits > 0 && f.bytes > 0 && f.frameEnds.length < MAX_FRAMES_AHEAD && !f.conn.closed) this.push(f);
    }
  }

  private push(f: Follow): void {
    const { inbox } = f;
    while (f.credits > 0 && f.bytes > 0 && inbox.pending > 0 && f.frameEnds.length < MAX_FRAMES_AHEAD) {
      const taken = inbox.take(Math.min(f.credits, MAX_MSGS_PER_FRAME));
      if (taken.length === 0) continue; // all expired
      const messages = f.bytes === Infinity ? taken : this.withinBytes(f, taken);
      if (messages.length > 0) {
        f.credits -= messages.length;
        const epoch = inbox.epoch;
        for (const m of messages) f.unacked.push(m), f.unackedEpochs.push(epoch);
        f.pushedCount += messages.length;
        f.frameEnds.push(f.pushedCount);
        this.hooks.delivered(messages.length);
        f.conn.send({ op: "delivery", id: f.local, messages } satisfies DeliveryFrame);
      }
      // The next message is above the byte credits: it waits, at the front, for more.
      if (messages.length < taken.length) return;
    }
  }

  /**
   * The first of `messages` that fit the follow's byte credits (one at least when it holds
   * none unacknowledged, so that a big message still comes); the rest go back to the buffer.
   */
  private withinBytes(f: Follow, messages: Message[]): Message[] {
    let n = 0;
    let bytes = 0;
    while (n < messages.length) {
      const size = messageBytes(messages[n]!);
      if (bytes + size > f.bytes && (n > 0 || f.unacked.length > f.unackedHead)) break;
      bytes += size;
      n++;
    }
    f.bytes -= bytes; // below 0 after a message that went beyond: the client's grants make up for it
    if (n === messages.length) return messages;
    f.inbox.putBack(messages.slice(n), f.inbox.epoch); // taken just now
    return messages.slice(0, n);
  }

  private remove(f: Follow): void {
    const mine = this.byConn.get(f.conn);
    mine?.delete(f.local);
    if (mine?.size === 0) this.byConn.delete(f.conn);
    const list = this.byInbox.get(f.inbox);
    const i = list?.indexOf(f) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    if (list?.length === 0) this.byInbox.delete(f.inbox);
  }

  private giveBack(f: Follow, counted: boolean): void {
    const rest = f.unacked.slice(f.unackedHead);
    const epochs = f.unackedEpochs.slice(f.unackedHead);
    f.unacked = [];
    f.unackedEpochs = [];
    f.unackedHead = 0;
    forEachTake(rest, epochs, (messages, epoch) => this.hooks.giveBack(f.local, f.inbox, messages, epoch, counted));
  }
}

/** Calls `fn` for each run of `messages` taken at one epoch (`epochs[i]`: that of `messages[i]`); mostly one run. */
function forEachTake(messages: Message[], epochs: number[], fn: (messages: Message[], epoch: number) => void): void {
  if (messages.length === 0) return;
  if (epochs[0] === epochs[epochs.length - 1]) return fn(messages, epochs[0]!); // epochs only grow in push order
  let start = 0;
  for (let i = 1; i <= messages.length; i++) {
    if (i < messages.length && epochs[i] === epochs[start]) continue;
    fn(messages.slice(start, i), epochs[start]!);
    start = i;
  }
}

function checkGrant(op: string, field: string, value: number, min: number, max: number, what: string): void {
  if (value < min || value > max) throw new MqError(Code.BadRequest, `${op}: field "${field}" is ${value}; it must be from ${min} to ${max} ${what}`);
}
