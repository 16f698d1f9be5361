/**
 * OpenFiles: the files of the topic store kept open, at most `max` at a time. Every topic
 * has a few files it writes and reads again and again (its segments, `head`, both copies of
 * `subscribers`); with many topics, keeping them all open runs the process out of file
 * descriptors (EMFILE). Each such file is a PooledFile instead: it is opened on first use,
 * stays open while it is used, and when the pool is full the least recently used one is
 * closed (fsynced first if it owes an fsync) and opened again when it is next used. A topic
 * being published to and read stays at the hot end, so it is never closed under its feet.
 *
 * A file is pinned while an fd taken from it is in use across an `await` (an fsync on the
 * thread pool): a pinned file is never closed, so its fd number is never reused under it.
 * Synchronous code may take `fd()` and use it at once: no other file of the pool is opened
 * in between, so none is closed in between.
 */
import * as fs from "node:fs";
import { logger } from "../log.ts";
import { fdatasyncAsync, openFileLimit } from "./fsutil.ts";
import { fsyncSeconds } from "./fsync-timing.ts";

const log = logger("store");

/** Closed at once when the kernel says EMFILE/ENFILE: this many of the coldest files, at least. */
const EVICT_ON_EMFILE = 8;

export interface PooledFileOptions {
  /** Flags of the first open ("w+" to create); later opens use `reopenFlags` (default "r+"). */
  flags?: string | number;
  reopenFlags?: string | number;
  mode?: number;
  /** Writes owe an fsync, done before the file is closed (default true; false for files never fsynced). */
  durable?: boolean;
}

export class OpenFiles {
  /** Open files, least recently used first (a Set keeps insertion order). */
  private readonly lru = new Set<PooledFile>();
  private newest: PooledFile | null = null;
  /** Counters for stats and tests: opens (first and again), closes to make room. */
  opens = 0;
  evictions = 0;
  private warnedEmfile = false;

  /** `max`: the most files open at once (Infinity: no bound). Pinned files may push it over. */
  constructor(readonly max: number) {
    if (!(max >= 1)) throw new RangeError(`OpenFiles: max must be at least 1, got ${max}`);
  }

  /** How many files of the pool are open now. */
  get open(): number {
    return this.lru.size;
  }

  /** A file opened now (so that a failure shows at once, e.g. when creating it). */
  openNow(file: string, options: PooledFileOptions = {}): PooledFile {
    const f = new PooledFile(this, file, options);
    f.fd();
    return f;
  }

  /** A file opened on first use. */
  lazy(file: string, options: PooledFileOptions = {}): PooledFile {
    return new PooledFile(this, file, options);
  }

  /** @internal Marks `f` most recently used. */
  touch(f: PooledFile): void {
    if (this.newest === f) return;
    this.lru.delete(f);
    this.lru.add(f);
    this.newest = f;
  }

  /** @internal Opens `f`'s file, closing the coldest files first when the pool is full. */
  acquire(f: PooledFile, file: string, flags: string | number, mode: number | undefined): number {
    while (this.lru.size >= this.max && this.evictColdest()) {}
    let fd: number;
    try {
      fd = fs.openSync(file, flags, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EMFILE" && code !== "ENFILE") throw err;
      // Other fds (connections) took the room: give back some of ours and try once more.
      const freed = this.makeRoom(Math.max(EVICT_ON_EMFILE, Math.floor(this.lru.size / 4)));
      if (freed === 0) throw err;
      if (!this.warnedEmfile) {
        this.warnedEmfile = true;
        log.warn(`the process ran out of file descriptors (${code}) with ${this.lru.size + freed} topic files open: closed the ${freed} least recently used; raise the open-file limit (ulimit -n) if this repeats`);
      }
      fd = fs.openSync(file, flags, mode);
    }
    this.opens++;
    this.lru.add(f);
    this.newest = f;
    return fd;
  }

  /** @internal `f` was closed. */
  forget(f: PooledFile): void {
    this.lru.delete(f);
    if (this.newest === f) this.newest = null;
  }

  /** Closes the least recently used file that is not pinned (and whose fd is below `below`); false when there is none. */
  private evictColdest(below = Infinity): boolean {
    for (const f of this.lru) {
      if (f.pinned || f.fdNumber >= below) continue;
      if (!f.release()) continue;
      this.evictions++;
      return true;
    }
    return false;
  }

  /**
   * Closes up to `count` of the least recently used files (fsyncing those that owe it) to
   * give their fds back; returns how many. Only files whose fd is below the process's
   * open-file limit are closed: the kernel hands out the lowest free fd, so freeing one at
   * or above the limit (it was lowered under the process) would only close a file in use.
   */
  makeRoom(count: number): number {
    const limit = openFileLimit() ?? Infinity;
    let n = 0;
    while (n < count && this.evictColdest(limit)) n++;
    return n;
  }
}

/**
 * The default bound: half of the process's open-file limit, the other half left to
 * connections and the rest of the server; at least 16.
 */
export function defaultMaxOpenFiles(): number {
  const limit = openFileLimit() ?? 1024;
  return Math.max(16, Math.floor(limit / 2));
}

/** One file of an OpenFiles pool: open while used, closed when the pool needs room. */
export class PooledFile {
  private fdNum = -1;
  private flags: string | number;
  private readonly reopenFlags: string | number;
  private readonly mode: number | undefined;
  private readonly durable: boolean;
  private pins = 0;
  /** Written since the last fsync (only counted for durable files); may stay true while the file is closed (`lazily` below). */
  private owed = false;
  /** Some of what is owed must be fsynced before the file is closed (all but lazy writes). */
  private owedAtClose = false;
  private writes = 0;
  private closedForGood = false;
  /** An fsync before a close failed: the next sync throws this (see throwFailedSync). */
  private failedSync: Error | null = null;

  constructor(
    private readonly pool: OpenFiles,
    readonly file: string,
    options: PooledFileOptions,
  ) {
    this.flags = options.flags ?? "r+";
    this.reopenFlags = options.reopenFlags ?? "r+";
    this.mode = options.mode;
    this.durable = options.durable ?? true;
  }

  /** The fd, opening the file if it is closed; use it at once (or pin the file). */
  fd(): number {
    if (this.fdNum < 0) {
      if (this.closedForGood) throw new Error(`${this.file}: closed`);
      this.fdNum = this.pool.acquire(this, this.file, this.flags, this.mode);
      // A file created by the first open is opened as it is from then on.
      this.flags = this.reopenFlags;
    } else this.pool.touch(this);
    return this.fdNum;
  }

  /** The fd while open, else -1 (without opening it, unlike `fd()`). */
  get fdNumber(): number {
    return this.fdNum;
  }

  get isOpen(): boolean {
    return this.fdNum >= 0;
  }

  get pinned(): boolean {
    return this.pins > 0;
  }

  /** True while written bytes wait for an fsync. */
  get owesSync(): boolean {
    return this.owed;
  }

  /** Opens the file if needed and keeps it open until `unpin`; returns the fd. */
  pin(): number {
    const fd = this.fd();
    this.pins++;
    return fd;
  }

  unpin(): void {
    this.pins--;
  }

  /**
   * Records a write (or truncation) not yet fsynced: it is fsynced before the file is closed.
   * `lazily`: a write nothing waits for the disk for (a record file's cursor moves, which a
   * crash may lose): closing the file to make room does not fsync it — with more files than
   * the pool holds, every ack of a topic closed another topic's file, each after an fsync on
   * the event loop (docs/benchmarks.md, "10,000 topics"). The next `sync` still covers it,
   * opening the file again if it was closed meanwhile.
   */
  wrote(lazily = false): void {
    this.writes++;
    if (!this.durable) return;
    this.owed = true;
    if (!lazily) this.owedAtClose = true;
  }

  /**
   * Makes what was written durable: fdatasyncs (on the thread pool) if the file owes it,
   * opening it again if it was closed with lazy writes unsynced.
   */
  async sync(): Promise<void> {
    this.throwFailedSync();
    if (!this.owed || this.closedForGood) return;
    const fd = this.pin();
    const writes = this.writes;
    const started = performance.now();
    try {
      await fdatasyncAsync(fd);
      fsyncSeconds.observe((performance.now() - started) / 1000);
    } finally {
      this.unpin();
    }
    if (this.writes === writes) this.owed = this.owedAtClose = false;
  }

  /**
   * For a sync of the whole file system (syncfs, lib/store/commit-syncs.ts) about to start:
   * the returned function, called once it succeeded, records the file synced unless it was
   * written meanwhile. A closed file needs no reopening: syncfs writes back the page cache.
   */
  syncedBy(): () => void {
    const writes = this.writes;
    return () => {
      if (this.writes === writes && !this.failedSync) this.owed = this.owedAtClose = false;
    };
  }

  /** True while an fsync before a close failed and no sync has reported it yet. */
  get syncFailed(): boolean {
    return this.failedSync !== null;
  }

  /**
   * The error of a failed fsync before a close, once: the kernel reports a write-back error
   * once per open file, so that fsync took it and the next one on this fd would return 0.
   */
  private throwFailedSync(): void {
    const err = this.failedSync;
    if (!err) return;
    this.failedSync = null;
    throw err;
  }

  /** `sync` on the event loop: fdatasync without the thread pool's hops (lib/store/sync-place.ts); returns the ms it took. */
  syncOnLoop(): number {
    this.throwFailedSync();
    if (!this.owed || this.closedForGood) return 0;
    const fd = this.openFd();
    const writes = this.writes;
    const started = performance.now();
    fs.fdatasyncSync(fd);
    const ms = performance.now() - started;
    fsyncSeconds.observe(ms / 1000);
    if (this.writes === writes) this.owed = this.owedAtClose = false;
    return ms;
  }

  /** `sync` without leaving the event loop (opening the file again if it was closed owing lazy writes). */
  syncNow(): void {
    this.throwFailedSync();
    if (!this.owed || this.closedForGood) return;
    fs.fsyncSync(this.openFd());
    this.owed = this.owedAtClose = false;
  }

  /**
   * The fd as it is, or opened again when the file was closed owing lazy writes. Not `fd()` on
   * an open file: marking it used would move it in the pool's LRU while `evictColdest` walks
   * that, which would then come to it again and fsync it a second time.
   */
  private openFd(): number {
    return this.fdNum >= 0 ? this.fdNum : this.fd();
  }

  /**
   * Closes the file to make room, fsyncing it first if it owes that; it opens again on
   * next use. False (and still open) when it is pinned or the fsync failed.
   */
  release(): boolean {
    if (this.fdNum < 0) return true;
    if (this.pins > 0) return false;
    // Kept open until its owner's sync has reported the error of the last try.
    if (this.failedSync) return false;
    if (this.owedAtClose) {
      try {
        this.syncNow();
      } catch (err) {
        // Kept open, the error kept for its owner's next sync (which would otherwise return 0).
        this.failedSync = err as Error;
        log.error(`${this.file}: fsync before closing it failed: ${(err as Error).message}`);
        return false;
      }
    }
    this.closeFd();
    return true;
  }

  /** Closes the fd without fsync (the file was replaced or deleted); it opens again on next use. */
  reset(): void {
    this.owed = this.owedAtClose = false;
    this.failedSync = null;
    if (this.fdNum >= 0) this.closeFd();
  }

  /** Closes the file for good, after the fsync it owes (unless `sync` is false). */
  close(sync = true): void {
    try {
      if (sync) this.syncNow();
    } finally {
      this.closedForGood = true;
      this.owed = this.owedAtClose = false;
      if (this.fdNum >= 0) this.closeFd();
    }
  }

  private closeFd(): void {
    const fd = this.fdNum;
    this.fdNum = -1;
    this.pool.forget(this);
    fs.closeSync(fd);
  }
}

/** The pool of callers that give none: no bound, as if every file were simply kept open. */
export const UNBOUNDED = new OpenFiles(Infinity);
