/**
 * Group commit across topics (`--fsync always`). Each topic's log commits on its own, and
 * each commit used to fdatasync its own file: publishes spread over many topics paid one
 * fdatasync each, and concurrent fdatasyncs barely overlap on a disk that flushes its cache
 * for each (docs/benchmarks.md, "many topics"): 100 topics published round robin ran at a
 * tenth of one topic's rate.
 *
 * Here, while one commit's sync runs, the commits of other topics that arrive wait; when it
 * is done they are synced together: with `minFiles` files or more on one file system, by one
 * syncfs(2) on a worker thread (it writes back and waits for everything dirty on that file
 * system, with one cache flush); fewer, by an fdatasync each, as before. A lone topic never
 * waits here (its next commit starts after its previous one's sync). syncfs reports write-back
 * errors since Linux 5.8 (earlier it always succeeds): used only there. It also waits for what
 * other processes wrote to the same file system: one slower than `slowMs` sends the commits
 * back to an fdatasync each for `backoffMs`.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { logger } from "../log.ts";
import { canSyncFileSystem } from "./fsutil.ts";
import { fsyncSeconds } from "./fsync-timing.ts";
import type { PooledFile } from "./open-files.ts";

const log = logger("store");

/** A file system the logs are on, by device number; `fd` is a directory on it, kept open for syncfs. */
export interface FileSystemRef {
  readonly dev: number;
  fd: number;
}

const fileSystems = new Map<number, FileSystemRef>();

/** The file system holding `dir` (one shared object per device), or undefined if it cannot be told. */
export function fileSystemOf(dir: string): FileSystemRef | undefined {
  try {
    const dev = fs.statSync(dir).dev;
    let ref = fileSystems.get(dev);
    if (!ref) fileSystems.set(dev, (ref = { dev, fd: -1 }));
    // Opened on first use: a directory of that device (the first topic's; a deleted one still names the device).
    if (ref.fd < 0) ref.fd = fs.openSync(dir, "r");
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

  sync(ref: FileSystemRef): Promise<void> {
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
        postMessage({ id: e.data.id, errno: rc === 0 ? 0 : read.i32(libc.symbols.__errno_location(), 0) });
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "application/javascript" })));
    worker.onmessage = (e: MessageEvent<{ id: number; errno: number }>) => {
      const reply = this.waiting.get(e.data.id);
      this.waiting.delete(e.data.id);
      if (e.data.errno === 0) reply?.resolve();
      else reply?.reject(Object.assign(new Error(`syncfs failed: ${errnoName(e.data.errno)}`), { errno: e.data.errno }));
    };
    worker.onerror = (e) => {
      const err = new Error(`the syncfs worker failed: ${e.message}`);
      for (const reply of this.waiting.values()) reply.reject(err);
      this.waiting.clear();
      this.worker = null;
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

/** True on Linux 5.8 and later (syncfs reports write-back errors) where libc's syncfs loads. */
function syncfsUsable(): boolean {
  if (process.platform !== "linux") return false;
  const [major = 0, minor = 0] = os.release().split(/[.-]/).map(Number);
  return (major > 5 || (major === 5 && minor >= 8)) && canSyncFileSystem();
}

interface Waiting {
  files: PooledFile[];
  fileSystem: FileSystemRef | undefined;
  done: PromiseWithResolvers<void>;
}

export class CommitSyncs {
  /** Files of one file system from which one syncfs replaces their fdatasyncs. */
  minFiles = 3;
  slowMs = 100;
  backoffMs = 5_000;
  /** Counts, for stats and tests. */
  syncfsCalls = 0;
  syncfsFiles = 0;
  private inFlight = 0;
  private queue: Waiting[] = [];
  private syncfsOffUntil = -Infinity;

  /** What runs a syncfs, or null where there is none to use (asked at the first flush). */
  constructor(private readonly syncfsRunner: () => { sync(ref: FileSystemRef): Promise<void> } | null) {}

  /** Resolves once `files` (written by one commit) are durable; rejects if a sync failed. */
  sync(files: PooledFile[], fileSystem: FileSystemRef | undefined): Promise<void> {
    if (this.inFlight === 0) return this.track(fdatasyncEach(files));
    const done = Promise.withResolvers<void>();
    this.queue.push({ files, fileSystem, done });
    return done.promise;
  }

  private track(running: Promise<void>): Promise<void> {
    this.inFlight++;
    return running.finally(() => {
      if (--this.inFlight === 0 && this.queue.length > 0) this.flush();
    });
  }

  /** Syncs what waited: per file system, one syncfs if it has enough files, else an fdatasync each. */
  private flush(): void {
    const waited = this.queue;
    this.queue = [];
    const groups = new Map<FileSystemRef | undefined, Waiting[]>();
    for (const w of waited) {
      const key = w.fileSystem && performance.now() >= this.syncfsOffUntil && this.syncfsRunner() ? w.fileSystem : undefined;
      (groups.get(key) ?? groups.set(key, []).get(key)!).push(w);
    }
    for (const [ref, group] of groups) {
      const files = new Set(group.flatMap((w) => w.files));
      const running = ref && files.size >= this.minFiles ? this.syncAll(ref, [...files]) : Promise.all(group.map((w) => fdatasyncEach(w.files))).then(() => {});
      void this.track(running).then(
        () => group.forEach((w) => w.done.resolve()),
        (err) => group.forEach((w) => w.done.reject(err)),
      );
    }
  }

  private async syncAll(ref: FileSystemRef, files: PooledFile[]): Promise<void> {
    // Taken before it starts: a file written again meanwhile still owes its sync.
    const synced = files.map((f) => f.syncedBy());
    const started = performance.now();
    this.syncfsCalls++;
    this.syncfsFiles += files.length;
    await this.syncfsRunner()!.sync(ref);
    const ms = performance.now() - started;
    fsyncSeconds.observe(ms / 1000);
    for (const done of synced) done();
    if (ms > this.slowMs) {
      this.syncfsOffUntil = performance.now() + this.backoffMs;
      log.debug(`a syncfs for ${files.length} files took ${ms.toFixed(0)} ms (other writes to the file system?): an fdatasync each for ${this.backoffMs / 1000} s`);
    }
  }
}

function fdatasyncEach(files: PooledFile[]): Promise<void> {
  return files.length === 1 ? files[0]!.sync() : Promise.all(files.map((f) => f.sync())).then(() => {});
}

let worker: SyncfsWorker | null | undefined;

/** The process's: all topics of all file stores share the disk (the worker is made on the first syncfs). */
export const commitSyncs = new CommitSyncs(() => (worker === undefined ? (worker = syncfsUsable() ? new SyncfsWorker() : null) : worker));
