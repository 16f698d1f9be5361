/**
 * Group commit across topics (`--fsync always`). Each topic's log commits on its own, and
 * each commit used to fdatasync its own file: publishes spread over many topics paid one
 * fdatasync each, and concurrent fdatasyncs barely overlap on a disk that flushes its cache
 * for each (docs/benchmarks.md, "Many topics: one syncfs for many commits"): 100 topics
 * published round robin ran at a tenth of one topic's rate.
 *
 * Per file system: while one commit's sync runs, the commits of other topics that arrive
 * wait, their files pinned (an eviction would fsync one on the loop and take its fd's error);
 * when it is done they are synced together, with `minFiles` files or more by one syncfs(2) on
 * a worker thread (it writes back everything dirty on that file system, with one cache flush),
 * fewer by an fdatasync each. A lone topic never waits (its next commit starts after its
 * previous one's sync); where syncfs is not used nothing waits.
 *
 * syncfs is used only where it reports what fdatasync would: Linux 5.17 or later (from 5.8 it
 * reports write-back errors, from 5.17 those of the file system's own sync), on ext2/3/4, xfs,
 * btrfs or tmpfs (FUSE and network file systems may send nothing to their server). It reports
 * a write-back error once per open file (the directory fd here), so once one fails syncfs is
 * not used again on that file system: the commits of that group, and all later ones, fdatasync
 * their own files, whose fds report the errors of their own pages. It also waits for what
 * other processes wrote to the file system: one slower than `slowMs` sends its commits back
 * to an fdatasync each for `backoffMs`. Each file system has its own worker, back-off and
 * failure. Not covered (docs/storage.md): a write ext4 drops without recording an error, and
 * a file system made read-only on an older kernel, where syncfs returns 0 and fdatasync would
 * not.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { logger } from "../log.ts";
import { canSyncFileSystem } from "./fsutil.ts";
import { fsyncSeconds } from "./fsync-timing.ts";
import type { PooledFile } from "./open-files.ts";

const log = logger("store");

/** A file system the logs are on, by device; `fd` a directory on it, kept open for syncfs. */
export interface FileSystemRef {
  readonly dev: number;
  readonly fd: number;
  /** Its type is one whose syncfs makes durable what fdatasync would. */
  readonly syncfsSafe: boolean;
}

/** statfs f_type of the file systems whose syncfs is trusted: ext2/3/4, xfs, btrfs, tmpfs. */
const SYNCFS_TYPES = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994]);

const fileSystems = new Map<number, FileSystemRef>();

/** The file system holding `dir` (one object per device), or undefined if it cannot be told. */
export function fileSystemOf(dir: string): FileSystemRef | undefined {
  try {
    const dev = fs.statSync(dir).dev;
    let ref = fileSystems.get(dev);
    if (!ref) {
      // A directory of that device, open for the process's life (a deleted one still names the device).
      ref = { dev, fd: fs.openSync(dir, "r"), syncfsSafe: SYNCFS_TYPES.has(fs.statfsSync(dir).type) };
      fileSystems.set(dev, ref);
    }
    return ref;
  } catch {
    return undefined;
  }
}

/** syncfs(2) off the event loop: a worker thread made on first use (from source: nothing to add to the build). */
export class SyncfsWorker {
  private worker: Worker | null = null;
  private next = 1;
  private readonly waiting = new Map<number, PromiseWithResolvers<void>>();

  sync(ref: { fd: number }): Promise<void> {
    const worker = (this.worker ??= this.start());
    const id = this.next++;
    const reply = Promise.withResolvers<void>();
    this.waiting.set(id, reply);
    worker.postMessage({ id, fd: ref.fd });
    return reply.promise;
  }

  private start(): Worker {
    const source = `
      import { dlopen, FFIType, read } from "bun:ffi";
      const libc = dlopen("libc.so.6", { syncfs: { args: [FFIType.i32], returns: FFIType.i32 }, __errno_location: { args: [], returns: FFIType.ptr } });
      self.onmessage = (e) => {
        const rc = libc.symbols.syncfs(e.data.fd);
        postMessage({ id: e.data.id, rc, errno: rc === 0 ? 0 : read.i32(libc.symbols.__errno_location(), 0) });
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "application/javascript" })));
    worker.onmessage = (e: MessageEvent<{ id: number; rc: number; errno: number }>) => {
      const reply = this.waiting.get(e.data.id);
      this.waiting.delete(e.data.id);
      if (e.data.rc === 0) reply?.resolve();
      else reply?.reject(Object.assign(new Error(`syncfs failed: ${errnoName(e.data.errno)}`), { errno: e.data.errno }));
    };
    worker.onerror = (e) => {
      const err = new Error(`the syncfs worker failed: ${e.message}`);
      for (const reply of this.waiting.values()) reply.reject(err);
      this.waiting.clear();
      worker.terminate();
      if (this.worker === worker) this.worker = null;
    };
    // Nothing waits for it at exit: the store's close fsyncs what it owes itself.
    worker.unref();
    return worker;
  }
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** Linux 5.17 or later, where libc's syncfs loads. */
export function syncfsUsable(): boolean {
  if (process.platform !== "linux") return false;
  const [major = 0, minor = 0] = os.release().split(/[.-]/).map(Number);
  return (major > 5 || (major === 5 && minor >= 17)) && canSyncFileSystem();
}

interface Waiting {
  files: PooledFile[];
  done: PromiseWithResolvers<void>;
}

/** One file system's commits: the sync running, those waiting for it, and its syncfs's state. */
export interface Lane {
  inFlight: number;
  queue: Waiting[];
  /** Until when (performance.now()) a slow syncfs sent the commits back to fdatasyncs. */
  offUntil: number;
  /** A syncfs failed: its commits fdatasync their own files from then on. */
  failed: boolean;
}

export class CommitSyncs {
  /** Files of one file system from which one syncfs replaces their fdatasyncs. */
  minFiles = 3;
  slowMs = 100;
  backoffMs = 30_000;
  /** Counts, for tests. */
  syncfsCalls = 0;
  syncfsFiles = 0;
  private readonly lanes = new Map<FileSystemRef, Lane>();

  /** What runs a syncfs, or null where there is none (asked when a commit could use one). */
  constructor(private readonly syncfsRunner: () => { sync(ref: FileSystemRef): Promise<void> } | null) {}

  /** The state of a file system's commits (made on first use). */
  lane(ref: FileSystemRef): Lane {
    let lane = this.lanes.get(ref);
    if (!lane) this.lanes.set(ref, (lane = { inFlight: 0, queue: [], offUntil: -Infinity, failed: false }));
    return lane;
  }

  private usable(ref: FileSystemRef | undefined): ref is FileSystemRef {
    if (ref === undefined || !ref.syncfsSafe) return false;
    const lane = this.lane(ref);
    return !lane.failed && performance.now() >= lane.offUntil && this.syncfsRunner() !== null;
  }

  /** Resolves once `files` (written by one commit) are durable; rejects if their sync failed. */
  sync(files: PooledFile[], fileSystem: FileSystemRef | undefined): Promise<void> {
    // Nothing to share the sync with: an fdatasync each, at once.
    if (!this.usable(fileSystem)) return fdatasyncEach(files);
    const lane = this.lane(fileSystem);
    if (lane.inFlight === 0) return this.track(lane, fileSystem, fdatasyncEach(files));
    const pinned: PooledFile[] = [];
    try {
      for (const f of files) {
        f.pin();
        pinned.push(f);
      }
    } catch (err) {
      for (const f of pinned) f.unpin();
      return Promise.reject(err);
    }
    const done = Promise.withResolvers<void>();
    lane.queue.push({ files, done });
    return done.promise.finally(() => {
      for (const f of files) f.unpin();
    });
  }

  private track(lane: Lane, ref: FileSystemRef, running: Promise<void>): Promise<void> {
    lane.inFlight++;
    return running.finally(() => {
      if (--lane.inFlight === 0 && lane.queue.length > 0) this.flush(lane, ref);
    });
  }

  /** Syncs what waited: one syncfs if it holds enough files, else an fdatasync each. Never rejects: each commit settles on its own. */
  private flush(lane: Lane, ref: FileSystemRef): void {
    const waited = lane.queue;
    lane.queue = [];
    const files = new Set(waited.flatMap((w) => w.files));
    void this.track(lane, ref, files.size >= this.minFiles && this.usable(ref) ? this.syncAll(lane, ref, [...files], waited) : settleEach(waited));
  }

  private async syncAll(lane: Lane, ref: FileSystemRef, files: PooledFile[], waited: Waiting[]): Promise<void> {
    // Taken before it starts: a file written again meanwhile still owes its sync.
    const synced = files.map((f) => f.syncedBy());
    const started = performance.now();
    this.syncfsCalls++;
    this.syncfsFiles += files.length;
    try {
      await this.syncfsRunner()!.sync(ref);
    } catch (err) {
      // Its error may belong to any file of the file system, and is not reported again to this fd.
      lane.failed = true;
      log.warn(`syncfs failed (${(err as Error).message}): the commits of the topics on that file system fdatasync their own files from now on, which reports the errors of their own writes`);
      return settleEach(waited);
    }
    const ms = performance.now() - started;
    fsyncSeconds.observe(ms / 1000);
    for (const done of synced) done();
    // A file whose fsync before a close failed (before it was pinned) owes its commit that error.
    const failed = waited.filter((w) => w.files.some((f) => f.syncFailed));
    for (const w of waited) if (!w.files.some((f) => f.syncFailed)) w.done.resolve();
    if (failed.length > 0) await settleEach(failed);
    if (ms > this.slowMs) {
      lane.offUntil = performance.now() + this.backoffMs;
      log.debug(`a syncfs for ${files.length} files took ${ms.toFixed(0)} ms (other writes to the file system?): an fdatasync each for ${this.backoffMs / 1000} s`);
    }
  }
}

function fdatasyncEach(files: PooledFile[]): Promise<void> {
  return files.length === 1 ? files[0]!.sync() : Promise.all(files.map((f) => f.sync())).then(() => {});
}

/** Each waiting commit settled by the fdatasyncs of its own files. */
async function settleEach(waited: Waiting[]): Promise<void> {
  await Promise.allSettled(waited.map((w) => fdatasyncEach(w.files).then(w.done.resolve, w.done.reject)));
}

/** A worker per file system: a stalled disk's syncfs holds no other's. */
class SyncfsWorkers {
  private readonly workers = new Map<number, SyncfsWorker>();
  sync(ref: FileSystemRef): Promise<void> {
    let worker = this.workers.get(ref.dev);
    if (!worker) this.workers.set(ref.dev, (worker = new SyncfsWorker()));
    return worker.sync(ref);
  }
}

let workers: SyncfsWorkers | null | undefined;

/** The process's: all topics of all file stores share the disks (a worker is made on a file system's first syncfs). */
export const commitSyncs = new CommitSyncs(() => (workers === undefined ? (workers = syncfsUsable() ? new SyncfsWorkers() : null) : workers));
