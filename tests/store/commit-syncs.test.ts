/**
 * Group commit across topics (lib/store/commit-syncs.ts): the rule on real files with a syncfs
 * the test runs (counted, held, failed), the real worker's syncfs and its errors, and many
 * topics' logs committing through the process's CommitSyncs, read back after a reopen.
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CommitSyncs, commitSyncs, fileSystemOf, SyncfsWorker, type FileSystemRef } from "../../lib/store/commit-syncs.ts";
import { canSyncFileSystem } from "../../lib/store/fsutil.ts";
import { OpenFiles, type PooledFile } from "../../lib/store/open-files.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-commit-syncs-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `n` pooled files, each written once (owing an fdatasync). */
function written(pool: OpenFiles, n: number, prefix = "f"): PooledFile[] {
  return Array.from({ length: n }, (_, i) => {
    const f = pool.openNow(path.join(dir, `${prefix}${i}`), { flags: "w+" });
    fs.writeSync(f.fd(), "x");
    f.wrote();
    return f;
  });
}

/** A syncfs the test answers: each call waits until `release` (or `fail`). */
function heldSyncfs() {
  const calls: Array<{ ref: FileSystemRef; done: PromiseWithResolvers<void> }> = [];
  const runner = {
    sync(ref: FileSystemRef) {
      const done = Promise.withResolvers<void>();
      calls.push({ ref, done });
      return done.promise;
    },
  };
  return { calls, runner };
}

/** fdatasyncs of the thread pool, counted (they run for real). */
function countFdatasyncs() {
  const real = fs.fdatasync;
  const counted = { n: 0 };
  const spy = spyOn(fs, "fdatasync").mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    counted.n++;
    real(fd, cb);
  }) as typeof fs.fdatasync);
  return { counted, restore: () => spy.mockRestore() };
}

describe("CommitSyncs", () => {
  test("a lone commit is fdatasynced at once; the commits that arrive meanwhile are synced by one syncfs, which clears what each file owed", async () => {
    const pool = new OpenFiles(64);
    const ref = fileSystemOf(dir)!;
    const { calls, runner } = heldSyncfs();
    const syncs = new CommitSyncs(() => runner);
    const fdatasyncs = countFdatasyncs();
    try {
      const [first] = written(pool, 1, "first");
      const lone = syncs.sync([first!], ref);
      // Three topics commit while the first one's fdatasync runs: they wait for it.
      const others = written(pool, 3);
      const waiting = others.map((f) => syncs.sync([f], ref));
      expect(fdatasyncs.counted.n).toBe(1);
      await lone;
      expect(first!.owesSync).toBe(false);
      // Then one syncfs for the three, not three fdatasyncs.
      for (let i = 0; i < 50 && calls.length === 0; i++) await Bun.sleep(1);
      expect(calls.length).toBe(1);
      expect(calls[0]!.ref).toBe(ref);
      expect(fdatasyncs.counted.n).toBe(1);
      expect(others.every((f) => f.owesSync)).toBe(true);
      let settled = false;
      void Promise.all(waiting).then(() => (settled = true));
      await Bun.sleep(5);
      expect(settled).toBe(false); // nothing is acknowledged before the syncfs returned
      // A file written again while the syncfs runs still owes its sync afterwards.
      fs.writeSync(others[2]!.fd(), "y");
      others[2]!.wrote();
      calls[0]!.done.resolve();
      await Promise.all(waiting);
      expect(others.map((f) => f.owesSync)).toEqual([false, false, true]);
      expect(syncs.syncfsCalls).toBe(1);
      expect(syncs.syncfsFiles).toBe(3);
    } finally {
      fdatasyncs.restore();
    }
  });

  test("fewer than minFiles waiting, or files of no known file system: an fdatasync each, no syncfs", async () => {
    const pool = new OpenFiles(64);
    const ref = fileSystemOf(dir)!;
    const { calls, runner } = heldSyncfs();
    const syncs = new CommitSyncs(() => runner);
    const fdatasyncs = countFdatasyncs();
    try {
      const [first, a, b, c, d, e] = written(pool, 6);
      const lone = syncs.sync([first!], ref);
      const two = [syncs.sync([a!], ref), syncs.sync([b!], ref)];
      await lone;
      await Promise.all(two);
      expect(calls.length).toBe(0);
      expect(fdatasyncs.counted.n).toBe(3);
      // Three waiting, but their file system unknown (a stat failed): fdatasyncs.
      const again = syncs.sync([first!], ref);
      first!.wrote();
      const unknown = [c, d, e].map((f) => syncs.sync([f!], undefined));
      await again;
      await Promise.all(unknown);
      expect(calls.length).toBe(0);
      expect([a, b, c, d, e].every((f) => !f!.owesSync)).toBe(true);
    } finally {
      fdatasyncs.restore();
    }
  });

  test("where there is no syncfs (not Linux 5.8+, no glibc), the commits that waited are fdatasynced", async () => {
    const pool = new OpenFiles(64);
    const ref = fileSystemOf(dir)!;
    const syncs = new CommitSyncs(() => null);
    const fdatasyncs = countFdatasyncs();
    try {
      const files = written(pool, 5);
      await Promise.all(files.map((f) => syncs.sync([f], ref)));
      expect(fdatasyncs.counted.n).toBe(5);
      expect(syncs.syncfsCalls).toBe(0);
    } finally {
      fdatasyncs.restore();
    }
  });

  test("a failed syncfs fails every commit that waited for it (they roll back); the files still owe their sync; the next ones sync again", async () => {
    const pool = new OpenFiles(64);
    const ref = fileSystemOf(dir)!;
    const { calls, runner } = heldSyncfs();
    const syncs = new CommitSyncs(() => runner);
    const [first, ...others] = written(pool, 4);
    const lone = syncs.sync([first!], ref);
    const waiting = others.map((f) => syncs.sync([f], ref).then(() => "ok", (err: Error) => err.message));
    await lone;
    for (let i = 0; i < 50 && calls.length === 0; i++) await Bun.sleep(1);
    calls[0]!.done.reject(new Error("syncfs failed: EIO"));
    expect(await Promise.all(waiting)).toEqual(["syncfs failed: EIO", "syncfs failed: EIO", "syncfs failed: EIO"]);
    expect(others.every((f) => f.owesSync)).toBe(true);
    // Nothing is left in flight: the next commit is fdatasynced at once.
    await syncs.sync([others[0]!], ref);
    expect(others[0]!.owesSync).toBe(false);
  });

  test("a syncfs slower than slowMs sends the waiting commits to an fdatasync each for backoffMs", async () => {
    const pool = new OpenFiles(64);
    const ref = fileSystemOf(dir)!;
    const { calls, runner } = heldSyncfs();
    const syncs = new CommitSyncs(() => runner);
    syncs.slowMs = 5;
    const round = async (prefix: string) => {
      const [first, ...others] = written(pool, 4, prefix);
      const lone = syncs.sync([first!], ref);
      const waiting = others.map((f) => syncs.sync([f], ref));
      await lone;
      await Bun.sleep(2);
      return waiting;
    };
    const slow = await round("a");
    expect(calls.length).toBe(1);
    await Bun.sleep(10);
    calls[0]!.done.resolve();
    await Promise.all(slow);
    await Promise.all(await round("b"));
    expect(calls.length).toBe(1); // backed off: the second round's three were fdatasynced
  });
});

describe.skipIf(!canSyncFileSystem() || process.platform !== "linux")("the syncfs worker (Linux)", () => {
  test("syncs a file system through a directory's fd; a bad fd is an error that names it", async () => {
    const worker = new SyncfsWorker();
    const ref = fileSystemOf(dir)!;
    await worker.sync(ref);
    const failed = await worker.sync({ dev: ref.dev, fd: 1_000_000 }).then(
      () => null,
      (err: Error) => err.message,
    );
    expect(failed).toBe("syncfs failed: EBADF");
    await worker.sync(ref);
  });

  test("24 topics appended at once through the process's CommitSyncs: each append acknowledged, syncfs used, every message read back after a reopen", async () => {
    const files = new OpenFiles(256);
    const options = { fsync: "always" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files };
    const names = Array.from({ length: 24 }, (_, i) => `t${i}`);
    for (const n of names) fs.mkdirSync(path.join(dir, n));
    const logs = names.map((n) => FileTopicLog.open(path.join(dir, n), options));
    const before = commitSyncs.syncfsCalls;
    for (let round = 1; round <= 5; round++) {
      const seqs = await Promise.all(logs.map((l, i) => l.append(Buffer.from(`${names[i]}-${round}`), Date.now())));
      expect(seqs).toEqual(names.map(() => round));
    }
    expect(commitSyncs.syncfsCalls).toBeGreaterThan(before);
    for (const l of logs) await l.close();
    const again = names.map((n) => FileTopicLog.open(path.join(dir, n), options));
    for (let i = 0; i < names.length; i++) {
      expect((await again[i]!.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual([1, 2, 3, 4, 5].map((r) => `${names[i]}-${r}`));
      await again[i]!.close();
    }
  });
});
