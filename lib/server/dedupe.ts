/**
 * The dedupe window: per topic, the publisher message ids (`msgId`) stored within the last
 * `windowMs`, each with the seq it got. A publish whose id is in its topic's window is
 * answered with that seq and stores nothing, so a publisher that sends a message again after
 * a lost answer (the library does, with the same id) does not store it twice.
 *
 * Two shapes of id, one meaning (string equality):
 * - `P:n`, a prefix ending with ":" and a decimal number written without leading zeros (the
 *   library's `<producer>:<n>`, `mq pub --lines --msg-id KEY`'s `KEY:N`): kept as **runs**
 *   per prefix, "ids P:a … P:b have seqs s … s + (b - a)". A batch of the library is one run:
 *   one lookup and one entry per batch, not per message;
 * - any other id: one map entry (id → seq).
 *
 * Memory is bounded: at most `maxKeys` entries (runs and ids) for all topics together. Above
 * that the oldest are forgotten before their time (the ids counted in `evicted`): the window
 * is shorter than asked for while publishes outrun the bound. The ids are also stored with
 * their messages (lib/store), so a start rebuilds the window from the logs.
 */

import { DEFAULT_DEDUPE as DEFAULTS } from "../config.ts";
import { splitMsgId } from "../store/id-run.ts";

// Where the id format lives (beside its byte-level reader, runIdNumber): the callers here import it from this module.
export { splitMsgId };

/** An append in flight: a publish of one of its ids meanwhile waits for `seqs` (null: the append failed). */
export interface Pending {
  seqs: Promise<number[] | null>;
  /** Where this id's seq is in `seqs` (for a run: the seq of `from`). */
  index: number;
}

/** The ids `prefix + n` of one prefix in one topic: disjoint runs, ascending, from `head` on. */
export class Runs {
  from: number[] = [];
  to: number[] = [];
  seq: number[] = [];
  head = 0;
  /** Runs being appended, not stored yet (few: the batches in flight). */
  readonly pending: Array<Pending & { from: number; to: number }> = [];

  get size(): number {
    return this.from.length - this.head;
  }

  /** Index of the first run whose `to` is at least `n` (`from.length` when none). */
  private search(n: number): number {
    let lo = this.head;
    let hi = this.from.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.to[mid]! < n) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The seq of `prefix + n`, if stored. */
  find(n: number): number | undefined {
    const i = this.search(n);
    return i < this.from.length && this.from[i]! <= n ? this.seq[i]! + (n - this.from[i]!) : undefined;
  }

  /** True when no id from `a` to `b` is stored or being stored: the common case, one search. */
  free(a: number, b: number): boolean {
    const i = this.search(a);
    if (i < this.from.length && this.from[i]! <= b) return false;
    for (const p of this.pending) if (p.from <= b && a <= p.to) return false;
    return true;
  }

  pendingOf(n: number): (Pending & { from: number }) | undefined {
    for (const p of this.pending) if (p.from <= n && n <= p.to) return p;
    return undefined;
  }

  /** Adds the run `a`…`b` → `seq`…; it overlaps no stored run. */
  insert(a: number, b: number, seq: number): void {
    const i = this.search(a);
    if (i === this.from.length) {
      this.from.push(a);
      this.to.push(b);
      this.seq.push(seq);
    } else {
      this.from.splice(i, 0, a);
      this.to.splice(i, 0, b);
      this.seq.splice(i, 0, seq);
    }
  }

  /** Extends the last run by ids `n`…`to` when they continue it (ids and seqs both next); for a rebuild. */
  extend(n: number, seq: number, to = n): boolean {
    const last = this.from.length - 1;
    if (last < this.head || this.to[last] !== n - 1 || this.seq[last]! + (n - this.from[last]!) !== seq) return false;
    this.to[last] = to;
    return true;
  }

  /** Removes the run that starts at `a` with seq `seq`; returns how many ids it held (0: it is gone already). */
  remove(a: number, seq: number): number {
    const i = this.search(a);
    if (i >= this.from.length || this.from[i] !== a || this.seq[i] !== seq) return 0;
    const ids = this.to[i]! - a + 1;
    if (i === this.head) {
      this.head++;
      if (this.head === this.from.length) {
        this.from = [];
        this.to = [];
        this.seq = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.from.length) {
        this.from = this.from.slice(this.head);
        this.to = this.to.slice(this.head);
        this.seq = this.seq.slice(this.head);
        this.head = 0;
      }
    } else {
      this.from.splice(i, 1);
      this.to.splice(i, 1);
      this.seq.splice(i, 1);
    }
    return ids;
  }
}

/** One topic's ids in the window, and those being appended. */
export class TopicIds {
  /** Ids of the shape `P:n`, by prefix `P`. */
  readonly runs = new Map<string, Runs>();
  /** Other ids → seq. */
  readonly keys = new Map<string, number>();
  readonly pendingKeys = new Map<string, Pending>();

  runsOf(prefix: string): Runs {
    let r = this.runs.get(prefix);
    if (!r) this.runs.set(prefix, (r = new Runs()));
    return r;
  }
}

export interface DedupeOptions {
  /** How long an id is remembered after its message was appended; 0 turns deduplication off. */
  windowMs: number;
  /** Most entries remembered (a run of ids or one id), all topics together. */
  maxKeys: number;
}

export const DEFAULT_DEDUPE: DedupeOptions = DEFAULTS;

export class DedupeWindow {
  // Every entry added, oldest first, as parallel arrays with a moving head: where it is (a
  // Runs, or a topic's map of other ids), its key there (the run's first number, or the id),
  // its seq (to tell whether it is still there) and its append time.
  private owners: Array<Runs | Map<string, number>> = [];
  private keys: Array<number | string> = [];
  private seqs: number[] = [];
  private times: number[] = [];
  private head = 0;
  /** Ids forgotten before their time because of `maxKeys`. */
  evicted = 0;

  constructor(
    readonly windowMs: number,
    readonly maxKeys: number,
    /** Called when ids are forgotten before their time, with how many this time (the caller rate-limits its warning). */
    private readonly onEvict: (count: number, windowMs: number) => void = () => {},
  ) {
    if (!(Number.isSafeInteger(windowMs) && windowMs >= 0)) throw new RangeError(`Cannot keep a dedupe window of ${windowMs} ms: it must be an integer >= 0`);
    if (!(Number.isSafeInteger(maxKeys) && maxKeys >= 1)) throw new RangeError(`Cannot keep ${maxKeys} message ids: the bound must be an integer >= 1`);
  }

  get enabled(): boolean {
    return this.windowMs > 0;
  }

  /** Entries held: runs and single ids (some may be past the window until the next `expire`). */
  get size(): number {
    return this.keys.length - this.head;
  }

  /** The seq stored for `key` in this topic, or undefined. Exact as of the last `expire(now)`: call it first (publishes do). */
  find(ids: TopicIds, key: string): number | undefined {
    const split = splitMsgId(key);
    return split ? ids.runs.get(split.prefix)?.find(split.n) : ids.keys.get(key);
  }

  /** Remembers that `key` was stored in this topic as `seq` at `time`. Call `expire` after a batch of adds. */
  add(ids: TopicIds, key: string, seq: number, time: number): void {
    const split = splitMsgId(key);
    if (split) return this.addRun(ids.runsOf(split.prefix), split.n, split.n, seq, time);
    // An older entry of the same key stays in the queue until its turn; it no longer owns the key.
    ids.keys.set(key, seq);
    this.push(ids.keys, key, seq, time);
  }

  /** Remembers that ids `a`…`b` of `runs` were stored as `seq`… at `time`; none of them is stored already. */
  addRun(runs: Runs, a: number, b: number, seq: number, time: number): void {
    runs.insert(a, b, seq);
    this.push(runs, a, seq, time);
  }

  /**
   * For a rebuild from the log, oldest first: adds `key`, extending the run it continues when
   * it was stored in the same append (same time, next id, next seq).
   */
  addStored(ids: TopicIds, key: string, seq: number, time: number): void {
    const split = splitMsgId(key);
    if (split) {
      const runs = ids.runsOf(split.prefix);
      const last = this.keys.length - 1;
      // The newest entry is the newest run of these ids, appended at the same time: it grows.
      if (last >= this.head && this.owners[last] === runs && this.times[last] === time && this.keys[last] === runs.from[runs.from.length - 1] && runs.extend(split.n, seq)) return;
      // Stored twice (by a server with deduplication off): the first one counts.
      if (runs.find(split.n) !== undefined) return;
      return this.addRun(runs, split.n, split.n, seq, time);
    }
    if (!ids.keys.has(key)) this.add(ids, key, seq, time);
  }

  /**
   * addStored for a run read back from the log (MsgIdRun, lib/store/types.ts): `count` ids of one
   * append from `first` (`P` + n, which a run of more than one must start with) on, stored as
   * `seq`… — one entry, no string per id.
   */
  addStoredRun(ids: TopicIds, first: string, count: number, seq: number, time: number): void {
    if (count === 1) return this.addStored(ids, first, seq, time);
    const split = splitMsgId(first);
    if (!split) throw new RangeError(`a run of ${count} message ids must start with an id of the form P:n, not ${JSON.stringify(first)}`);
    const runs = ids.runsOf(split.prefix);
    const a = split.n;
    const b = a + count - 1;
    const last = this.keys.length - 1;
    if (last >= this.head && this.owners[last] === runs && this.times[last] === time && this.keys[last] === runs.from[runs.from.length - 1] && runs.extend(a, seq, b)) return;
    // Some of them stored before (by a server with deduplication off): id by id, the first one counts.
    if (!runs.free(a, b)) {
      for (let i = 0; i < count; i++) this.addStored(ids, `${split.prefix}${a + i}`, seq + i, time);
      return;
    }
    this.addRun(runs, a, b, seq, time);
  }

  private push(owner: Runs | Map<string, number>, key: number | string, seq: number, time: number): void {
    this.owners.push(owner);
    this.keys.push(key);
    this.seqs.push(seq);
    this.times.push(time);
  }

  /** Drops what was appended before `now - windowMs`, then the oldest while above `maxKeys`. */
  expire(now: number): void {
    const oldest = now - this.windowMs;
    const end = this.keys.length;
    let h = this.head;
    let early = 0;
    while (h < end && (this.times[h]! < oldest || end - h > this.maxKeys)) {
      const owner = this.owners[h]!;
      const key = this.keys[h]!;
      let gone = 0;
      if (owner instanceof Runs) gone = owner.remove(key as number, this.seqs[h]!);
      else if (owner.get(key as string) === this.seqs[h]) {
        owner.delete(key as string);
        gone = 1;
      }
      if (this.times[h]! >= oldest) early += gone;
      h++;
    }
    if (h === this.head) return;
    this.head = h;
    if (h === end) this.compact(true);
    else if (h > 1024 && h * 2 > end) this.compact(false);
    if (early > 0) {
      this.evicted += early;
      this.onEvict(early, this.windowMs);
    }
  }

  private compact(empty: boolean): void {
    if (empty) {
      this.owners = [];
      this.keys = [];
      this.seqs = [];
      this.times = [];
    } else {
      this.owners = this.owners.slice(this.head);
      this.keys = this.keys.slice(this.head);
      this.seqs = this.seqs.slice(this.head);
      this.times = this.times.slice(this.head);
    }
    this.head = 0;
  }

  /**
   * After a rebuild that added topics one after the other: puts the entries in time order,
   * so that `expire` drops the oldest of all topics first.
   */
  sort(): void {
    const order = Array.from({ length: this.size }, (_, i) => this.head + i).sort((a, b) => this.times[a]! - this.times[b]!);
    this.owners = order.map((i) => this.owners[i]!);
    this.keys = order.map((i) => this.keys[i]!);
    this.seqs = order.map((i) => this.seqs[i]!);
    this.times = order.map((i) => this.times[i]!);
    this.head = 0;
  }
}
