/**
 * Queue groups and explicit (per-message) acknowledgement on the server.
 *
 * A group is the delivery state of one (topic, group name): a shared ack floor, the pending
 * set (lib/server/pending.ts) and its members. Each message goes to one member, the first
 * with room in its window; a member that naks, leaves, or whose local broker's session
 * closes gives its unacknowledged messages back, and the next member with room gets them.
 * A subscription with --max-deliver and no group is a group of one (a private one, no name).
 *
 * A member is a Subscription to the server (it sits in `topic.subscriptions` beside the
 * cumulative ones, so publishes, hellos and retention treat it alike), whose delivery state
 * lives in its group. Persisted in DATA/groups.json: the groups, their members, and how far
 * each got (the floor, and above it what is not done yet; docs/storage.md).
 */
import { logger } from "../log.ts";
import { Code, MqError } from "../errors.ts";
import { errnoCode } from "../store/fsutil.ts";
import type { GroupClaims, GroupRecord, GroupStore, StoredMessage } from "../store/types.ts";
import type { Connection } from "../wire/connection.ts";
import { MESSAGE_OVERHEAD_BYTES, messageBytes, type MsgsFrame } from "../wire/messages.ts";
import { checkGroupName } from "../wire/group-name.ts";
import { checkTopic, isPattern, MAX_TOPIC_BYTES, topicProblem } from "../wire/topic.ts";
import type { Consumer } from "./consumer.ts";
import type { Credits } from "./credits.ts";
import { PendingSet } from "./pending.ts";
import { nextRead } from "./push-step.ts";
import { SHARED_GROUP_POLL_MS, SharedGroup } from "./shared-group.ts";
import { addExtra, hasExtra, Subscription, type Topic } from "./topic.ts";
import { MIN_MEMBER_WINDOW_MESSAGES } from "./window.ts";

const log = logger("server");

const READ_BATCH = 64;
/** Retries of a dead letter that could not be written: from this delay, doubling up to the max. */
const DEAD_LETTER_RETRY_MIN_MS = 200;
const DEAD_LETTER_RETRY_MAX_MS = 30_000;
/** How often acks (moved floors, and messages done above them) reach DATA/groups.json. */
const FLOOR_WRITE_MS = 100;

/** What `sub` asks of an explicit subscription. */
export interface ExplicitOptions {
  group?: string;
  maxDeliver?: number;
  deadLetter?: string;
}

/** True when `sub` asks for per-message acks (a group or --max-deliver). */
export function isExplicit(options: ExplicitOptions): boolean {
  return options.group !== undefined || options.maxDeliver !== undefined || options.deadLetter !== undefined;
}

/** Checks the fields of an explicit `sub` for `topic`: the group name, max-deliver >= 1, a dead-letter topic that is valid and not the topic itself. */
export function checkExplicit(topic: string, options: ExplicitOptions): void {
  if (isPattern(topic)) throw new MqError(Code.BadRequest, `a queue group or --max-deliver needs a topic, not the pattern "${topic}"; subscribe to each topic`);
  if (options.group !== undefined) checkGroupName(options.group);
  if (options.maxDeliver !== undefined && options.maxDeliver < 1) throw new MqError(Code.BadRequest, `sub: maxDeliver must be 1 or more, got ${options.maxDeliver}`);
  if (options.deadLetter !== undefined) {
    // Without a limit nothing is ever dead-lettered: the option would only switch to per-message acks.
    if (options.maxDeliver === undefined) throw new MqError(Code.BadRequest, `sub: a dead-letter topic ("${options.deadLetter}") needs maxDeliver (--max-deliver N): without it no message is ever dead-lettered`);
    checkTopic(options.deadLetter);
    if (options.deadLetter === topic) throw new MqError(Code.BadRequest, `the dead-letter topic of "${topic}" cannot be "${topic}" itself; choose another --dead-letter`);
  } else if (options.maxDeliver !== undefined && topicProblem(defaultDeadLetter(topic))) {
    throw new MqError(Code.BadRequest, `the default dead-letter topic "${defaultDeadLetter(topic).slice(0, 60)}..." of topic "${topic.slice(0, 60)}..." is longer than ${MAX_TOPIC_BYTES} bytes; name one with --dead-letter`);
  }
}

/** Where a group's dead letters go when `sub` names no --dead-letter. */
export function defaultDeadLetter(topic: string): string {
  return `${topic}.dlq`;
}

/** BAD_REQUEST when `options` ask `group` for another --max-deliver or dead-letter topic than it has: one group, one policy. Null when alike. */
export function optionsProblem(group: Group, options: ExplicitOptions): MqError | null {
  const deadLetter = options.deadLetter ?? defaultDeadLetter(group.topic.name);
  if (group.maxDeliver === options.maxDeliver && group.deadLetterTopic === deadLetter) return null;
  const show = (maxDeliver: number | undefined, dl: string) => (maxDeliver === undefined ? "no --max-deliver" : `--max-deliver ${maxDeliver} --dead-letter ${dl}`);
  const which = group.name === undefined ? `the subscription of id ${[...group.members.keys()][0]} to topic "${group.topic.name}"` : `queue group "${group.name}" of topic "${group.topic.name}"`;
  return new MqError(Code.BadRequest, `${which} has ${show(group.maxDeliver, group.deadLetterTopic)}, and this sub asks for ${show(options.maxDeliver, deadLetter)}; subscribe with the same options, or unsubscribe every member first`);
}

/** The consumer fields (lib/server/consumer.ts) of a `sub` with these options. */
export function consumerFields(options: ExplicitOptions): Pick<Consumer, "ackPolicy" | "group" | "maxDeliver" | "deadLetter"> {
  if (!isExplicit(options)) return { ackPolicy: "cumulative" };
  return {
    ackPolicy: "explicit",
    ...(options.group === undefined ? {} : { group: options.group }),
    ...(options.maxDeliver === undefined ? {} : { maxDeliver: options.maxDeliver }),
    ...(options.deadLetter === undefined ? {} : { deadLetter: options.deadLetter }),
  };
}

/**
 * BAD_REQUEST when `id` is subscribed to `topic` already, but not as `options` ask (without a
 * group and now with one, in another group, ...): it must unsubscribe first. Null when alike.
 */
export function sameKindProblem(existing: Subscription, id: number, topic: string, options: ExplicitOptions): MqError | null {
  const member = existing instanceof GroupMember ? existing : undefined;
  if (member && isExplicit(options) && member.group.name === options.group) return optionsProblem(member.group, options);
  if (!member && !isExplicit(options)) return null;
  const was = !member ? "without a group" : member.group.name === undefined ? "with --max-deliver" : `in group "${member.group.name}"`;
  return new MqError(Code.BadRequest, `id ${id} is already subscribed to topic "${topic}" ${was}; unsubscribe it first`);
}

/** What a Group needs of the server. */
export interface GroupHost {
  /** Pushes a member if its local broker is connected (server.pump). */
  pump(member: GroupMember): void;
  /** Stores message `seq` of the group's topic in its dead-letter topic. */
  deadLetter(group: Group, seq: number, deliveries: number): Promise<void>;
}

export class Group {
  readonly pending: PendingSet;
  readonly members = new Map<number, GroupMember>();
  /** Deliveries after which a message goes to the dead-letter topic; undefined: no limit. */
  maxDeliver: number | undefined;
  deadLetterTopic: string;
  /** Set on a store several servers share: the seqs come from its claims (lib/server/shared-group.ts). */
  shared: SharedGroup | null = null;

  constructor(
    readonly topic: Topic,
    /** undefined: the private group of one subscription with --max-deliver. */
    readonly name: string | undefined,
    floor: number,
    private readonly groups: Groups,
    /** Where it stopped, as saved (`saved` of a GroupRecord): what was done above the floor stays done. */
    saved?: { next: number; undone: readonly number[] },
  ) {
    this.pending = new PendingSet(floor, saved);
    this.deadLetterTopic = defaultDeadLetter(topic.name);
  }

  /** Messages to deliver: again, or never yet. */
  get backlog(): boolean {
    if (this.shared) return this.shared.backlog;
    return this.pending.redeliverable > 0 || this.pending.next <= this.topic.log.lastSeq;
  }

  /**
   * Up to `count` messages (about `maxBytes`) for `member`: those to deliver again first,
   * then new ones. They are claimed (in flight to `member`, bytes -1) before any read, so
   * members pushing at once never get the same seq; the caller sends them. `expired`: how
   * many of those read had expired (done, never sent).
   */
  async take(member: number, count: number, maxBytes: number): Promise<{ batch: StoredMessage[]; expired: number }> {
    if (this.shared) {
      const out = await this.shared.take(member, count, maxBytes);
      const batch = this.dropExpired(out);
      return { batch, expired: out.length - batch.length };
    }
    const log = this.topic.log;
    const again: number[] = [];
    for (let r = this.pending.takeRedelivery(); r; r = again.length < count ? this.pending.takeRedelivery() : undefined) {
      this.pending.sent(r.seq, member, r.deliveries + 1, -1);
      again.push(r.seq);
    }
    let from = 0;
    let to = -1;
    if (again.length < count && this.pending.next <= log.lastSeq) {
      from = Math.max(this.pending.next, log.firstSeq);
      to = Math.min(log.lastSeq, from + (count - again.length) - 1);
      for (let seq = from; seq <= to; seq++) this.pending.sent(seq, member, 1, -1);
      this.pending.next = to + 1;
    }
    const out: StoredMessage[] = [];
    // Consecutive seqs to deliver again (a member's whole share, given back) are read as one run.
    for (let i = 0; i < again.length; ) {
      let j = i + 1;
      while (j < again.length && again[j] === again[j - 1]! + 1) j++;
      const first = again[i]!;
      const last = again[j - 1]!;
      i = j;
      const read = await this.read(first, last - first + 1, Number.MAX_SAFE_INTEGER);
      if (!read) {
        for (let seq = first; seq <= last; seq++) this.pending.unsend(seq);
        continue;
      }
      let expected = first;
      for (const m of read) {
        if (m.seq > last) break;
        for (; expected < m.seq; expected++) this.done(expected); // trimmed or lost meanwhile: nothing left to deliver
        out.push({ ...m, data: m.data.slice() }); // the next read may reuse the buffer
        expected = m.seq + 1;
      }
      // After the last one read: gone when the read found nothing up to `last`, else not read yet (a short read).
      const gone = read.length === 0 || read[read.length - 1]!.seq > last;
      for (; expected <= last; expected++) {
        if (gone) this.done(expected);
        else this.pending.unsend(expected);
      }
    }
    if (to >= from) {
      const batch = (await this.read(from, to - from + 1, Math.max(1, maxBytes))) ?? [];
      let expected = from;
      for (const m of batch) {
        for (; expected < m.seq; expected++) this.done(expected); // a hole: lost to damaged storage
        out.push(m);
        expected = m.seq + 1;
      }
      // Stopped short by `maxBytes`: the rest goes back, first in line, not counted as delivered.
      for (let seq = expected; seq <= to; seq++) this.pending.unsend(seq);
    }
    const batch = this.dropExpired(out);
    return { batch, expired: out.length - batch.length };
  }

  /** Messages whose TTL ran out are never delivered: done (the floor moves past them) and counted. */
  private dropExpired(batch: StoredMessage[]): StoredMessage[] {
    if (!batch.some((m) => m.expiresAt !== undefined)) return batch;
    const now = Date.now();
    const live = batch.filter((m) => m.expiresAt === undefined || m.expiresAt > now);
    if (live.length === batch.length) return batch;
    for (const m of batch) if (m.expiresAt !== undefined && m.expiresAt <= now) this.done(m.seq);
    this.topic.onExpired(batch.length - live.length);
    return live;
  }

  /** A read of the log; null when it failed (what was claimed goes back in line, for the next push). */
  private async read(from: number, count: number, maxBytes: number): Promise<StoredMessage[] | null> {
    try {
      return await this.topic.log.read(from, count, maxBytes);
    } catch (err) {
      log.error(`topic ${this.topic.name}: cannot read from seq ${from} for a queue group:`, err);
      return null;
    }
  }

  /** `seq` was processed (acknowledged or dead-lettered): done, and the floor may move. */
  done(seq: number): void {
    if (this.shared) {
      this.pending.done(seq);
      this.shared.acked(seq);
      return;
    }
    const before = this.pending.floor;
    this.pending.done(seq);
    if (this.pending.floor !== before) for (const m of this.members.values()) m.acked = this.pending.floor;
    this.groups.progressed();
  }

  /**
   * `seq`, in flight, was not acknowledged (a nak, or its member is gone): delivered again,
   * or, at --max-deliver deliveries, stored in the dead-letter topic and then done.
   */
  giveBack(seq: number): void {
    const deliveries = this.pending.get(seq)?.deliveries;
    if (deliveries === undefined) return;
    if (this.shared) {
      // The count is the store's: any server may deliver it again, or this one dead-letters it.
      this.pending.done(seq);
      this.shared.gaveBack(seq);
      return;
    }
    if (this.maxDeliver !== undefined && deliveries >= this.maxDeliver) {
      this.pending.retire(seq);
      this.moveToDeadLetter(seq, deliveries, 0);
      return;
    }
    this.pending.release(seq);
  }

  /** A claimed `seq` that was not sent (or whose session closed): back in line, this delivery not counted. */
  unsend(seq: number): void {
    if (!this.shared) return this.pending.unsend(seq);
    if (this.pending.done(seq)) this.shared.released(seq);
  }

  /** `seq`, at --max-deliver deliveries on a shared store, goes to the dead-letter topic from this server. */
  retire(seq: number, deliveries: number): void {
    this.pending.retire(seq);
    this.moveToDeadLetter(seq, deliveries, 0);
  }

  /**
   * Stores `seq` in the dead-letter topic, then it is done. A failed write (storage, the
   * topic limit) is logged and tried again with a growing delay: the floor stays below it
   * meanwhile, and a restart delivers it again if the server stops first.
   */
  private moveToDeadLetter(seq: number, deliveries: number, failures: number): void {
    const moving = this.groups.host.deadLetter(this, seq, deliveries).then(
      () => this.done(seq),
      (err) => {
        const delay = Math.min(DEAD_LETTER_RETRY_MAX_MS, DEAD_LETTER_RETRY_MIN_MS * 2 ** failures);
        log.error(`topic ${this.topic.name}: cannot move seq ${seq} to the dead-letter topic "${this.deadLetterTopic}" (tried again in ${delay} ms): ${(err as Error).message}`);
        const timer = setTimeout(() => {
          // Forgotten meanwhile (the group was left by all its members, or it was trimmed): nothing
          // to retry; nor once the groups are closing (the restart delivers it again).
          if (this.pending.isDying(seq) && !this.groups.closing) this.moveToDeadLetter(seq, deliveries, failures + 1);
        }, delay);
        timer.unref();
      },
    );
    this.groups.moving(moving);
  }

  /** Gives `member` another turn (its last one ended at READ_BATCH with room left in its window). */
  pumpMember(member: GroupMember): void {
    this.groups.host.pump(member);
  }

  /** Gives every member with room a turn (after messages were given back). */
  pumpMembers(): void {
    for (const m of this.members.values()) this.groups.host.pump(m);
  }
}

export class GroupMember extends Subscription {
  /** Messages and payload bytes in flight to this member. */
  private held = 0;
  private heldBytes = 0;
  /** The local broker last heard `more: true` for this member. */
  private announced = false;
  /** The push in progress (it awaits reads of the log), and a push asked for meanwhile. */
  private turn: Promise<void> | null = null;
  private turnAgain: { conn: Connection; credits: Credits } | null = null;
  /** Moved by every rewind: a read started before one is stale when it returns. */
  private generation = 0;

  constructor(
    id: number,
    readonly group: Group,
  ) {
    super(id, group.topic, group.pending.floor, MIN_MEMBER_WINDOW_MESSAGES);
  }

  override get backlog(): boolean {
    return this.group.backlog;
  }

  override get inFlight(): number {
    return this.held;
  }

  /** Acknowledged messages freed so far, for `keepsUp`. */
  private freed = 0;
  private freedSeen = 0;

  override get readingNow(): boolean {
    return this.turn !== null;
  }

  /** As Subscription.keepsUp: nothing was held by it, or some of what it held was acknowledged since the last look. */
  override keepsUp(): boolean {
    const moved = this.freed !== this.freedSeen;
    this.freedSeen = this.freed;
    return moved || this.held === 0;
  }

  /** What the group reads next: the first to deliver again (a nak, a read cut short), else its next new seq; a shared group's come from its claims. */
  override get readsFrom(): number {
    return this.group.shared ? 0 : this.group.pending.nextRead;
  }

  /**
   * As Subscription.push, with the messages taken from the group, and `explicit` on every
   * frame; at most one batch a turn. A push asked for while one reads is taken up by it.
   */
  override push(conn: Connection, credits: Credits): Promise<void> {
    if (this.turn) {
      this.turnAgain = { conn, credits };
      return this.turn;
    }
    if (!this.group.backlog || this.dropped) return Promise.resolve();
    this.turn = this.pushTurn(conn, credits).finally(() => {
      this.turn = null;
      // Asked again while it read (an ack freed room, a publish, a new session): once more.
      const again = this.turnAgain;
      this.turnAgain = null;
      if (again && !this.dropped) void this.push(again.conn, again.credits);
    });
    return this.turn;
  }

  private async pushTurn(conn: Connection, credits: Credits): Promise<void> {
    let pushed = 0;
    let shared = false;
    let reservedAny = false;
    let skipped = 0;
    // At most one batch per turn: a publish pumps every member in turn, so they share the backlog.
    while (this.group.backlog && pushed < READ_BATCH && !this.dropped) {
      const step = nextRead(this, conn, credits, this.held, this.heldBytes, READ_BATCH - pushed, skipped);
      if (typeof step === "string") {
        shared = step === "credits";
        break;
      }
      const { count, maxBytes, reserved } = step;
      reservedAny = true;
      const generation = this.generation;
      let batch: StoredMessage[];
      let expired: number;
      try {
        ({ batch, expired } = await this.group.take(this.id, count, maxBytes));
        skipped += expired;
      } finally {
        credits.release(this.id, reserved);
      }
      // While it was read, a message may have been acknowledged (a late ack of an earlier
      // delivery) or given back: only those still claimed by this member go out.
      batch = batch.filter((m) => this.group.pending.get(m.seq)?.member === this.id);
      // Claimed for this member, but it left or its session changed meanwhile: what it was
      // released with (drop, rewind) went back to the group; what is still its goes back now.
      if (this.dropped || this.generation !== generation || conn.closed) {
        const mine = batch.map((m) => m.seq);
        for (const seq of mine) this.group.unsend(seq);
        if (mine.length > 0) this.group.pumpMembers();
        return;
      }
      if (batch.length === 0) {
        if (expired > 0) continue; // all of it had expired: read on
        break;
      }
      this.send(conn, batch);
      let bytes = 0;
      for (const m of batch) {
        // Headers count as payload (both ends count alike: messageBytes).
        const size = messageBytes(m);
        this.group.pending.get(m.seq)!.bytes = size;
        bytes += size;
      }
      this.held += batch.length;
      this.heldBytes += bytes;
      credits.charge(this.id, bytes + batch.length * MESSAGE_OVERHEAD_BYTES);
      credits.delivered(batch.length);
      this.window.sent(batch.length);
      pushed += batch.length;
    }
    if (shared) credits.wait(this);
    this.announce(conn);
    if (reservedAny) credits.serve(conn);
    // The turn ended at its batch, not at its window: another turn after the others had
    // theirs, so that a member far away fills the window its link needs without waiting
    // for a publish or an ack to pump it (one timer per batch, not per message).
    if (pushed >= READ_BATCH && !shared) setImmediate(() => this.dropped || this.group.pumpMember(this));
  }

  /** One frame per run of consecutive seqs: members of a group get interleaved seqs. */
  private send(conn: Connection, batch: StoredMessage[]): void {
    let start = 0;
    for (let k = 1; k <= batch.length; k++) {
      if (k < batch.length && batch[k]!.seq === batch[k - 1]!.seq + 1) continue;
      const run = batch.slice(start, k);
      const more = k < batch.length || this.group.backlog;
      const frame: MsgsFrame = { op: "msgs", id: this.id, topic: this.topic.name, seq: run[0]!.seq, times: run.map((m) => m.time), payloads: run.map((m) => m.data), more, explicit: true };
      if (run.some(hasExtra)) addExtra(frame, run);
      conn.send(frame);
      this.announced = more;
      start = k;
    }
  }

  /** Held back by its own window with messages waiting in the group: say so once. */
  override announce(conn: Connection): void {
    const full = this.held >= this.window.messages || this.heldBytes >= this.window.bytes || this.queued;
    if (!this.announced && full && this.group.backlog && conn.writable) {
      conn.send({ op: "msgs", id: this.id, topic: this.topic.name, seq: this.group.pending.next, times: [], payloads: [], more: true, explicit: true });
      this.announced = true;
    }
  }

  /** A cumulative ack (an older local broker): every seq up to `seq` this member holds. */
  override ack(seq: number, credits: Credits): number {
    return this.ackSeqs(this.group.pending.heldBy(this.id).filter((s) => s <= seq), credits);
  }

  /** Acknowledges exactly `seqs`; returns how many it freed. Seqs this member does not hold are ignored. */
  ackSeqs(seqs: number[], credits: Credits): number {
    let freed = 0;
    for (const seq of seqs) {
      const f = this.group.pending.get(seq);
      if (!f || f.member !== this.id) continue; // handed to another member meanwhile, or done
      this.free(f.bytes, credits);
      this.group.done(seq);
      freed++;
      this.freed++;
    }
    return freed;
  }

  /**
   * `seqs` go back to the group for redelivery; returns how many. `counted`: the delivery
   * counts (toward --max-deliver) for those that were sent; those still being read (claimed,
   * never sent) never count. Not counted when only the local broker's session closed: what
   * it buffered may never have reached a client (docs/semantics.md).
   */
  nak(seqs: number[], credits: Credits | undefined, counted = true): number {
    let n = 0;
    for (const seq of seqs) {
      const f = this.group.pending.get(seq);
      if (!f || f.member !== this.id) continue;
      this.free(f.bytes, credits);
      if (counted && f.bytes >= 0) this.group.giveBack(seq);
      else this.group.unsend(seq);
      n++;
    }
    if (n > 0) this.group.pumpMembers();
    return n;
  }

  /** Everything in flight to this member goes back to the group (its broker's session closed: not `counted`; or it left). */
  releaseAll(credits: Credits | undefined, counted: boolean): void {
    this.nak(this.group.pending.heldBy(this.id), credits, counted);
    this.held = 0;
    this.heldBytes = 0;
  }

  /** After a reconnect of the owner: what was in flight went back to the group when the old session closed. */
  override rewind(): void {
    this.generation++;
    this.announced = false;
    this.queued = false;
    this.releaseAll(undefined, false);
    this.window.reset();
  }

  /**
   * Its local broker still buffers `seqs`, never handed to a client (it is about to unsubscribe
   * or destroy the id): should this member leave with them in flight, they are not counted.
   */
  markBuffered(seqs: number[]): void {
    for (const seq of seqs) {
      const f = this.group.pending.get(seq);
      if (f && f.member === this.id && f.bytes >= 0) f.buffered = true;
    }
  }

  /** It left: what reached a client counts as a delivery; what its local broker said it only buffered (markBuffered) does not. */
  override drop(credits: Credits | undefined): void {
    this.dropped = true;
    this.group.members.delete(this.id);
    const held = this.group.pending.heldBy(this.id);
    const buffered = held.filter((seq) => this.group.pending.get(seq)!.buffered);
    if (buffered.length > 0) this.nak(buffered, credits, false);
    this.releaseAll(credits, true);
  }

  private free(bytes: number, credits: Credits | undefined): void {
    if (bytes < 0) return; // claimed, still being read: not counted yet
    this.held--;
    this.heldBytes -= bytes;
    credits?.release(this.id, bytes + MESSAGE_OVERHEAD_BYTES);
    this.window.done(1, bytes);
  }
}

export class Groups {
  private readonly groups = new Map<string, Group>();
  private dirty = false;
  /** The write the timer started, until it is done. */
  private timedWrite: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private pollTimer: ReturnType<typeof setInterval> | null = null;
  /** Moves to a dead-letter topic under way: a clean stop waits for them, so that its last write has them done. */
  private readonly moves = new Set<Promise<void>>();
  /** close() was called: failed moves are not tried again. */
  closing = false;

  constructor(
    private readonly store: GroupStore,
    readonly host: GroupHost,
    /** A store several servers share: each group's seqs are claimed there (lib/server/shared-group.ts). */
    private readonly claims?: GroupClaims,
  ) {}

  /**
   * Reads DATA/groups.json back: the members of groups whose topic exists (`topics`) and whose
   * id is known (`known`); the others are dropped from the file at its next write.
   */
  async load(topics: ReadonlyMap<string, Topic>, known: (id: number) => boolean): Promise<GroupMember[]> {
    const members: GroupMember[] = [];
    for (const r of await this.store.load()) {
      const topic = topics.get(r.topic);
      if (!topic) continue;
      const floor = Math.max(r.floor, topic.log.firstSeq);
      const group = this.group(topic, r.group ?? undefined, floor, r.members[0]!, this.claims ? undefined : savedState(r, floor, topic.log.lastSeq));
      group.maxDeliver = r.maxDeliver;
      if (r.deadLetter !== undefined) group.deadLetterTopic = r.deadLetter;
      for (const id of r.members) {
        if (!known(id)) continue;
        const member = new GroupMember(id, group);
        group.members.set(id, member);
        members.push(member);
      }
    }
    this.timer = setInterval(() => {
      // One timed write at a time: on a disk slower than a tick, writes (each the whole file) would
      // queue up without bound; the next tick after it writes what changed meanwhile.
      if (!this.dirty || this.timedWrite) return;
      this.timedWrite = this.save()
        .catch((err) => {
          this.dirty = true; // tried again at the next tick
          log.error(`${this.store.describe()}: cannot write the ack floors of the queue groups: ${(err as Error).message}`);
        })
        .finally(() => (this.timedWrite = null));
    }, FLOOR_WRITE_MS);
    if (this.claims) this.pollTimer = setInterval(() => this.poll(), SHARED_GROUP_POLL_MS);
    return members;
  }

  /** Shared store: this server stays alive for the others (its claims stay its own), and every group looks for what came back. */
  private poll(): void {
    void this.claims!.alive().catch(() => false);
    for (const g of this.groups.values()) g.shared?.poll();
  }

  /**
   * Shared store: the members as stored by every server. Members of other servers' local
   * brokers are added, those no longer stored go; a member whose local broker is connected
   * here (`here`) is this server's to keep or drop. The caller adds and drops them.
   */
  async merge(topics: ReadonlyMap<string, Topic>, known: (id: number) => boolean, here: (id: number) => boolean): Promise<{ added: GroupMember[]; removed: GroupMember[] }> {
    const records = await this.store.load();
    const stored = new Set<string>();
    const added: GroupMember[] = [];
    for (const r of records) {
      const topic = topics.get(r.topic);
      if (!topic) continue;
      for (const id of r.members) {
        const key = keyOf(r.topic, r.group ?? undefined, id);
        stored.add(`${key}\0${id}`);
        if (!known(id) || here(id) || topic.subscriptions.has(id)) continue;
        const group = this.group(topic, r.group ?? undefined, Math.max(r.floor, topic.log.firstSeq), id);
        if (group.members.size === 0) {
          group.maxDeliver = r.maxDeliver;
          group.deadLetterTopic = r.deadLetter ?? defaultDeadLetter(topic.name);
        }
        const member = new GroupMember(id, group);
        group.members.set(id, member);
        added.push(member);
      }
    }
    const removed: GroupMember[] = [];
    for (const [key, g] of this.groups) {
      for (const m of g.members.values()) if (!stored.has(`${key}\0${m.id}`) && !here(m.id)) removed.push(m);
    }
    return { added, removed };
  }

  /**
   * A new member `id` of the group `options` names on `topic` (a group made at `floor`
   * when new); written to disk before it resolves. The caller adds it to the topic.
   */
  async join(topic: Topic, id: number, options: ExplicitOptions, floor: number): Promise<GroupMember> {
    const fresh = !this.groups.has(keyOf(topic.name, options.group, id));
    const group = this.group(topic, options.group, floor, id);
    if (fresh || group.members.size === 0) {
      group.maxDeliver = options.maxDeliver;
      group.deadLetterTopic = options.deadLetter ?? defaultDeadLetter(topic.name);
      // Shared store: a group left empty here may have been forgotten since; it starts again at `floor` unless it exists.
      if (!fresh && group.shared) {
        void group.shared.discard();
        group.shared = new SharedGroup(group, this.claims!, group.shared.key, floor);
      }
    } else {
      const problem = optionsProblem(group, options);
      if (problem) throw problem;
    }
    const member = group.members.get(id) ?? new GroupMember(id, group); // a concurrent join of the same id finds it
    group.members.set(id, member);
    try {
      // A store several servers share: this membership only (the others' stay as they stored them).
      if (this.store.join) await this.store.join(this.record(group, [id]));
      else await this.save();
      await group.shared?.start();
    } catch (err) {
      group.members.delete(id);
      if (group.members.size === 0) this.groups.delete(keyOf(topic.name, options.group, id));
      log.error(`topic ${topic.name}: cannot record the group membership of id ${id}: ${(err as Error).message}`);
      throw new MqError(Code.StorageError, `Cannot subscribe id ${id} to topic "${topic.name}": the server cannot record its queue groups (${errnoCode(err) ?? (err as Error).message})`, { cause: err });
    }
    return member;
  }

  /** After `member` was dropped: a group without members is forgotten. Written to disk before it resolves. */
  async left(member: GroupMember): Promise<void> {
    const group = member.group;
    if (group.members.size === 0) this.groups.delete(keyOf(group.topic.name, group.name, member.id));
    else group.pumpMembers();
    if (this.store.leave) await this.store.leave(group.topic.name, group.name ?? null, member.id);
    else await this.save();
    // Shared store: a group no server has members of is forgotten (a new one starts where its first member asks).
    if (group.shared && group.members.size === 0) {
      await group.shared.discard();
      const key = keyOf(group.topic.name, group.name, member.id);
      if (!(await this.store.load()).some((r) => keyOf(r.topic, r.group ?? undefined, r.members[0]!) === key)) await this.claims!.forget(group.topic.name, group.shared.key);
    }
  }

  /** A message of a group was done (acked, dead-lettered, expired): written within FLOOR_WRITE_MS. */
  progressed(): void {
    this.dirty = true;
  }

  private group(topic: Topic, name: string | undefined, floor: number, firstMember: number, saved?: { next: number; undone: readonly number[] }): Group {
    const key = keyOf(topic.name, name, firstMember);
    let group = this.groups.get(key);
    if (!group) {
      this.groups.set(key, (group = new Group(topic, name, floor, this, saved)));
      if (this.claims) group.shared = new SharedGroup(group, this.claims, name ?? `#${firstMember}`, floor);
    }
    return group;
  }

  /** Writes every group (atomically, off the event loop): membership changes at once, acks within FLOOR_WRITE_MS. */
  save(): Promise<void> {
    this.dirty = false;
    return this.store.save(this.records());
  }

  /** Every group with members, as it is now. */
  private records(): GroupRecord[] {
    const records: GroupRecord[] = [];
    for (const g of this.groups.values()) if (g.members.size > 0) records.push(this.record(g, [...g.members.keys()]));
    return records;
  }

  private record(g: Group, members: number[]): GroupRecord {
    const r: GroupRecord = { topic: g.topic.name, group: g.name ?? null, floor: g.shared?.floor ?? g.pending.floor, members };
    if (g.maxDeliver !== undefined) r.maxDeliver = g.maxDeliver;
    if (g.deadLetterTopic !== defaultDeadLetter(g.topic.name)) r.deadLetter = g.deadLetterTopic;
    // Above the floor (one member may hold it down while the others go on): how far delivery got, and what is not done below that.
    if (!g.shared) {
      const { next, undone } = g.pending.state();
      if (next > r.floor) {
        r.next = next;
        r.undone = toRuns(undone);
      }
    }
    return r;
  }

  /** Keeps `move` (a dead letter being stored, then done) until it settles. */
  moving(move: Promise<void>): void {
    this.moves.add(move);
    const forget = () => void this.moves.delete(move);
    move.then(forget, (err: unknown) => {
      forget();
      log.error(`a dead letter was stored, but marking it done failed: ${(err as Error).message}`);
    });
  }

  /**
   * Stops the floor timer and writes what moved since the last write. The dead letters being
   * stored are waited for first: the dead-letter topic's subscribers may have them already
   * (they are pushed before their fsync), and written undone they would come again after the
   * restart. One whose write fails is not tried again: the restart delivers it again.
   */
  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    // What was served so far is written before a wait a stalling disk can make long: a second
    // signal (exit at once) then loses none of it.
    if (this.moves.size > 0) await this.saveAtClose();
    // Shared store: the acks and naks gathered are written before the store closes. The naks
    // given back may return seqs at --max-deliver, which start more moves, whose acks are written
    // by the next round; nothing new is claimed once a group closes, so two rounds end it.
    for (let round = 0; round < 3; round++) {
      await Promise.allSettled([...this.moves]);
      for (const g of this.groups.values()) await g.shared?.close();
      if (this.moves.size === 0) break;
    }
    await this.saveAtClose();
  }

  private async saveAtClose(): Promise<void> {
    if (this.dirty) await this.save().catch((err) => log.error(`${this.store.describe()}: cannot write the ack floors of the queue groups: ${(err as Error).message}`));
  }
}

/**
 * Where the group of `r` stopped: every seq in [floor, next) not in `undone` is done; undefined
 * when the record has only `floor` (a file of an older version, or nothing above the floor).
 * `next` is kept within the log (`lastSeq`): seqs the log lost in a crash, when written again,
 * are new messages, not done ones.
 */
function savedState(r: GroupRecord, floor: number, lastSeq: number): { next: number; undone: number[] } | undefined {
  if (r.next === undefined) return undefined;
  const next = Math.max(floor, Math.min(r.next, lastSeq + 1));
  const undone: number[] = [];
  for (const [first, last] of r.undone ?? []) for (let seq = Math.max(first, floor); seq <= Math.min(last, next - 1); seq++) undone.push(seq);
  return { next, undone };
}

/** Ascending seqs as runs [first, last]: what is in flight comes in batches, so the file stays small. */
function toRuns(seqs: number[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const seq of seqs) {
    const last = runs[runs.length - 1];
    if (last && last[1] + 1 === seq) last[1] = seq;
    else runs.push([seq, seq]);
  }
  return runs;
}

/** A named group is shared by its members; a private one belongs to its only member. */
function keyOf(topic: string, name: string | undefined, member: number): string {
  return name === undefined ? `${topic}\0#${member}` : `${topic}\0${name}`;
}

/** The members among `subs` (all the subscriptions of a local broker whose session closed) give back what they hold. */
export function releaseMembers(subs: Iterable<Subscription>): void {
  for (const sub of subs) if (sub instanceof GroupMember) sub.releaseAll(undefined, false);
}
