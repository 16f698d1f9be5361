/** A topic as the server holds it, and one subscriber's delivery state within it. */
import { logger } from "../log.ts";
import type { StoredMessage, SubscriberIndex, TopicLog } from "../store/types.ts";
import type { Connection } from "../wire/connection.ts";
import type { MsgsFrame } from "../wire/messages.ts";
import { MAX_IDS_PER_FRAME, MESSAGE_OVERHEAD_BYTES, messageBytes } from "../wire/messages.ts";
import type { Credits, Pushable } from "./credits.ts";
import { TopicIds } from "./dedupe.ts";
import { TopicCounts } from "./topic-counts.ts";
import { Readers } from "./fanout.ts";
import { nextRead } from "./push-step.ts";
import { DeliveryWindow, MIN_WINDOW_MESSAGES } from "./window.ts";

const serverLog = logger("server");

const READ_BATCH = 64;
/** What `push` returns when it has nothing to do. */
const DONE: Promise<void> = Promise.resolve();
export { MAX_EXPIRED_PER_PUSH } from "./push-step.ts";

export class Topic {
  readonly subscriptions = new Map<number, Subscription>();
  /** Publisher message ids of this topic in the dedupe window. */
  readonly ids = new TopicIds();
  /** Published, delivered and acknowledged since the start (/metrics, the HTTP API). */
  readonly counts = new TopicCounts();
  /** Counts messages a push skipped because their TTL ran out (the server's `expired`). */
  onExpired: (count: number) => void = () => {};
  /** Pushes `sub` again (the server's pump): after a push stopped at MAX_EXPIRED_PER_PUSH, no ack would wake it. */
  repush: (sub: Subscription) => void = () => {};
  /**
   * True when `id` belongs to the local broker whose session is `conn`, and that broker takes
   * `msgs` frames for several ids (MSGS_IDS_CAP): its subscriptions share reads and frames.
   */
  sharesPushes: (conn: Connection, id: number) => boolean = () => false;
  /** Counts messages delivered to an id in a frame sent for another id too (the server's `fanout_shared`). */
  onShared: (count: number) => void = () => {};
  /** The pushes reading the log now, for riders to find (lib/server/fanout.ts). */
  readonly readers = new Readers<Subscription>();
  constructor(
    readonly name: string,
    readonly log: TopicLog,
    readonly index: SubscriberIndex,
  ) {}

  /** The lowest seq that a subscription or queue group of this topic reads next (the log's `readFloor`). */
  readFloor(): number {
    let floor = this.log.nextSeq;
    for (const sub of this.subscriptions.values()) {
      const next = sub.readsFrom;
      if (next < floor) floor = next;
    }
    return floor;
  }
}

export class Subscription implements Pushable {
  /** Acknowledged cursor: every seq below it reached the client. Persisted (lazily) in the index. */
  acked: number;
  /** Next seq to push. Between `acked` and `sent` messages are in flight. */
  private sent: number;
  // Seqs and sizes in flight, oldest first (a queue with a moving head, no per-message objects).
  private seqs: number[] = [];
  private sizes: number[] = [];
  private head = 0;
  private inflightBytes = 0;
  /** The local broker last heard `more: true` for this subscription (a frame or a notice said so). */
  private moreAnnounced = false;
  /** Waiting in its broker's Credits for room. */
  queued = false;
  /** Unsubscribed or destroyed. */
  dropped = false;
  /** A push awaits a read of the log; `pushing` is that push. */
  private reading = false;
  private pushing: Promise<void> = DONE;
  /** Asked to push while `reading`: the push in progress takes it up (to this session, if another). */
  private pushAgain: { conn: Connection; credits: Credits } | null = null;
  /** Bytes charged to `reservedOn` for the read in flight, so that other pushes meanwhile see the room taken. */
  private reserved = 0;
  private reservedOn: Credits | null = null;
  /** Moved by every rewind: a read started before one is stale when it returns. */
  private epoch = 0;
  /** Waiting for the read of another id's push of this topic to the same local broker, to ride along. */
  private waitingOn: Subscription | null = null;
  /** Subscriptions waiting for this one's read (those whose `waitingOn` is still this). */
  private riders: Subscription[] = [];
  /**
   * The most messages and payload bytes of this subscription sent and not yet acknowledged,
   * sized to the link (lib/server/window.ts). Within it, the local broker's budgets (Credits) apply.
   */
  readonly window: DeliveryWindow;

  /** `minWindow`: the floor of its window in messages (a queue-group member's is lower). */
  constructor(
    readonly id: number,
    readonly topic: Topic,
    cursor: number,
    minWindow = MIN_WINDOW_MESSAGES,
  ) {
    this.acked = cursor;
    this.sent = cursor;
    this.window = new DeliveryWindow(minWindow);
  }

  /** `acked` when `keepsUp` last looked. */
  private ackedSeen = 0;

  /** A push of it reads the log now, or waits to ride along another's read: messages are on their way to its local broker. */
  get readingNow(): boolean {
    return this.reading || this.waitingOn !== null;
  }

  /**
   * Its consumer keeps up: nothing was in flight to it (`sent` moves when a read returns, so
   * this is before the push just started), or acks came since the last look. A consumer that
   * is away (a durable subscriber between runs) takes a window of pushes and acks none.
   */
  keepsUp(): boolean {
    const moved = this.acked !== this.ackedSeen;
    this.ackedSeen = this.acked;
    return moved || this.acked === this.sent;
  }

  /** After a (re)connect of the owner: everything unacknowledged is sent again. */
  rewind(): void {
    this.epoch++;
    this.waitingOn = null; // it waited for a push to the previous session
    this.window.reset();
    // What the read in flight reserved belongs to the previous session's Credits.
    this.reserved = 0;
    this.reservedOn = null;
    this.moreAnnounced = false;
    this.queued = false; // the queue belonged to the previous session's Credits
    this.sent = this.acked;
    this.seqs = [];
    this.sizes = [];
    this.head = 0;
    this.inflightBytes = 0;
  }

  /** Next seq to push: every seq below it reached the local broker (until a rewind). */
  get sentCursor(): number {
    return this.sent;
  }

  /** The next seq this subscription reads from the log (below it: only after a rewind). */
  get readsFrom(): number {
    return this.sent;
  }

  /** Messages sent to the local broker and not yet acknowledged (stats only). */
  get inFlight(): number {
    return this.seqs.length - this.head;
  }

  /** Something is stored at or after `sent` (a hole at the end waits for the next append). */
  get backlog(): boolean {
    return this.sent <= this.topic.log.lastSeq;
  }

  /**
   * Pushes as much as the window, the local broker's budgets (`credits`) and the
   * connection's outbound budget allow. Stopped by a budget it shares with other
   * subscriptions, it waits in `credits` for its turn; stopped by its own window, its own
   * acks bring it back. A hole in the log (messages lost to damaged storage) is skipped,
   * never waited for: the first message after it carries `lost`, how many seqs before it
   * are missing. An expired message (TTL) is skipped too, without a `lost`: it is never
   * delivered, and counts as acknowledged once nothing before it is in flight.
   *
   * Reads of the log are async, one batch at a time: a push asked for while one is
   * reading is taken up by it when the read returns. Resolves when the pushing is done
   * (tests wait for it; the server does not).
   */
  push(conn: Connection, credits: Credits): Promise<void> {
    if (this.reading) {
      this.pushAgain = { conn, credits };
      return this.pushing;
    }
    if (this.waitingOn) return this.waitingOn.pushing;
    if (!this.backlog || this.dropped) return DONE;
    // Another id of the same local broker reads the same seqs of this topic: wait and ride along.
    const leader = this.topic.readers.leaderFor(conn, this.sent);
    if (leader && leader !== this && this.topic.sharesPushes(conn, this.id)) {
      this.waitingOn = leader;
      leader.riders.push(this);
      return leader.pushing;
    }
    const run = this.pushBatches(conn, credits);
    if (this.reading) this.pushing = run; // else it is over already (it stopped before reading)
    return run;
  }

  private async pushBatches(conn: Connection, credits: Credits): Promise<void> {
    try {
      await this.pushRun(conn, credits);
    } finally {
      // Riders still waiting push on their own now (or wait for another read).
      const waiting = this.takeWaiting();
      for (const rider of waiting) if (!rider.dropped) this.topic.repush(rider);
    }
  }

  private async pushRun(conn: Connection, credits: Credits): Promise<void> {
    const log = this.topic.log;
    let epoch = this.epoch;
    let shared = false;
    let reservedAny = false;
    let skipped = 0;
    while (this.backlog) {
      const step = nextRead(this, conn, credits, this.seqs.length - this.head, this.inflightBytes, READ_BATCH, skipped);
      if (typeof step === "string") {
        shared = step === "credits";
        break;
      }
      const { count, maxBytes } = step;
      const from = this.sent;
      this.reserved = step.reserved;
      this.reservedOn = credits;
      reservedAny = true;
      this.reading = true;
      const readConn = this.topic.sharesPushes(conn, this.id) ? conn : null;
      if (readConn) this.topic.readers.start(this, readConn, from);
      let read: StoredMessage[];
      try {
        read = await log.read(from, count, maxBytes);
      } catch (err) {
        // Left in the backlog: the next publish, ack or reconnect tries again.
        serverLog.error(`topic ${this.topic.name}: cannot read from seq ${from} for id ${this.id}:`, err);
        read = [];
      } finally {
        this.reading = false;
        if (readConn) this.topic.readers.end(this, readConn, from);
        this.unreserve();
      }
      if (this.dropped) return;
      const again = this.pushAgain;
      this.pushAgain = null;
      if (again && (again.conn !== conn || again.credits !== credits || this.epoch !== epoch)) {
        // A new session of the owner asked meanwhile: push to it (what was read is read again).
        ({ conn, credits } = again);
        epoch = this.epoch;
        continue;
      }
      // Rewound by a reconnect (whose session pushes anew) or the connection is gone (the next one rewinds).
      if (this.epoch !== epoch || conn.closed) return;
      // An ack moved `sent` past what was read (acks of messages sent before a reconnect): read again from there.
      if (this.sent !== from) continue;
      if (read.length === 0) break;
      skipped += this.sendRead(conn, credits, from, read);
    }
    if (shared) credits.wait(this);
    this.announce(conn);
    // What a reservation held and the push did not use may be what others wait for (never
    // nested in Credits.serve: a push that reserved has awaited since).
    if (reservedAny) credits.serve(conn);
  }

  /**
   * Sends `read` (read from `from`) to `conn`: one frame per run of consecutive seqs, for this
   * subscription and the riders that board it. Returns the expired messages skipped. Apart
   * from the async `pushRun` on purpose: the JIT compiles an async function again when the
   * values it resumes with change type, and this, most of a push's work, stays compiled.
   */
  private sendRead(conn: Connection, credits: Credits, from: number, read: StoredMessage[]): number {
    const split = splitExpired(read);
    const batch = split ? split.live : read;
    const expired = split ? split.expired : NONE_EXPIRED;
    // Sizes as both ends count them (headers count as payload: messageBytes).
    const sizes: number[] = [];
    let bytes = 0;
    for (let i = 0; i < batch.length; i++) {
      const size = messageBytes(batch[i]!);
      sizes.push(size);
      bytes += size;
    }
    const riders = this.riders.length > 0 ? this.boardRiders(conn, credits, from, batch.length, bytes) : NO_RIDERS;
    if (expired.length > 0) this.topic.onExpired(expired.length * (1 + riders.length));
    // One frame per run of consecutive seqs; a run that starts past the expected seq follows a
    // hole (lost messages) or expired messages (not lost: they are not counted in `lost`).
    const riderIds = riders.length > 0 ? riders.map((r) => r.id) : undefined;
    let expected = this.sent;
    let e = 0;
    for (let start = 0; start < batch.length; ) {
      // Times and payloads gathered in one pass per run (no copy of the batch per frame): with
      // ids reading apart every id's push takes this path per message (docs/benchmarks.md).
      // New arrays per run, each bound once: a variable given a new empty array after the
      // first run made the JIT's code for the filled ones exit at every frame (docs/benchmarks.md).
      const times: number[] = [];
      const payloads: Uint8Array[] = [];
      let extra = false;
      let k = start;
      for (; ; k++) {
        const m = batch[k]!;
        times.push(m.time);
        payloads.push(m.data);
        extra ||= hasExtra(m);
        if (k + 1 === batch.length || batch[k + 1]!.seq !== m.seq + 1) break;
      }
      const last = batch[k]!.seq;
      const first = batch[start]!.seq;
      // `more`: the log holds messages past this frame, which come once credits free up.
      const more = last < this.topic.log.lastSeq;
      let lost = first - expected;
      while (e < expired.length && expired[e]! < first) if (expired[e++]! >= expected) lost--;
      const frame: MsgsFrame = { op: "msgs", id: this.id, topic: this.topic.name, seq: first, times, payloads, more };
      if (lost > 0) frame.lost = lost;
      if (extra) addExtra(frame, batch.slice(start, k + 1));
      if (riderIds) frame.ids = riderIds;
      conn.send(frame);
      this.moreAnnounced = more;
      expected = last + 1;
      start = k + 1;
    }
    const next = read[read.length - 1]!.seq + 1;
    this.took(batch, sizes, bytes, credits, next);
    if (riders.length > 0) {
      for (const rider of riders) {
        rider.took(batch, sizes, bytes, credits, next);
        if (batch.length > 0) rider.moreAnnounced = this.moreAnnounced;
        // Waits for the next read too (`pushBatches` lets it go when the push ends).
        rider.waitingOn = this;
        this.riders.push(rider);
      }
      this.topic.onShared(batch.length * riders.length);
    }
    return expired.length;
  }

  /**
   * Bookkeeping of a batch pushed to this subscription (by its own push, or in the frame of
   * another id's push it rode): `sizes[i]` is `messageBytes(batch[i])`, `bytes` their sum,
   * `next` the seq after the read (past expired messages).
   */
  private took(batch: StoredMessage[], sizes: number[], bytes: number, credits: Credits, next: number): void {
    for (let i = 0; i < batch.length; i++) {
      this.seqs.push(batch[i]!.seq);
      this.sizes.push(sizes[i]!);
    }
    this.inflightBytes += bytes;
    credits.charge(this.id, bytes + batch.length * MESSAGE_OVERHEAD_BYTES);
    credits.delivered(batch.length);
    this.topic.counts.delivered += batch.length;
    this.window.sent(batch.length);
    this.sent = next;
    // Nothing in flight before them: what was skipped is acknowledged here, as no ack will come for it.
    if (this.head === this.seqs.length) this.skipTo(this.sent);
  }

  /** The riders still waiting for this push; they wait no more. */
  private takeWaiting(): Subscription[] {
    const waiting: Subscription[] = [];
    for (const rider of this.riders) {
      // Rewound (a new session) or listed twice: no longer waiting here.
      if (rider.waitingOn !== this) continue;
      rider.waitingOn = null;
      waiting.push(rider);
    }
    this.riders = [];
    return waiting;
  }

  /**
   * Of the riders waiting, those that take the batch just read from `from` (`count` messages,
   * `bytes` payload bytes) as it is: same next seq, same session, room in their window and
   * budgets for all of it. The others push on their own, after this batch.
   */
  private boardRiders(conn: Connection, credits: Credits, from: number, count: number, bytes: number): Subscription[] {
    const boarding: Subscription[] = [];
    const cost = bytes + count * MESSAGE_OVERHEAD_BYTES;
    for (const rider of this.takeWaiting()) {
      if (rider.dropped) continue;
      // The broker's budget pays for the batch once per id: this push's and the riders' before, not charged yet.
      const brokerRoom = credits.brokerBytes - credits.bytes - cost * (1 + boarding.length);
      const fits =
        boarding.length < MAX_IDS_PER_FRAME &&
        !rider.reading &&
        rider.sent === from &&
        // Room in its window, as its own push would need to read: it may go over by one batch.
        rider.seqs.length - rider.head < rider.window.messages &&
        rider.inflightBytes < rider.window.bytes &&
        (count === 0 || Math.min(brokerRoom, credits.idBytes - credits.bytesOf(rider.id)) >= cost) &&
        this.topic.sharesPushes(conn, rider.id);
      if (fits) boarding.push(rider);
      else queueMicrotask(() => rider.dropped || rider.waitingOn !== null || this.topic.repush(rider));
    }
    return boarding;
  }

  /** Gives back what the read in flight reserved. */
  private unreserve(): void {
    this.reservedOn?.release(this.id, this.reserved);
    this.reserved = 0;
    this.reservedOn = null;
  }

  /**
   * Held back with messages waiting: say so once, with an empty frame, so that a
   * `recv --count N` knows that more will come after its acknowledgement.
   */
  announce(conn: Connection): void {
    if (!this.moreAnnounced && this.backlog && conn.writable) {
      conn.send({ op: "msgs", id: this.id, topic: this.topic.name, seq: this.sent, times: [], payloads: [], more: true });
      this.moreAnnounced = true;
    }
  }

  /**
   * Cumulative acknowledgement of every seq up to `seq`, on the session `credits` belong to;
   * returns how many messages it freed.
   */
  ack(seq: number, credits: Credits): number {
    const cursor = Math.min(seq + 1, this.topic.log.nextSeq);
    if (cursor <= this.acked) return 0;
    let freed = 0;
    let bytes = 0;
    while (this.head < this.seqs.length && this.seqs[this.head]! < cursor) {
      bytes += this.sizes[this.head]!;
      this.head++;
      freed++;
    }
    this.inflightBytes -= bytes;
    credits.release(this.id, bytes + freed * MESSAGE_OVERHEAD_BYTES);
    this.window.done(freed, bytes);
    if (this.head > 1024 && this.head * 2 > this.seqs.length) {
      this.seqs = this.seqs.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    this.acked = cursor;
    // An ack for messages pushed before a reconnect may run ahead of what was re-sent.
    if (this.sent < cursor) this.sent = cursor;
    this.topic.index.advance(this.id, cursor);
    // Nothing left in flight: what was skipped after the last message sent (expired) is done too.
    if (this.head === this.seqs.length) this.skipTo(this.sent);
    return Math.max(freed, 1);
  }

  /** Moves the acknowledged cursor to `cursor` when nothing is in flight: the seqs between were skipped (expired). */
  private skipTo(cursor: number): void {
    if (cursor <= this.acked) return;
    this.acked = cursor;
    this.topic.index.advance(this.id, cursor);
  }

  /** Unsubscribed or destroyed: gives back what it has in flight (to `credits`, its owner's session, if connected). */
  drop(credits: Credits | undefined): void {
    this.dropped = true;
    this.unreserve();
    credits?.release(this.id, this.inflightBytes + (this.seqs.length - this.head) * MESSAGE_OVERHEAD_BYTES);
    this.seqs = [];
    this.sizes = [];
    this.head = 0;
    this.inflightBytes = 0;
  }
}

const NONE_EXPIRED: readonly number[] = [];
const NO_RIDERS: readonly Subscription[] = [];

/**
 * The messages of `batch` still live and the seqs of those expired, when some are; null when
 * none is (no copy, and no clock read unless some message has an expiry).
 */
function splitExpired(batch: StoredMessage[]): { live: StoredMessage[]; expired: number[] } | null {
  let now = 0;
  for (let i = 0; i < batch.length; i++) {
    const at = batch[i]!.expiresAt;
    if (at === undefined) continue;
    now ||= Date.now();
    if (at > now) continue;
    const live: StoredMessage[] = [];
    const expired: number[] = [];
    for (const m of batch) {
      if (m.expiresAt !== undefined && m.expiresAt <= now) expired.push(m.seq);
      else live.push(m);
    }
    return { live, expired };
  }
  return null;
}

export function hasExtra(m: StoredMessage): boolean {
  return m.headers !== undefined || m.expiresAt !== undefined;
}

/** Adds `headers` and `expires` to a frame some of whose messages have them (one entry per message, `{}` / 0 for none). */
export function addExtra(frame: MsgsFrame, run: StoredMessage[]): void {
  if (run.some((m) => m.headers !== undefined)) frame.headers = run.map((m) => m.headers ?? {});
  if (run.some((m) => m.expiresAt !== undefined)) frame.expires = run.map((m) => m.expiresAt ?? 0);
}
