/**
 * Group commit across topics (lib/store/commit-syncs.ts): the rule on real files with a syncfs
 * the test runs (counted, held, failed), the real worker's syncfs and its errors, and many
 * topics' logs committing through the process's CommitSyncs, read back after a reopen.
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CommitSyncs, commitSyncs, fileSystemOf, SyncfsWorker, syncfsUsable, type FileSystemRef } from "../../lib/store/commit-syncs.ts";
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

/** The file system of the test's directory, its type taken as one whose syncfs is trusted (a fresh object: its own lane). */
function trusted(): FileSystemRef {
  return { ...fileSystemOf(dir)!, syncfsSafe: true };
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

/** A pool of `poolSize` files, the test directory's file system as a trusted one, and a CommitSyncs on a held syncfs. */
function setup(poolSize: number) {
  const { calls, runner } = heldSyncfs();
  return { pool: new OpenFiles(poolSize), ref: trusted(), calls, syncs: new CommitSyncs(() => runner) };
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
    const { pool, ref, calls, syncs } = setup(64);
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

  test("fewer than minFiles waiting: an fdatasync each, no syncfs; files of an unknown or untrusted file system never wait", async () => {
    const { pool, ref, calls, syncs } = setup(64);
    const fdatasyncs = countFdatasyncs();
    try {
      const [first, a, b, c, d, e] = written(pool, 6);
      const lone = syncs.sync([first!], ref);
      const two = [syncs.sync([a!], ref), syncs.sync([b!], ref)];
      expect(fdatasyncs.counted.n).toBe(1); // the two wait
      await lone;
      await Promise.all(two);
      expect(calls.length).toBe(0);
      expect(fdatasyncs.counted.n).toBe(3);
      // While one syncs: files of no known file system, and of one whose syncfs is not trusted (FUSE, NFS), start at once.
      await Bun.sleep(1); // the group's sync has ended (its commits resolve just before)
      first!.wrote();
      const again = syncs.sync([first!], ref);
      const others = [syncs.sync([c!], undefined), syncs.sync([d!, e!], { ...ref, syncfsSafe: false })];
      expect(fdatasyncs.counted.n).toBe(3 + 1 + 3);
      await again;
      await Promise.all(others);
      expect(calls.length).toBe(0);
      expect([a, b, c, d, e].every((f) => !f!.owesSync)).toBe(true);
    } finally {
      fdatasyncs.restore();
    }
  });

  test("a file waiting for the shared sync is pinned: the pool closes others to make room, not it", async () => {
    const { pool, ref, calls, syncs } = setup(3);
    const [first] = written(pool, 1, "first");
    const lone = syncs.sync([first!], ref);
    const [queued] = written(pool, 1, "queued");
    const waiting = syncs.sync([queued!], ref);
    // Three more files opened while it waits: the pool of 3 must close something, never the queued file.
    written(pool, 3, "more");
    expect(queued!.isOpen).toBe(true);
    expect(queued!.pinned).toBe(true);
    await lone;
    await waiting; // one file: an fdatasync, no syncfs
    expect(calls.length).toBe(0);
    expect(queued!.pinned).toBe(false);
    expect(queued!.owesSync).toBe(false);
  });

  test("where there is no syncfs (not Linux 5.17+, no glibc), commits never wait for each other", async () => {
    const pool = new OpenFiles(64);
    const ref = trusted();
    const syncs = new CommitSyncs(() => null);
    const fdatasyncs = countFdatasyncs();
    try {
      const files = written(pool, 5);
      const all = files.map((f) => syncs.sync([f], ref));
      expect(fdatasyncs.counted.n).toBe(5); // all started at once
      await Promise.all(all);
      expect(syncs.syncfsCalls).toBe(0);
    } finally {
      fdatasyncs.restore();
    }
  });

  test("a failed syncfs: each commit that waited for it is settled by the fdatasyncs of its own files (one failing fails only its commit), and syncfs is not used again", async () => {
    const { pool, ref, calls, syncs } = setup(64);
    const [first, ...others] = written(pool, 4);
    const lone = syncs.sync([first!], ref);
    const waiting = others.map((f) => syncs.sync([f], ref).then(() => "ok", (err: Error) => err.message));
    await lone;
    for (let i = 0; i < 50 && calls.length === 0; i++) await Bun.sleep(1);
    expect(calls.length).toBe(1);
    // The fdatasync of the second file's fd reports the write-back error of its pages.
    const failing = others[1]!.fd();
    const real = fs.fdatasync;
    const spy = spyOn(fs, "fdatasync").mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      if (fd === failing) cb(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
      else real(fd, cb);
    }) as typeof fs.fdatasync);
    try {
      calls[0]!.done.reject(new Error("syncfs failed: EIO"));
      expect(await Promise.all(waiting)).toEqual(["ok", "EIO: i/o error, fdatasync", "ok"]);
    } finally {
      spy.mockRestore();
    }
    expect(syncs.lane(ref).failed).toBe(true);
    expect(others.map((f) => f.owesSync)).toEqual([false, true, false]);
    // From then on nothing waits and no syncfs runs.
    const more = written(pool, 4, "after");
    await Promise.all(more.map((f) => syncs.sync([f], ref)));
    expect(calls.length).toBe(1);
    expect(more.every((f) => !f.owesSync)).toBe(true);
  });

  test("each file system is its own lane: a syncfs held on one does not hold the other's; a failure ends syncfs only on its own", async () => {
    const pool = new OpenFiles(64);
    const one = trusted();
    const two = trusted(); // another object: another lane, as another device would be
    const { calls, runner } = heldSyncfs();
    const syncs = new CommitSyncs(() => runner);
    const round = (ref: FileSystemRef, prefix: string) => {
      const [first, ...others] = written(pool, 4, prefix);
      return { lone: syncs.sync([first!], ref), waiting: others.map((f) => syncs.sync([f], ref)) };
    };
    const a = round(one, "a");
    const b = round(two, "b");
    await a.lone;
    await b.lone;
    for (let i = 0; i < 50 && calls.length < 2; i++) await Bun.sleep(1);
    // Both running at once (in the order their lone commits' fdatasyncs returned).
    expect(calls.length).toBe(2);
    calls.find((c) => c.ref === one)!.done.reject(new Error("syncfs failed: EIO"));
    calls.find((c) => c.ref === two)!.done.resolve();
    await Promise.all([...a.waiting, ...b.waiting]);
    expect([syncs.lane(one).failed, syncs.lane(two).failed]).toEqual([true, false]);
  });

  test("a file whose fsync before a close failed (before it waited) fails its commit even when the shared syncfs succeeds; the error is reported once", async () => {
    const { pool, ref, calls, syncs } = setup(2);
    const [victim] = written(pool, 1, "victim");
    // The pool closes the victim to make room; its fsync fails: kept open, the error kept.
    const fsync = spyOn(fs, "fsyncSync").mockImplementation(((fd: number) => {
      if (fd === victim!.fdNumber) throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    }) as typeof fs.fsyncSync);
    try {
      written(pool, 2, "room");
    } finally {
      fsync.mockRestore();
    }
    expect(victim!.isOpen).toBe(true);
    expect(victim!.syncFailed).toBe(true);
    const [first, x, y] = written(pool, 3, "more");
    const lone = syncs.sync([first!], ref);
    const waiting = [victim, x, y].map((f) => syncs.sync([f!], ref).then(() => "ok", (err: Error) => err.message));
    await lone;
    for (let i = 0; i < 50 && calls.length === 0; i++) await Bun.sleep(1);
    calls[0]!.done.resolve();
    expect(await Promise.all(waiting)).toEqual(["EIO: i/o error, fsync", "ok", "ok"]);
    expect(victim!.owesSync).toBe(true);
    // Reported once, as the kernel does: the next sync of the file goes to the disk.
    expect(victim!.syncFailed).toBe(false);
    await victim!.sync();
    expect(victim!.owesSync).toBe(false);
  });

  test("a syncfs slower than slowMs sends the waiting commits to an fdatasync each for backoffMs", async () => {
    const { pool, ref, calls, syncs } = setup(64);
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

describe.skipIf(!syncfsUsable())("the syncfs worker (Linux 5.17+ with glibc)", () => {
  test("syncs a file system through a directory's fd; a bad fd is an error that names it", async () => {
    const worker = new SyncfsWorker();
    const ref = fileSystemOf(dir)!;
    await worker.sync(ref);
    const failed = await worker.sync({ fd: 1_000_000 }).then(
      () => null,
      (err: Error) => err.message,
    );
    expect(failed).toBe("syncfs failed: EBADF");
    await worker.sync(ref);
  });

  test.skipIf(!fileSystemOf(os.tmpdir())?.syncfsSafe)("24 topics appended at once through the process's CommitSyncs: each append acknowledged, syncfs used, every message read back after a reopen", async () => {
    const files = new OpenFiles(256);
    const options = { fsync: "always" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files };
    const names = Array.from({ length: 24 }, (_, i) => `t${i}`);
    for (const n of names) fs.mkdirSync(path.join(dir, n));
    const logs = names.map((n) => FileTopicLog.open(path.join(dir, n), options));
    // The process's, shared with other test files: not backed off by a slow syncfs of theirs.
    Object.assign(commitSyncs.lane(fileSystemOf(dir)!), { offUntil: -Infinity, failed: false });
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
