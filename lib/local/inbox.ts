/**
 * The messages the server pushed for one local id, waiting for `recv`. Keeps per topic the
 * seqs not yet acknowledged by a client, so the ack sent on to the server is cumulative and
 * never runs ahead of a message some client still holds. An explicit topic (a queue group or
 * --max-deliver: its pushes carry `explicit`) is tracked as a set of seqs instead, and
 * acknowledged (or given back) seq by seq.
 *
 * A topic unsubscribed and subscribed again gets a new track, with the same seqs maybe: what
 * a client took from the old one must not reach the new one. So every take is stamped with
 * the inbox's `epoch`, and what comes back (put back, acknowledged, given back) counts only
 * for a track at least as old as its take.
 */
import { deliveryCost, messageBytes, type Message } from "../wire/messages.ts";
import { Fifo } from "../wire/fifo.ts";
import { detachMessage } from "../wire/hot-frames.ts";

interface TopicTrack {
  /** Seqs buffered or handed to a client and not yet acknowledged, ascending. */
  unacked: Fifo<number>;
  /** Highest seq received: anything at or below it is a re-send after a reconnect. */
  highest: number;
  /** Highest seq acknowledged to the server. */
  ackedUpstream: number;
  /** The server said it holds more of this topic than it has sent (a window or budget is full). */
  more: boolean;
  /** What the unacked messages cost against the buffer budgets (`deliveryCost`). */
  bytes: number;
  /** Explicit topics only: the seqs held (buffered or handed to a client), in place of `unacked` and `highest`. */
  held?: Set<number>;
  /** The inbox's `epoch` when the track was made: messages taken before it are of an older track of the topic. */
  epoch: number;
}

/** What to tell the server after a client acknowledged: a cumulative floor, or exact seqs (explicit topics). */
export type UpstreamAck = { topic: string; seq: number } | { topic: string; seqs: number[] };

export interface Waiter {
  max: number;
  /** `epoch`: the inbox's when the messages were taken. */
  resolve(messages: Message[], epoch: number): void;
}

export class Inbox {
  private queue: Message[] = [];
  private head = 0;
  /** queue[head, detachedTo) have payloads of their own (detachPending); 0 after the queue was rebuilt. */
  private detachedTo = 0;
  private readonly tracks = new Map<string, TopicTrack>();
  /** What `find` found last (forgotten when its topic is dropped). */
  private lastTopic: string | undefined;
  private lastTrack: TopicTrack | undefined;
  /** Moves on when a topic is dropped; a take is stamped with it (see the class comment). */
  private dropped = 0;
  readonly waiters: Waiter[] = [];
  /**
   * Bytes held for this id, buffered or handed to a client and not yet acknowledged, as the
   * server counts them against the budgets the local broker announced (`deliveryCost`).
   */
  bytes = 0;

  /** What a take made now is stamped with: give it back with the messages to putBack, acknowledge and giveBack. */
  get epoch(): number {
    return this.dropped;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  /**
   * Adds a pushed message. Returns "new", or for a duplicate, whether the server needs a
   * fresh ack ("reack": it was already acknowledged, the server lost track in a restart).
   */
  add(msg: Message, explicit?: boolean): "new" | "duplicate" | "reack" {
    const track = this.track(msg.topic);
    if (explicit) return this.addExplicit(track, msg);
    if (msg.seq <= track.highest) return msg.seq <= track.ackedUpstream ? "reack" : "duplicate";
    // Of the seqs the server reports lost, those up to `highest` reached this buffer before the loss.
    if (msg.lost !== undefined && track.highest > 0) {
      const lost = Math.min(msg.lost, msg.seq - 1 - track.highest);
      if (lost > 0) msg.lost = lost;
      else delete msg.lost;
    }
    track.highest = msg.seq;
    track.unacked.push(msg.seq);
    const cost = deliveryCost(messageBytes(msg));
    track.bytes += cost;
    this.bytes += cost;
    this.queue.push(msg);
    return "new";
  }

  /** A message of an explicit topic: new unless this seq is held already (a re-send after a reconnect). */
  private addExplicit(track: TopicTrack, msg: Message): "new" | "duplicate" {
    track.held ??= new Set();
    if (track.held.has(msg.seq)) return "duplicate";
    track.held.add(msg.seq);
    delete msg.lost; // the group's members share the topic's seqs: a jump is not a loss
    const cost = deliveryCost(messageBytes(msg));
    track.bytes += cost;
    this.bytes += cost;
    this.queue.push(msg);
    return "new";
  }

  /**
   * Messages a client took and did not process: those of explicit topics stop being held
   * here and are returned per topic, for a `nak` to the server (which counts the delivery and
   * redelivers); the others are returned as they are, to be put back here.
   */
  giveBack(messages: Message[], epoch: number): { naks: Array<{ topic: string; seqs: number[] }>; rest: Message[] } {
    const naks = new Map<string, number[]>();
    const rest: Message[] = [];
    for (const m of messages) {
      const track = this.trackOf(m, epoch);
      if (!track?.held) {
        rest.push(m);
        continue;
      }
      if (!track.held.delete(m.seq)) continue;
      this.release(track, m);
      const seqs = naks.get(m.topic);
      if (seqs) seqs.push(m.seq);
      else naks.set(m.topic, [m.seq]);
    }
    return { naks: [...naks].map(([topic, seqs]) => ({ topic, seqs })), rest };
  }

  /**
   * The seqs of explicit topics (those in `topics`, else all) still in this buffer, never
   * handed to a client, per topic: told to the server before an unsub or destroy, so that it
   * does not count them as delivered (`buffered` on the server hop).
   */
  unhanded(topics?: readonly string[]): Array<{ topic: string; seqs: number[] }> {
    const out = new Map<string, number[]>();
    for (let i = this.head; i < this.queue.length; i++) {
      const m = this.queue[i]!;
      if (topics && !topics.includes(m.topic)) continue;
      if (!this.tracks.get(m.topic)?.held?.has(m.seq)) continue;
      const seqs = out.get(m.topic);
      if (seqs) seqs.push(m.seq);
      else out.set(m.topic, [m.seq]);
    }
    return [...out].map(([topic, seqs]) => ({ topic, seqs }));
  }

  /**
   * The server connection was lost: the server gave back every message of an explicit topic
   * this broker held (another member may get them), so those still buffered are dropped and
   * no longer held; it sends them again after the reconnect if they are still this member's.
   * A copy handed to a client meanwhile may still be acknowledged (the server ignores the
   * ack if the message went to another member).
   */
  dropExplicit(): void {
    let any = false;
    for (const track of this.tracks.values()) {
      if (!track.held) continue;
      track.held.clear();
      this.bytes -= track.bytes;
      track.bytes = 0;
      track.more = false;
      any = true;
    }
    if (!any) return;
    this.queue = this.queue.slice(this.head).filter((m) => !this.tracks.get(m.topic)?.held);
    this.detachedTo = 0;
    this.head = 0;
  }

  private release(track: TopicTrack, m: Message): void {
    const cost = deliveryCost(messageBytes(m));
    track.bytes -= cost;
    this.bytes -= cost;
  }

  /**
   * Records the server's `more` flag of the latest push for `topic`: also for a topic of
   * which nothing came yet (it waits for room in the budgets behind other topics).
   */
  setMore(topic: string, more: boolean): void {
    const track = more ? this.track(topic) : this.tracks.get(topic);
    if (track) track.more = more;
  }

  private track(topic: string): TopicTrack {
    let track = this.find(topic);
    if (!track) this.tracks.set(topic, (track = { unacked: new Fifo<number>(), highest: 0, ackedUpstream: 0, more: false, bytes: 0, epoch: this.dropped }));
    return track;
  }

  /** The track of `topic`, if any; the last one found is kept, as a batch's messages are mostly of one topic. */
  private find(topic: string): TopicTrack | undefined {
    if (topic === this.lastTopic && this.lastTrack !== undefined) return this.lastTrack;
    const track = this.tracks.get(topic);
    if (track !== undefined) {
      this.lastTopic = topic;
      this.lastTrack = track;
    }
    return track;
  }

  /**
   * The track `m`, taken at `epoch`, came from; undefined when its topic was dropped since,
   * also when it was subscribed again (a new track, which starts afresh).
   */
  private trackOf(m: Message, epoch: number): TopicTrack | undefined {
    const track = this.find(m.topic);
    return track !== undefined && track.epoch <= epoch ? track : undefined;
  }

  /** True when a recv after this one will find more: here, or on its way once acknowledged. */
  get more(): boolean {
    if (this.pending > 0) return true;
    for (const t of this.tracks.values()) if (t.more) return true;
    return false;
  }

  /**
   * `topic` up to `seq` was acknowledged by a client in an earlier run of this broker, and the
   * server may not have heard of it (lib/local/unsent-acks.ts): what it sends again up to there
   * is acknowledged again, not delivered twice. Only on a fresh track (nothing received yet).
   */
  seedAcked(topic: string, seq: number): void {
    const track = this.track(topic);
    if (track.highest > 0 || track.unacked.length > 0) return;
    track.highest = track.ackedUpstream = seq;
  }

  /** The highest seq of `topic` acknowledged upstream (for a re-ack). */
  ackedUpstream(topic: string): number {
    return this.tracks.get(topic)?.ackedUpstream ?? 0;
  }

  /**
   * Called with the messages a `take` found expired (their TTL ran out while they waited
   * here): they are never handed out, and the owner acknowledges them (`acknowledge`).
   */
  onExpired: ((messages: Message[], epoch: number) => void) | null = null;

  /** Takes up to `max` messages from the front; expired ones are left out and go to `onExpired`. */
  take(max: number): Message[] {
    let out = this.takeFront(max);
    let now = expiredAt(out);
    if (now === 0) return out;
    const live: Message[] = [];
    const expired: Message[] = [];
    // Bounded: every round takes at least one message off the queue.
    for (;;) {
      for (const m of out) {
        if (m.expiresAt !== undefined && m.expiresAt <= now) expired.push(m);
        else live.push(m);
      }
      if (live.length >= max || this.pending === 0) break;
      out = this.takeFront(max - live.length);
      now = Date.now();
    }
    this.onExpired?.(expired, this.dropped);
    return live;
  }

  private takeFront(max: number): Message[] {
    const n = Math.min(max, this.pending);
    const out = this.queue.slice(this.head, this.head + n);
    this.head += n;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.detachedTo = 0;
      this.head = 0;
    }
    return out;
  }

  /**
   * Gives every message buffered since the last call a payload of its own (`detachMessage`). The
   * server's pushes arrive as views into socket reads (in `mq up`, into its commit buffers) of up
   * to hundreds of KiB: one small message left waiting kept its whole read alive, memory the
   * byte budgets do not see (1,324 waiting messages of a few bytes held ~100 MB). Called once a
   * second, so that a message taken soon is never copied. Returns how many were looked at.
   */
  detachPending(): number {
    const from = Math.max(this.head, this.detachedTo);
    for (let i = from; i < this.queue.length; i++) detachMessage(this.queue[i]!);
    this.detachedTo = this.queue.length;
    return this.queue.length - from;
  }

  /** Puts messages a client took (at `epoch`) but never acknowledged back at the front, in order. */
  putBack(messages: Message[], epoch: number): void {
    // A topic unsubscribed meanwhile stays dropped, also when it was subscribed again (a new track).
    messages = messages.filter((m) => this.trackOf(m, epoch) !== undefined);
    if (messages.length === 0) return;
    // Usually older than anything still queued for their topic, so they go first.
    this.queue = messages.concat(this.queue.slice(this.head));
    this.detachedTo = 0;
    this.head = 0;
    // Not when a newer batch of the same topic was put back before them (a client holding
    // several batches acked the older one in part): then each topic is put in seq order again.
    if (!inSeqOrder(this.queue)) sortPerTopic(this.queue);
  }

  /**
   * Records that a client acknowledged `messages` (taken at `epoch`). Returns, per topic, the
   * seq to acknowledge to the server when the cumulative floor moved.
   */
  acknowledge(messages: Message[], epoch: number): UpstreamAck[] {
    const moved = new Set<TopicTrack>();
    const out: Array<{ topic: string; seq: number }> = [];
    let explicit: Map<string, number[]> | undefined;
    for (const m of messages) {
      const track = this.trackOf(m, epoch);
      if (!track) continue;
      if (track.held) {
        // Not held: handed out before the server connection was lost; acknowledged all the same (see dropExplicit).
        if (track.held.delete(m.seq)) this.release(track, m);
        explicit ??= new Map();
        const seqs = explicit.get(m.topic);
        if (seqs) seqs.push(m.seq);
        else explicit.set(m.topic, [m.seq]);
        continue;
      }
      if (!track.unacked.remove(m.seq)) continue;
      const cost = deliveryCost(messageBytes(m));
      track.bytes -= cost;
      this.bytes -= cost;
      const floor = track.unacked.length > 0 ? track.unacked.first! - 1 : track.highest;
      if (floor > track.ackedUpstream) {
        track.ackedUpstream = floor;
        if (!moved.has(track)) {
          moved.add(track);
          out.push({ topic: m.topic, seq: floor });
        }
      }
    }
    // Report the final floor of each topic.
    for (const o of out) o.seq = this.tracks.get(o.topic)!.ackedUpstream;
    if (!explicit) return out;
    return [...out, ...[...explicit].map(([topic, seqs]) => ({ topic, seqs }))];
  }

  /** Forgets everything of `topic` (after unsubscribe). */
  dropTopic(topic: string): void {
    this.dropped++;
    this.bytes -= this.tracks.get(topic)?.bytes ?? 0;
    this.tracks.delete(topic);
    if (this.lastTopic === topic) this.lastTrack = undefined;
    this.queue = this.queue.slice(this.head).filter((m) => m.topic !== topic);
    this.detachedTo = 0;
    this.head = 0;
  }
}

/** The time now when some message of `messages` has expired, else 0 (the clock is read only when some has an expiry). */
function expiredAt(messages: Message[]): number {
  let now = 0;
  for (const m of messages) {
    if (m.expiresAt === undefined) continue;
    now ||= Date.now();
    if (m.expiresAt <= now) return now;
  }
  return 0;
}

/** True when every topic's messages in `queue` come in ascending seq order. */
function inSeqOrder(queue: Message[]): boolean {
  const last = new Map<string, number>();
  for (const m of queue) {
    if ((last.get(m.topic) ?? 0) >= m.seq) return false;
    last.set(m.topic, m.seq);
  }
  return true;
}

/** Sorts each topic's messages by seq in place, keeping the slots each topic holds in `queue`. */
function sortPerTopic(queue: Message[]): void {
  const byTopic = new Map<string, Message[]>();
  for (const m of queue) {
    const list = byTopic.get(m.topic);
    if (list) list.push(m);
    else byTopic.set(m.topic, [m]);
  }
  for (const list of byTopic.values()) list.sort((a, b) => a.seq - b.seq);
  const next = new Map<string, number>();
  for (let i = 0; i < queue.length; i++) {
    const topic = queue[i]!.topic;
    const k = next.get(topic) ?? 0;
    queue[i] = byTopic.get(topic)![k]!;
    next.set(topic, k + 1);
  }
}
