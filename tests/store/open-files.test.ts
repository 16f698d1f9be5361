/**
 * OpenFiles, the LRU of open topic files: at most `max` open, the coldest closed first (after
 * the fsync it owes), reopened on use, pinned files never closed; and the store over it,
 * with many more topics than open files and a creation that fails for lack of fds.
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileTopicStore } from "../../lib/store/file-store.ts";
import { errnoCode } from "../../lib/store/fsutil.ts";
import { OpenFiles, type PooledFile } from "../../lib/store/open-files.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";
import { readMeta } from "../../lib/store/topic-meta.ts";
import { fdLimitAvailable, lowerFdLimit } from "./fd-kit.ts";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-open-files-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `n` files `f0`..`f<n-1>` in the pool, each holding its own name, opened now. */
function files(pool: OpenFiles, n: number): PooledFile[] {
  return Array.from({ length: n }, (_, i) => {
    const file = path.join(dir, `f${i}`);
    fs.writeFileSync(file, `f${i}`);
    return pool.openNow(file);
  });
}

function contents(f: PooledFile): string {
  const buf = Buffer.alloc(16);
  const n = fs.readSync(f.fd(), buf, 0, 16, 0);
  return buf.subarray(0, n).toString();
}

/** Fds of this process that point at files of `dir`. */
function fdsInDir(): number {
  let n = 0;
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {}
  }
  return n;
}

describe("OpenFiles", () => {
  test("OpenFiles keeps at most max files open, however many it holds", () => {
    const pool = new OpenFiles(3);
    const all = files(pool, 10);
    expect(pool.open).toBe(3);
    if (fs.existsSync("/proc/self/fd")) expect(fdsInDir()).toBe(3);
    expect(all.filter((f) => f.isOpen).length).toBe(3);
    // Every one still reads its own file, reopened on use.
    expect(all.map(contents)).toEqual(all.map((_, i) => `f${i}`));
    expect(pool.open).toBe(3);
    expect(pool.evictions).toBe(7 + 10);
    for (const f of all) f.close();
    expect(pool.open).toBe(0);
  });

  test("OpenFiles closes the least recently used file first, and keeps a file in use open", () => {
    const pool = new OpenFiles(3);
    const [a, b, c] = files(pool, 3);
    contents(a!); // a is now the most recently used: b is the coldest
    const [d] = files(pool, 1).map((f) => f);
    expect([a!.isOpen, b!.isOpen, c!.isOpen, d!.isOpen]).toEqual([true, false, true, true]);
    // A hot file used between each new one is never closed.
    for (let i = 0; i < 20; i++) {
      contents(a!);
      const file = path.join(dir, `g${i}`);
      fs.writeFileSync(file, "g");
      pool.openNow(file).close();
    }
    expect(a!.isOpen).toBe(true);
    expect(pool.opens).toBe(4 + 20); // a was not reopened once
  });

  test("OpenFiles never closes a pinned file; it goes over max instead, and back under it once unpinned", () => {
    const pool = new OpenFiles(2);
    const [a, b] = files(pool, 2);
    a!.pin();
    b!.pin();
    const [c] = files(pool, 1);
    expect([a!.isOpen, b!.isOpen, c!.isOpen]).toEqual([true, true, true]);
    expect(pool.open).toBe(3);
    a!.unpin();
    b!.unpin();
    files(pool, 1);
    expect(pool.open).toBe(2);
    expect([a!.isOpen, b!.isOpen]).toEqual([false, false]);
  });

  test("OpenFiles fsyncs a file that owes an fsync before closing it, and only such a file", () => {
    const pool = new OpenFiles(1);
    const durable = pool.openNow(path.join(dir, "durable"), { flags: "w+", durable: true });
    const calls: string[] = [];
    const realFsync = fs.fsyncSync;
    const realClose = fs.closeSync;
    const fsync = spyOn(fs, "fsyncSync").mockImplementation(((fd: number) => {
      calls.push(`fsync ${fd}`);
      realFsync(fd);
    }) as typeof fs.fsyncSync);
    const close = spyOn(fs, "closeSync").mockImplementation(((fd: number) => {
      calls.push(`close ${fd}`);
      realClose(fd);
    }) as typeof fs.closeSync);
    try {
      const fd = durable.fd();
      fs.writeSync(fd, "owed");
      durable.wrote();
      const head = pool.openNow(path.join(dir, "head"), { flags: "w+", durable: false }); // closes `durable`
      expect(calls).toEqual([`fsync ${fd}`, `close ${fd}`]);
      calls.length = 0;
      const headFd = head.fd();
      fs.writeSync(headFd, "not owed");
      head.wrote();
      durable.fd(); // closes `head`: written, but it owes no fsync
      expect(calls).toEqual([`close ${headFd}`]);
      calls.length = 0;
      durable.syncNow(); // nothing written since it was reopened
      durable.close();
      expect(calls.map((c) => c.split(" ")[0])).toEqual(["close"]);
    } finally {
      fsync.mockRestore();
      close.mockRestore();
    }
    expect(fs.readFileSync(path.join(dir, "durable"), "utf8")).toBe("owed");
  });

  test("OpenFiles closes a file holding only lazy writes without an fsync; its next sync opens it again and fdatasyncs it", async () => {
    const pool = new OpenFiles(1);
    const cursors = pool.openNow(path.join(dir, "cursors"), { flags: "w+", durable: true });
    const fsyncs: number[] = [];
    const fdatasyncs: number[] = [];
    const realFsync = fs.fsyncSync;
    const realFdatasync = fs.fdatasync;
    const fsync = spyOn(fs, "fsyncSync").mockImplementation(((fd: number) => {
      fsyncs.push(fd);
      realFsync(fd);
    }) as typeof fs.fsyncSync);
    const fdatasync = spyOn(fs, "fdatasync").mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      fdatasyncs.push(fd);
      realFdatasync(fd, cb);
    }) as typeof fs.fdatasync);
    try {
      fs.writeSync(cursors.fd(), "lazy");
      cursors.wrote(true);
      const other = pool.openNow(path.join(dir, "other"), { flags: "w+" }); // closes `cursors`
      expect(cursors.isOpen).toBe(false);
      expect(fsyncs).toEqual([]); // a lazy write costs no fsync to make room
      expect(cursors.owesSync).toBe(true); // it is still owed
      await cursors.sync(); // opens it again (closing `other`, which owes nothing) and syncs it
      expect([cursors.isOpen, other.isOpen, cursors.owesSync]).toEqual([true, false, false]);
      expect(fdatasyncs).toEqual([cursors.fdNumber]);
      // A write something waits for is still fsynced before its file is closed, lazy ones with it.
      fs.writeSync(cursors.fd(), Buffer.from("lazy"), 0, 4, 4);
      cursors.wrote(true);
      fs.writeSync(cursors.fd(), Buffer.from("durable"), 0, 7, 8);
      const fd = cursors.fdNumber;
      cursors.wrote();
      other.fd();
      expect(fsyncs).toEqual([fd]);
      // Closed for good owing lazy writes: they are fsynced first.
      fs.writeSync(cursors.fd(), Buffer.from("!"), 0, 1, 15);
      cursors.wrote(true);
      other.fd();
      fsyncs.length = 0;
      cursors.close();
      expect(fsyncs.length).toBe(1);
    } finally {
      fsync.mockRestore();
      fdatasync.mockRestore();
    }
    expect(fs.readFileSync(path.join(dir, "cursors"), "utf8")).toBe("lazylazydurable!");
  });

  test("OpenFiles: a file whose fsync fails when it is closed to make room is fsynced once, stays open and still owes it (review finding)", () => {
    const pool = new OpenFiles(2);
    const a = pool.lazy(path.join(dir, "a"), { flags: "w+" });
    const b = pool.lazy(path.join(dir, "b"), { flags: "w+" });
    const c = pool.lazy(path.join(dir, "c"), { flags: "w+" });
    try {
      fs.writeSync(a.fd(), "x");
      a.wrote();
      b.pin(); // an fsync in flight: it cannot be closed
      // Linux reports a writeback error once: a second fsync would succeed and hide it.
      let calls = 0;
      const fsync = spyOn(fs, "fsyncSync").mockImplementation(() => {
        if (++calls === 1) throw new Error("EIO: simulated");
      });
      try {
        c.fd(); // needs room: `a`, the coldest, fails its fsync and stays open (the pool goes over max)
        expect({ calls, open: a.isOpen, owes: a.owesSync }).toEqual({ calls: 1, open: true, owes: true });
      } finally {
        fsync.mockRestore();
      }
    } finally {
      for (const f of [a, b, c]) f.close(false);
    }
  });

  test("OpenFiles: an fsync in flight pins the file, so a new open cannot close it under the fsync", async () => {
    const pool = new OpenFiles(1);
    const a = pool.openNow(path.join(dir, "a"), { flags: "w+" });
    fs.writeSync(a.fd(), "x");
    a.wrote();
    const syncing = a.sync();
    const b = pool.openNow(path.join(dir, "b"), { flags: "w+" });
    expect([a.isOpen, b.isOpen]).toEqual([true, true]);
    await syncing;
    expect(a.owesSync).toBe(false);
    pool.openNow(path.join(dir, "c"), { flags: "w+" });
    expect(pool.open).toBe(1);
  });

  test("OpenFiles opens a file created by its first open without truncating it again", () => {
    const pool = new OpenFiles(1);
    const a = pool.openNow(path.join(dir, "seg"), { flags: "w+" });
    fs.writeSync(a.fd(), "kept");
    files(pool, 1); // closes a
    expect(a.isOpen).toBe(false);
    expect(contents(a)).toBe("kept");
  });

  test.skipIf(!fdLimitAvailable)("OpenFiles, out of fds (EMFILE from the kernel), closes its coldest files and opens the new one (Linux: needs /proc/self/fd)", () => {
    const pool = new OpenFiles(Infinity);
    const held = files(pool, 20);
    const limit = lowerFdLimit();
    try {
      expect(() => fs.openSync(path.join(dir, "f0"), "r")).toThrow(/EMFILE/);
      const late = path.join(dir, "late");
      fs.closeSync(limit.spare()); // room for the file written below only
      fs.writeFileSync(late, "late");
      limit.refill();
      const f = pool.openNow(late);
      expect(contents(f)).toBe("late");
      expect(held.filter((h) => !h.isOpen).length).toBeGreaterThan(0);
    } finally {
      limit.restore();
    }
  });
});

describe("FileTopicStore over OpenFiles", () => {
  const options = (files: OpenFiles) => ({ fsync: "always" as const, fsyncIntervalMs: 50, maxSegmentBytes: 4096, files });

  test("FileTopicStore serves 300 topics, written, read and reopened, with 16 files open at most", async () => {
    const pool = new OpenFiles(16);
    let store = new FileTopicStore(dir, options(pool));
    const names = Array.from({ length: 300 }, (_, i) => `t${i}`);
    for (const [i, name] of names.entries()) {
      const t = (await store.open(name, true))!;
      await t.subscribers.add(1, 1);
      for (let k = 0; k < 3; k++) await t.log.append(Buffer.from(`${name}-${k}-${"x".repeat(i % 50)}`), k);
      expect(pool.open).toBeLessThanOrEqual(16);
    }
    for (const name of names) {
      const t = (await store.open(name, false))!;
      expect((await t.log.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString().split("-").slice(0, 2).join("-"))).toEqual([`${name}-0`, `${name}-1`, `${name}-2`]);
      t.subscribers.advance(1, 3);
      await t.subscribers.flush();
    }
    expect(pool.open).toBeLessThanOrEqual(16);
    await store.close();
    expect(pool.open).toBe(0);

    store = new FileTopicStore(dir, options(pool));
    expect(await store.topics()).toEqual([...names].sort());
    for (const name of names) {
      const t = (await store.open(name, false))!;
      expect({ name, next: t.log.nextSeq, cursors: [...t.subscribers.cursors] }).toEqual({ name, next: 4, cursors: [[1, 3]] });
      expect(await t.log.append(Buffer.from("more"), 9)).toBe(4);
      expect(pool.open).toBeLessThanOrEqual(16);
    }
    await store.close();
  });

  test("FileTopicStore.close writes the meta of every written topic as a clean close (all in one batch), and leaves no temp file", async () => {
    const pool = new OpenFiles(8);
    const store = new FileTopicStore(dir, { ...options(pool), fsync: "never" as const });
    const names = Array.from({ length: 40 }, (_, i) => `m${i}`);
    for (const [i, name] of names.entries()) {
      const t = (await store.open(name, true))!;
      for (let k = 0; k <= i % 3; k++) await t.log.append(Buffer.from("x"), k);
    }
    await store.close();
    for (const [i, name] of names.entries()) {
      expect({ name, meta: readMeta(path.join(dir, "topics", name, "meta")) }).toMatchObject({ name, meta: { clean: true, reserved: 2 + (i % 3) } });
    }
    expect(fs.readdirSync(path.join(dir, "topics"), { recursive: true }).filter((f) => String(f).endsWith(".tmp"))).toEqual([]);
  });

  test.skipIf(!fdLimitAvailable)("FileTopicStore: a topic whose creation runs out of fds half-way throws EMFILE and leaves no directory or file (Linux: needs /proc/self/fd)", async () => {
    const pool = new OpenFiles(16);
    const store = new FileTopicStore(dir, options(pool));
    const old = (await store.open("old", true))!;
    await old.log.append(Buffer.from("kept"), 1);
    pool.makeRoom(16); // nothing left to close: the pool cannot make room for the new topic
    const limit = lowerFdLimit();
    // One fd free: the directory is made and listed, its segment opened, then fds run out.
    fs.closeSync(limit.spare());
    let err: unknown;
    try {
      await store.open("fresh", true);
    } catch (e) {
      err = e;
    } finally {
      limit.restore();
    }
    expect(errnoCode(err)).toBe("EMFILE");
    expect(fs.readdirSync(path.join(dir, "topics")).sort()).toEqual(["old"]);
    // Once fds are back, it can be created, and the other topic was never touched.
    const fresh = (await store.open("fresh", true))!;
    expect(await fresh.log.append(Buffer.from("new"), 2)).toBe(1);
    expect((await old.log.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["kept"]);
    await store.close();
  });
});

describe("FileTopicLog over a pool of one open file", () => {
  test.skipIf(!fdLimitAvailable)("FileTopicLog with --fsync always acknowledges an append only after an fdatasync of its segment has returned (Linux: reads /proc/self/fd)", async () => {
    // --deliver-after fsync: `head` is written after the sync (with write, before it: opening it in a pool of one closes the segment, fsyncing it first).
    const log = FileTopicLog.open(dir, { fsync: "always", deliverAfter: "fsync", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(1) });
    const events: string[] = [];
    const realFdatasync = fs.fdatasync;
    // Calls through: the real fdatasync runs, the spy only notes which file and when it returned.
    const spy = spyOn(fs, "fdatasync").mockImplementation(((fd: number, done: (err: NodeJS.ErrnoException | null) => void) => {
      const file = path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`));
      realFdatasync(fd, (err) => {
        events.push(`fdatasync ${file}`);
        done(err);
      });
    }) as typeof fs.fdatasync);
    try {
      await log.append(Buffer.from("a"), 1).then(() => events.push("acknowledged"));
    } finally {
      spy.mockRestore();
    }
    expect(events).toEqual(["fdatasync 00000000000000000001.log", "acknowledged"]);
    await log.close();
  });

  test.skipIf(!fdLimitAvailable)("FileTopicLog with --fsync interval fsyncs a segment closed to make room before closing it, and appends on after reopening (Linux: reads /proc/self/fd)", async () => {
    const pool = new OpenFiles(1);
    const log = FileTopicLog.open(dir, { fsync: "interval", fsyncIntervalMs: 60_000, maxSegmentBytes: 1 << 20, files: pool });
    const synced: string[] = [];
    const realFsync = fs.fsyncSync;
    const spy = spyOn(fs, "fsyncSync").mockImplementation(((fd: number) => {
      synced.push(path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`)));
      realFsync(fd);
    }) as typeof fs.fsyncSync);
    try {
      // The segment is written, its fsync due in a minute; then head is opened, which closes the segment.
      await log.append(Buffer.from("a"), 1);
      expect(synced.filter((f) => f.endsWith(".log"))).toEqual(["00000000000000000001.log"]);
    } finally {
      spy.mockRestore();
    }
    await log.append(Buffer.from("b"), 2);
    expect((await log.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["a", "b"]);
    await log.close();
    const again = FileTopicLog.open(dir, { fsync: "interval", fsyncIntervalMs: 60_000, maxSegmentBytes: 1 << 20, files: pool });
    expect((await again.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["a", "b"]);
    await again.close();
  });
});
