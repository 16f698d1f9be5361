/**
 * A queue group (or private --max-deliver subscription) on a store several servers share
 * (PostgreSQL; docs/scale-out.md): each message goes to ONE member across all servers. The
 * seqs come from the store's claims (lib/store/pg/group-claims.ts): a server claims a batch
 * for one of its members (up to the member's room), so no other server delivers them; acks,
 * naks and delivery counts (--max-deliver) are kept there, and the claims of a server that
 * died are claimed again by the others.
 *
 * In memory a server keeps only what it delivers now (the group's PendingSet: member, count,
 * bytes of each seq in flight here). What may be claimable is a hint (`backlog`): a new
 * message of the topic (appended here, or an `appended` event), seqs given back here, and a
 * poll every SHARED_GROUP_POLL_MS for what other servers gave back or left behind when they died.
 */
import { errorText, logger } from "../log.ts";
import type { GroupClaim, GroupClaims, StoredMessage } from "../store/types.ts";
import { messageBytes } from "../wire/messages.ts";
import type { Group } from "./group.ts";

const log = logger("server");

/** How often a group looks for seqs given back by other servers or left by a dead one. */
export const SHARED_GROUP_POLL_MS = 500;
/** The group's floor (retention, stats) is read from the store every this many polls. */
const FLOOR_EVERY_POLLS = 4;
/** A store write that failed (acks, seqs given back) is tried again after this. */
const RETRY_MS = 500;
/** A failing store is logged at most this often per group. */
const ERROR_LOG_MS = 10_000;

export class SharedGroup {
  /** Raised by what may have made seqs claimable; `checkedHints` is its value when a claim last found no more. */
  private hints = 0;
  private checkedHints = -1;
  /** `hints` when a claim last found nothing to deliver again: until it moves, claims ask only for new seqs (one statement less). */
  private againChecked = -1;
  /** The topic's last seq when a claim last found no more. */
  private checkedLast = 0;
  private started = false;
  /** Store writes of this turn of the event loop, made as one call each. */
  private acks: number[] = [];
  private naks: number[] = [];
  private releases: number[] = [];
  private flushScheduled = false;
  /** Store writes in progress (close waits for them). */
  private readonly writing = new Set<Promise<unknown>>();
  private polls = 0;
  /** Claimed ahead (after a full batch) for the next take here, by any member; since when. */
  private spare: GroupClaim[] = [];
  private spareSince = 0;
  /** The claim ahead in progress: a take waits for it rather than claim beside it. */
  private ahead: Promise<void> | null = null;
  private lastErrorLog = 0;
  /** The server is stopping: nothing more is claimed. */
  private closing = false;
  /** The group's lowest unacknowledged seq across servers, as last read. */
  floor: number;

  constructor(
    private readonly group: Group,
    private readonly claims: GroupClaims,
    /** The group's key in the store: its name, or `#ID` for a private group. */
    readonly key: string,
    startSeq: number,
  ) {
    this.floor = startSeq;
  }

  /**
   * The group starts at its first `floor` unless another server made it already: then it keeps
   * its position, and the floor is the group's (claims never start above it). Idempotent.
   */
  async start(): Promise<void> {
    if (this.started) return;
    await this.claims.start(this.group.topic.name, this.key, this.floor);
    this.floor = await this.claims.floor(this.group.topic.name, this.key, this.floor);
    this.started = true;
  }

  /** Messages may be claimable: new ones, or some given back; or claimed ahead and not yet taken. */
  get backlog(): boolean {
    return this.spare.length > 0 || this.hints !== this.checkedHints || this.group.topic.log.lastSeq > this.checkedLast;
  }

  /** Something may have been given back (here, by another server, or left by a dead one): members here get a turn. */
  private wake(): void {
    this.hints++;
    this.group.pumpMembers();
  }

  /**
   * Up to `count` messages (about `maxBytes`) for `member`, claimed from the store (in flight
   * to `member` here, bytes -1, before they are read); those that cannot be sent go back.
   */
  async take(member: number, count: number, maxBytes: number): Promise<StoredMessage[]> {
    if (this.closing) return [];
    const topic = this.group.topic;
    if (this.ahead) await this.ahead;
    let claimed = this.spare.splice(0, count);
    if (claimed.length < count) {
      const more = await this.claim(count - claimed.length);
      if (more.length > 0) claimed = claimed.concat(more).sort((x, y) => x.seq - y.seq);
    }
    // The server began to stop meanwhile: back for the other servers, not counted.
    if (this.closing) {
      for (const c of claimed) this.released(c.seq);
      return [];
    }
    // A full batch: more is likely waiting. The next batch is claimed while this one is read
    // and sent, so that a member's pushes do not wait for two round trips each (claim, read).
    if (claimed.length === count && !this.ahead && !this.closing) {
      const ahead: Promise<void> = this.claim(count)
        .then((more) => {
          this.spare.push(...more);
          this.spareSince = Date.now();
        })
        .finally(() => {
          if (this.ahead === ahead) this.ahead = null;
        });
      this.ahead = ahead;
    }
    const seqs: number[] = [];
    for (const c of claimed) {
      this.group.pending.sent(c.seq, member, c.deliveries, -1);
      // Past the limit: taken over from a server that died while it dead-lettered it.
      if (this.group.maxDeliver !== undefined && c.deliveries > this.group.maxDeliver) this.group.retire(c.seq, c.deliveries - 1);
      else seqs.push(c.seq);
    }
    // Runs of consecutive seqs, one read each; a copy when there are several (a read may reuse its buffer).
    const runs: Array<[number, number]> = [];
    for (let i = 0; i < seqs.length; ) {
      let j = i + 1;
      while (j < seqs.length && seqs[j] === seqs[j - 1]! + 1) j++;
      runs.push([seqs[i]!, seqs[j - 1]!]);
      i = j;
    }
    const out: StoredMessage[] = [];
    let budget = Math.max(1, maxBytes);
    for (const [first, last] of runs) {
      if (budget <= 0) {
        for (let seq = first; seq <= last; seq++) this.group.unsend(seq);
        continue;
      }
      let read: StoredMessage[];
      try {
        read = await topic.log.read(first, last - first + 1, budget);
      } catch (err) {
        log.error(`topic ${topic.name}: cannot read from seq ${first} for a queue group:`, err);
        for (let seq = first; seq <= last; seq++) this.group.unsend(seq);
        continue;
      }
      let expected = first;
      for (const m of read) {
        if (m.seq > last) break;
        for (; expected < m.seq; expected++) this.group.done(expected); // trimmed or lost: nothing left to deliver
        out.push(runs.length > 1 ? { ...m, data: m.data.slice() } : m);
        budget -= messageBytes(m);
        expected = m.seq + 1;
      }
      // After the last one read: gone when the read found nothing up to `last`, else not read (stopped by the bytes).
      const gone = read.length === 0 || read[read.length - 1]!.seq > last;
      for (; expected <= last; expected++) {
        if (gone) this.group.done(expected);
        else this.group.unsend(expected);
      }
    }
    return out;
  }

  /** Up to `count` seqs claimed for this server ([] when the store failed: tried again at the next poll). */
  private async claim(count: number): Promise<GroupClaim[]> {
    const topic = this.group.topic;
    const hints = this.hints;
    const lastSeq = topic.log.lastSeq;
    let claimed: GroupClaim[];
    try {
      await this.start();
      // From the floor at least (never below what the group has done, should its cursor be gone), and past what retention trimmed.
      claimed = await this.claims.claim(topic.name, this.key, count, Math.max(topic.log.firstSeq, this.floor), lastSeq, this.againChecked !== hints);
    } catch (err) {
      this.failed("cannot claim messages (tried again at the next poll)", err);
      return [];
    }
    if (claimed.length < count) {
      this.checkedHints = hints;
      this.againChecked = hints;
      this.checkedLast = Math.max(this.checkedLast, lastSeq);
    }
    return claimed;
  }

  /** Claims no member took within a poll (members full, or gone): back for any server, not counted. */
  private releaseSpare(): void {
    for (const c of this.spare.splice(0)) this.released(c.seq);
  }

  /** `seq` is done here (acknowledged, dead-lettered, gone from the log): acknowledged in the store. */
  acked(seq: number): void {
    this.acks.push(seq);
    this.schedule();
  }

  /** `seq` was delivered and not acknowledged (a nak, its member left): any server may deliver it again, counted. */
  gaveBack(seq: number): void {
    this.naks.push(seq);
    this.schedule();
  }

  /** `seq` was never sent, or its broker's session closed: back for any server, this delivery not counted. */
  released(seq: number): void {
    this.releases.push(seq);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** The writes of this turn, one call each; what fails is tried again after RETRY_MS. */
  private flush(): void {
    this.flushScheduled = false;
    const topic = this.group.topic.name;
    const { acks, naks, releases } = this;
    this.acks = [];
    this.naks = [];
    this.releases = [];
    if (acks.length > 0) this.write("cannot record acknowledgements", () => this.claims.ack(topic, this.key, acks), () => this.acks.push(...acks));
    if (releases.length > 0) {
      this.write("cannot give messages back", async () => {
        await this.claims.giveBack(topic, this.key, releases, false, undefined);
        this.wake();
      }, () => this.releases.push(...releases));
    }
    if (naks.length > 0) {
      this.write("cannot give messages back", async () => {
        // Those at --max-deliver stay this server's: it dead-letters them, then acknowledges them.
        for (const c of await this.claims.giveBack(topic, this.key, naks, true, this.group.maxDeliver)) this.group.retire(c.seq, c.deliveries);
        this.wake();
      }, () => this.naks.push(...naks));
    }
  }

  private write(what: string, work: () => Promise<unknown>, retry: () => void): void {
    const done = work().catch((err) => {
      this.failed(`${what} (tried again in ${RETRY_MS} ms)`, err);
      setTimeout(() => {
        retry();
        this.schedule();
      }, RETRY_MS).unref();
    });
    this.writing.add(done);
    void done.finally(() => this.writing.delete(done));
  }

  /** Every SHARED_GROUP_POLL_MS: seqs given back or left by dead servers may be claimable; now and then the floor is read. */
  poll(): void {
    if (this.spare.length > 0 && !this.ahead && Date.now() - this.spareSince >= SHARED_GROUP_POLL_MS) this.releaseSpare();
    if (this.group.members.size === 0) return;
    this.wake();
    if (this.polls++ % FLOOR_EVERY_POLLS === 0) void this.readFloor();
  }

  private async readFloor(): Promise<void> {
    try {
      const floor = await this.claims.floor(this.group.topic.name, this.key, this.group.topic.log.firstSeq);
      // Only up: a group whose rows are gone (forgotten meanwhile) does not move back.
      if (floor <= this.floor) return;
      this.floor = floor;
      for (const m of this.group.members.values()) m.acked = floor;
    } catch (err) {
      this.failed("cannot read the group's floor", err);
    }
  }

  /**
   * The server stops: what is in flight here goes back for the other servers, not counted
   * (as when a local broker's session closes), and the writes gathered are made.
   */
  async close(): Promise<void> {
    await this.stopClaiming();
    for (const m of this.group.members.values()) m.releaseAll(undefined, false);
    if (this.flushScheduled) this.flush();
    await Promise.all([...this.writing]);
  }

  /** The group has no member here any more (it may be made again, with a new SharedGroup): what was claimed ahead goes back. */
  async discard(): Promise<void> {
    await this.stopClaiming();
    if (this.flushScheduled) this.flush();
    await Promise.all([...this.writing]);
  }

  /** Nothing more is claimed; what was claimed ahead goes back. */
  private async stopClaiming(): Promise<void> {
    this.closing = true;
    if (this.ahead) await this.ahead;
    this.releaseSpare();
  }

  private failed(what: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_MS) return;
    this.lastErrorLog = now;
    log.warn(`topic ${this.group.topic.name}, queue group ${this.key}: ${what}: ${errorText(err)} (logged at most every ${ERROR_LOG_MS / 1000} s)`);
  }
}
