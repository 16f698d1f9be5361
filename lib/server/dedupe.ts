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
 */

interface Entry {
  key: string;
  seq: number;
  /** Append time of the message, ms since the epoch: the entry is in the window while time >= now - windowMs. */
  time: number;
  /** The map of the topic the entry is in, to take it out again. */
  owner: Map<string, Entry>;
}

/** One topic's ids: stored ones, and appends in flight that carry an id. */
export class TopicIds {
  readonly stored = new Map<string, Entry>();
  /**
   * Ids whose append is in flight: a second publish of the same id (a retry that overtook
   * the answer to the first) waits for it and gets its seq, or null when it failed.
   */
  readonly pending = new Map<string, Promise<number | null>>();
}

export interface DedupeOptions {
  /** How long an id is remembered after its message was appended; 0 turns deduplication off. */
  windowMs: number;
  /** Most ids remembered, all topics together. */
  maxKeys: number;
}

export const DEFAULT_DEDUPE: DedupeOptions = { windowMs: 2 * 60_000, maxKeys: 1_000_000 };

export class DedupeWindow {
  /** Every entry, oldest first (by when it was added), with a moving head. */
  private queue: Entry[] = [];
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

  /** Entries held (some may be past the window, waiting to be dropped by `expire`). */
  get size(): number {
    return this.queue.length - this.head;
  }

  /** The seq stored for `key` in this topic within the window, or undefined. One map lookup. */
  find(ids: TopicIds, key: string, now: number): number | undefined {
    const e = ids.stored.get(key);
    return e !== undefined && e.time >= now - this.windowMs ? e.seq : undefined;
  }

  /** Remembers that `key` was stored in this topic as `seq` at `time`. Call `expire` after a batch of adds. */
  add(ids: TopicIds, key: string, seq: number, time: number): void {
    const e: Entry = { key, seq, time, owner: ids.stored };
    // An older entry of the same key (past the window) stays in the queue until its turn; it no longer owns the key.
    ids.stored.set(key, e);
    this.queue.push(e);
  }

  /** Drops what is past the window, then the oldest while above `maxKeys`. */
  expire(now: number): void {
    const oldest = now - this.windowMs;
    let early = 0;
    while (this.head < this.queue.length) {
      const e = this.queue[this.head]!;
      const over = this.queue.length - this.head > this.maxKeys;
      if (e.time >= oldest && !over) break;
      if (e.time >= oldest && e.owner.get(e.key) === e) early++;
      if (e.owner.get(e.key) === e) e.owner.delete(e.key);
      this.queue[this.head++] = undefined as never;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (early > 0) {
      this.evicted += early;
      this.onEvict(early, this.windowMs);
    }
  }

  /**
   * After a rebuild that added topics one after the other: puts the entries in time order,
   * so that `expire` drops the oldest of all topics first.
   */
  sort(): void {
    this.queue = this.queue.slice(this.head).sort((a, b) => a.time - b.time);
    this.head = 0;
  }
}
