/** Where a commit's fdatasync runs (lib/store/sync-place.ts): the rule, and a lone publisher's appends through it. */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { SyncPlace, syncPlace } from "../../lib/store/sync-place.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";

describe("SyncPlace", () => {
  /** A rule on a clock the test moves. */
  function rule() {
    const clock = { ms: 1000 };
    return { place: new SyncPlace(() => clock.ms), clock };
  }
  const a = {};
  const b = {};

  test("a lone publisher's commits sync on the event loop once its topic has been the only one for quietMs", () => {
    const { place, clock } = rule();
    expect(place.onLoop(a, 1, 1)).toBe(false); // a new topic
    expect(place.onLoop(a, 1, 1)).toBe(false); // not quiet for long enough yet
    clock.ms += place.quietMs;
    expect(place.onLoop(a, 1, 1)).toBe(true);
    expect(place.onLoop(a, 1, 1)).toBe(true);
  });

  test("another topic's commit sends the syncs back to the pool for quietMs", () => {
    const { place, clock } = rule();
    place.onLoop(a, 1, 1);
    clock.ms += place.quietMs;
    expect(place.onLoop(a, 1, 1)).toBe(true);
    expect(place.onLoop(b, 1, 1)).toBe(false);
    expect(place.onLoop(a, 1, 1)).toBe(false);
    expect(place.onLoop(a, 1, 1)).toBe(false);
    clock.ms += place.quietMs;
    expect(place.onLoop(a, 1, 1)).toBe(true);
  });

  test("a commit of several messages or files, and the commit after it, sync on the pool", () => {
    const { place, clock } = rule();
    place.onLoop(a, 1, 1);
    clock.ms += place.quietMs;
    expect(place.onLoop(a, 5, 1)).toBe(false); // others are publishing too
    expect(place.onLoop(a, 1, 1)).toBe(false); // the one after a batch: still not alone
    expect(place.onLoop(a, 1, 1)).toBe(true);
    expect(place.onLoop(a, 1, 2)).toBe(false); // a segment rolled over: two files
    expect(place.onLoop(a, 1, 1)).toBe(false);
    expect(place.onLoop(a, 1, 1)).toBe(true);
  });

  test("a sync on the loop slower than slowMs sends the syncs back to the pool for quietMs", () => {
    const { place, clock } = rule();
    place.onLoop(a, 1, 1);
    clock.ms += place.quietMs;
    expect(place.onLoop(a, 1, 1)).toBe(true);
    place.loopSyncTook(place.slowMs); // not slower than slowMs
    expect(place.onLoop(a, 1, 1)).toBe(true);
    place.loopSyncTook(place.slowMs + 1);
    expect(place.onLoop(a, 1, 1)).toBe(false);
    clock.ms += place.quietMs - 1;
    expect(place.onLoop(a, 1, 1)).toBe(false);
    clock.ms += 1;
    expect(place.onLoop(a, 1, 1)).toBe(true);
  });
});

describe("FileTopicLog with --fsync always, one publish at a time", () => {
  let dir: string;
  const { quietMs, slowMs } = syncPlace;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-sync-place-"));
    // No waiting for the quiet time, and a disk slowed down by other work does not change the place.
    syncPlace.quietMs = 0;
    syncPlace.slowMs = Infinity;
  });
  afterEach(() => {
    Object.assign(syncPlace, { quietMs, slowMs });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("acknowledges each append after an fdatasync of its segment returned, on the event loop once the publisher is alone; the records read back after a reopen", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    const realSync = fs.fdatasyncSync;
    const realAsync = fs.fdatasync;
    // Call through: the real fdatasync runs, the spies only note where and when it returned.
    const onLoop = spyOn(fs, "fdatasyncSync").mockImplementation(((fd: number) => {
      realSync(fd);
      events.push("synced on the loop");
    }) as typeof fs.fdatasyncSync);
    const onPool = spyOn(fs, "fdatasync").mockImplementation(((fd: number, done: (err: NodeJS.ErrnoException | null) => void) => {
      realAsync(fd, (err) => {
        events.push("synced on the pool");
        done(err);
      });
    }) as typeof fs.fdatasync);
    try {
      for (let i = 1; i <= 4; i++) {
        const seq = await log.append(Buffer.from(`m${i}`), i);
        events.push(`acknowledged ${seq}`);
      }
    } finally {
      onLoop.mockRestore();
      onPool.mockRestore();
    }
    // The first on the pool (a new topic), the others on the loop.
    expect(events).toEqual(["synced on the pool", "acknowledged 1", "synced on the loop", "acknowledged 2", "synced on the loop", "acknowledged 3", "synced on the loop", "acknowledged 4"]);
    await log.close();
    const again = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    expect((await again.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["m1", "m2", "m3", "m4"]);
    await again.close();
  });

  test("a failed fdatasync on the loop acknowledges nothing and the next append starts clean", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    await log.append(Buffer.from("m1"), 1);
    await log.append(Buffer.from("m2"), 2);
    let failed = 0;
    const failing = spyOn(fs, "fdatasyncSync").mockImplementation((() => {
      failed++;
      throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    }) as typeof fs.fdatasyncSync);
    let err: unknown;
    try {
      await log.append(Buffer.from("lost"), 3);
    } catch (e) {
      err = e;
    } finally {
      failing.mockRestore();
    }
    expect((err as NodeJS.ErrnoException).code).toBe("EIO");
    expect(failed).toBe(1);
    expect(await log.append(Buffer.from("m3"), 4)).toBe(3);
    expect((await log.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["m1", "m2", "m3"]);
    await log.close();
  });
});
