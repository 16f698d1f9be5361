/**
 * The dedupe window: per topic, the publisher message ids (`msgId`) stored within the last
 * `windowMs`, each with the seq it got. A publish whose id is in its topic's window is
 * answered with that seq and stores nothing, so a publisher that sends a message again after
 * a lost answer (the library does, with the same id) does not store it twice.
 *
 * Memory is bounded: at most `maxKeys` ids for all topics together. Above that the oldest
 * are forgotten before their time (counted in `evicted`): the window is shorter than asked
 * for as long as publishes outrun the bound. The ids themselves are stored with their
 * messages (lib/store), so a start rebuilds the window from the logs.
 *
 * Cost per id: one map entry (id → seq) and three array slots; no object per id.
 */

/** Appends in flight with ids: a publish of the same id meanwhile waits for `seqs` (null: the append failed). */
export interface PendingAppends {
  /** The ids being appended, in order; `seqs` resolves to their seqs, in the same order. */
  keys: string[];
  seqs: Promise<number[] | null>;
}

/** One topic's ids: stored ones (id → seq), and appends in flight that carry an id. */
export class TopicIds {
  readonly stored = new Map<string, number>();
  /**
   * Ids whose append is in flight: a second publish of the same id (a retry that overtook
   * the answer to the first) waits for it and gets its seq.
   */
  readonly pending = new Map<string, PendingAppends>();
}

export interface DedupeOptions {
  /** How long an id is remembered after its message was appended; 0 turns deduplication off. */
  windowMs: number;
  /** Most ids remembered, all topics together. */
  maxKeys: number;
}

export const DEFAULT_DEDUPE: DedupeOptions = { windowMs: 2 * 60_000, maxKeys: 1_000_000 };

export class DedupeWindow {
  // Every id added, oldest first, as parallel arrays with a moving head: its key, the map it
  // went into, its seq (to tell whether the map still holds this entry) and its append time.
  private keys: string[] = [];
  private owners: Array<Map<string, number>> = [];
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

  /** Ids held (some may be past the window until the next `expire`). */
  get size(): number {
    return this.keys.length - this.head;
  }

  /**
   * The seq stored for `key` in this topic, or undefined: one map lookup. Exact as of the
   * last `expire(now)`: call it first (publishes do).
   */
  find(ids: TopicIds, key: string): number | undefined {
    return ids.stored.get(key);
  }

  /** Remembers that `key` was stored in this topic as `seq` at `time`. Call `expire` after a batch of adds. */
  add(ids: TopicIds, key: string, seq: number, time: number): void {
    // An older entry of the same key stays in the queue until its turn; it no longer owns the key.
    ids.stored.set(key, seq);
    this.keys.push(key);
    this.owners.push(ids.stored);
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
      if (owner.get(key) === this.seqs[h]) {
        owner.delete(key);
        if (this.times[h]! >= oldest) early++;
      }
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
      this.keys = [];
      this.owners = [];
      this.seqs = [];
      this.times = [];
    } else {
      this.keys = this.keys.slice(this.head);
      this.owners = this.owners.slice(this.head);
      this.seqs = this.seqs.slice(this.head);
      this.times = this.times.slice(this.head);
    }
    this.head = 0;
  }

  /**
   * After a rebuild that added topics one after the other: puts the ids in time order, so
   * that `expire` drops the oldest of all topics first.
   */
  sort(): void {
    const order = Array.from({ length: this.size }, (_, i) => this.head + i).sort((a, b) => this.times[a]! - this.times[b]!);
    this.keys = order.map((i) => this.keys[i]!);
    this.owners = order.map((i) => this.owners[i]!);
    this.seqs = order.map((i) => this.seqs[i]!);
    this.times = order.map((i) => this.times[i]!);
    this.head = 0;
  }
}
