/** Where a commit's fdatasync runs (lib/store/sync-place.ts): the rule, a lone publisher's appends through it, and what a failed one undoes. */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { SyncPlace, syncPlace } from "../../lib/store/sync-place.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";
import { framesIn } from "../../lib/wire/frames-in.ts";

describe("SyncPlace", () => {
  /** A rule on a clock the test moves. */
  function rule() {
    const clock = { ms: 1000 };
    const frames = { count: 0 };
    const place = new SyncPlace(() => clock.ms, () => frames.count);
    /**
     * One commit of `topic` as the store makes it: its request's frame comes in (`before`: 1,
     * a lone producer's next request), the rule places it, and a commit placed on the pool
     * syncs there, `during` more frames coming in meanwhile and the clock moving by `ms`.
     */
    async function commit(topic: object, shape: { requests: number; messages: number; files: number; waited: boolean }, { before = 1, during = 0, ms = 0 } = {}): Promise<boolean> {
      frames.count += before;
      const onLoop = place.onLoop(topic, shape);
      if (!onLoop) {
        await place.onPool(
          Promise.resolve().then(() => {
            frames.count += during;
            clock.ms += ms;
          }),
        );
      }
      return onLoop;
    }
    /** A lone request of more than maxMessages. */
    const big = { requests: 1, messages: place.maxMessages + 1, files: 1, waited: false };
    /** A new topic's big commits, up to the first on the loop: its own pool sync and one more, both quiet. */
    async function bigOnLoop(topic: object): Promise<void> {
      expect(await commit(topic, big)).toBe(false);
      clock.ms += place.quietMs;
      expect(await commit(topic, big)).toBe(false);
      expect(await commit(topic, big)).toBe(true);
    }
    return { place, clock, frames, commit, big, bigOnLoop };
  }
  const a = {};
  const b = {};
  /** One request of `messages` to one file that did not wait: a lone publisher's commit. */
  const lone = (messages = 1) => ({ requests: 1, messages, files: 1, waited: false });

  test("a lone publisher's commits sync on the event loop once its topic has been the only one for quietMs", () => {
    const { place, clock } = rule();
    expect(place.onLoop(a, lone())).toBe(false); // a new topic
    expect(place.onLoop(a, lone())).toBe(false); // not quiet for long enough yet
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone())).toBe(true);
    expect(place.onLoop(a, lone())).toBe(true);
  });

  test("a commit whose messages were handed to readers before its sync goes to the pool, however lone", () => {
    const { place, clock } = rule();
    place.onLoop(a, lone());
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone())).toBe(true);
    // The loop is what pushes them to the subscribers: a sync on it would hold them back.
    expect(place.onLoop(a, { ...lone(), readers: true })).toBe(false);
    expect(place.onLoop(a, lone())).toBe(true);
  });

  test("another topic's commit sends the syncs back to the pool for quietMs", () => {
    const { place, clock } = rule();
    place.onLoop(a, lone());
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone())).toBe(true);
    expect(place.onLoop(b, lone())).toBe(false);
    expect(place.onLoop(a, lone())).toBe(false);
    expect(place.onLoop(a, lone())).toBe(false);
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone())).toBe(true);
  });

  test("one request of up to maxMessages syncs on the loop; more messages, several requests, two files or a batch that waited go to the pool", () => {
    const { place, clock } = rule();
    place.onLoop(a, lone());
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone(place.maxMessages))).toBe(true); // one library batch of a tick
    expect(place.onLoop(a, lone(place.maxMessages + 1))).toBe(false);
    expect(place.onLoop(a, { requests: 2, messages: 2, files: 1, waited: false })).toBe(false); // two publishers in one tick
    expect(place.onLoop(a, { requests: 1, messages: 1, files: 2, waited: false })).toBe(false); // a segment rolled over
    expect(place.onLoop(a, { requests: 1, messages: 1, files: 1, waited: true })).toBe(false); // queued behind the previous commit
    expect(place.onLoop(a, lone(3))).toBe(true); // none of those changes the topic: the next lone commit is on the loop again
  });

  test("a lone request of more than maxMessages syncs on the loop once quietSyncsBeforeLoop pool syncs in a row were quiet; every probeEvery-th goes to the pool to look", async () => {
    const { place, commit, big, bigOnLoop } = rule();
    await bigOnLoop(a); // a new topic on the pool, then one more: two quiet pool syncs
    const next = [];
    for (let i = 0; i < 2 * place.probeEvery; i++) next.push(await commit(a, big));
    const probe = (i: number) => i === place.probeEvery - 2 || i === 2 * place.probeEvery - 2;
    expect(next).toEqual(next.map((_, i) => !probe(i)));
  });

  test("a pool sync is not quiet when a frame came in while it ran, when it was slower than slowMs, or when its commit was not lone; nor when the next commit waited", async () => {
    const { place, clock, commit, big } = rule();
    /** Commits on the pool, then on the loop again: two quiet pool syncs, then the loop. */
    const backToLoop = async () => expect([await commit(a, big), await commit(a, big), await commit(a, big)]).toEqual([false, false, true]);
    await commit(a, big);
    clock.ms += place.quietMs;
    // A consumer's requests and acks, another client: frames while each sync ran.
    const busy = [];
    for (let i = 0; i < 6; i++) busy.push(await commit(a, big, { during: 1 }));
    expect(busy).toEqual(Array(6).fill(false));
    await backToLoop();
    // On the loop up to the probe, whose sync on the pool has a frame come in.
    while (await commit(a, big, { during: 1 }));
    await backToLoop();
    // The probe's sync slower than slowMs (a disk stalling): the loop would have waited that long.
    while (await commit(a, big, { ms: place.slowMs + 1 }));
    await backToLoop();
    // After a quiet probe, two requests in one commit (two producers in one tick): not lone, so its quiet sync does not count.
    while (await commit(a, big));
    expect(await commit(a, { ...big, requests: 2 })).toBe(false);
    await backToLoop();
    // After a quiet probe, a commit queued behind its sync: someone else writes meanwhile.
    while (await commit(a, big));
    expect(await commit(a, { ...big, waited: true })).toBe(false);
    await backToLoop();
    // And a quiet probe changes nothing.
    while (await commit(a, big));
    expect(await commit(a, big)).toBe(true);
  });

  test("after a sync on the loop, more than one frame before the next commit sends the bigger lone requests back to the pool", async () => {
    const { commit, big, bigOnLoop } = rule();
    await bigOnLoop(a);
    expect(await commit(a, big)).toBe(true); // its own request, one frame
    expect(await commit(a, big, { before: 2 })).toBe(false); // its request and another frame: a consumer's ack, another client
    expect(await commit(a, big)).toBe(false); // one quiet pool sync
    expect(await commit(a, big)).toBe(true);
    expect(await commit(a, lone(), { before: 3 })).toBe(true); // a small lone request is on the loop as before…
    expect(await commit(a, big)).toBe(false); // …and the frames before it count
  });

  test("another topic's commit starts the count of quiet pool syncs again", async () => {
    const { bigOnLoop } = rule();
    await bigOnLoop(a);
    await bigOnLoop(b); // its first commit on the pool, then as a new topic
  });

  test("a slow sync on the loop sends the bigger lone requests back to the pool until two quiet pool syncs again", async () => {
    const { place, clock, commit, big, bigOnLoop } = rule();
    await bigOnLoop(a);
    place.loopSyncTook(place.slowMs + 1);
    clock.ms += place.quietMs;
    expect([await commit(a, big), await commit(a, big), await commit(a, big)]).toEqual([false, false, true]);
  });

  test("a sync on the loop slower than slowMs sends the syncs back to the pool for quietMs", () => {
    const { place, clock } = rule();
    place.onLoop(a, lone());
    clock.ms += place.quietMs;
    expect(place.onLoop(a, lone())).toBe(true);
    place.loopSyncTook(place.slowMs); // not slower than slowMs
    expect(place.onLoop(a, lone())).toBe(true);
    place.loopSyncTook(place.slowMs + 1);
    expect(place.onLoop(a, lone())).toBe(false);
    clock.ms += place.quietMs - 1;
    expect(place.onLoop(a, lone())).toBe(false);
    clock.ms += 1;
    expect(place.onLoop(a, lone())).toBe(true);
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

  /**
   * Spies on both fdatasyncs, calling through (the real one runs): `loop` or `pool` goes to
   * `events` when one returned; `poolStarts` runs as a pool sync starts, `poolDone` as it returns.
   * Returns the restore.
   */
  function recordSyncs(events: string[], { loop = "synced on the loop", pool = "synced on the pool", poolStarts = () => {}, poolDone = () => {} } = {}): () => void {
    const realSync = fs.fdatasyncSync;
    const realAsync = fs.fdatasync;
    const onLoop = spyOn(fs, "fdatasyncSync").mockImplementation(((fd: number) => {
      realSync(fd);
      events.push(loop);
    }) as typeof fs.fdatasyncSync);
    const onPool = spyOn(fs, "fdatasync").mockImplementation(((fd: number, done: (err: NodeJS.ErrnoException | null) => void) => {
      poolStarts();
      realAsync(fd, (err) => {
        poolDone();
        events.push(pool);
        done(err);
      });
    }) as typeof fs.fdatasync);
    return () => {
      onLoop.mockRestore();
      onPool.mockRestore();
    };
  }

  test("acknowledges each append after an fdatasync of its segment returned, on the event loop once the publisher is alone; the records read back after a reopen", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    const restore = recordSyncs(events);
    try {
      for (let i = 1; i <= 4; i++) {
        const seq = await log.append(Buffer.from(`m${i}`), i);
        events.push(`acknowledged ${seq}`);
      }
    } finally {
      restore();
    }
    // The first on the pool (a new topic), the others on the loop.
    expect(events).toEqual(["synced on the pool", "acknowledged 1", "synced on the loop", "acknowledged 2", "synced on the loop", "acknowledged 3", "synced on the loop", "acknowledged 4"]);
    await log.close();
    const again = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    expect((await again.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual(["m1", "m2", "m3", "m4"]);
    await again.close();
  });

  test("a lone publish to an idle topic is written, synced and acknowledged before the event loop turns: no timer on its way", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    const restore = recordSyncs(events);
    let turned = false;
    try {
      await log.append(Buffer.from("m1"), 1); // a new topic: its seq reservation and its first sync (the pool) take turns
      const immediate = setImmediate(() => (turned = true));
      const timer = setTimeout(() => (turned = true), 0);
      events.push(`acknowledged ${await log.append(Buffer.from("m2"), 2)}`);
      events.push(turned ? "the event loop turned" : "no turn");
      clearImmediate(immediate);
      clearTimeout(timer);
    } finally {
      restore();
    }
    expect(events).toEqual(["synced on the pool", "synced on the loop", "acknowledged 2", "no turn"]);
    await log.close();
  });

  test("a batch queued while the previous commit synced on the pool syncs on the pool too; a batch of up to 32 from one request on the loop", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    let behind: Promise<number> | null = null;
    let queueBehind = false;
    const restore = recordSyncs(events, {
      // While the commit of the two requests syncs, a third request comes in: it waits behind it.
      poolStarts: () => {
        if (queueBehind && !behind) behind = log.append(Buffer.from("behind"), 5).then((seq) => (events.push(`acknowledged ${seq}`), seq));
      },
    });
    const ack = (seq: number) => events.push(`acknowledged ${seq}`);
    try {
      ack(await log.append(Buffer.from("m1"), 1)); // a new topic: on the pool
      // One request of 32 messages (a library's batch of one tick): on the loop.
      const batch = Array.from({ length: 32 }, (_, i) => Buffer.from(`b${i}`));
      ack((await log.appendBatch(batch, 2, batch.map(() => undefined)))[0]!);
      // Two requests in one tick (two publishers): on the pool; the third, queued meanwhile, on the pool too.
      queueBehind = true;
      const two = [log.append(Buffer.from("x"), 3), log.append(Buffer.from("y"), 4)];
      for (const seq of await Promise.all(two)) ack(seq);
      await behind;
      // Alone again: on the loop.
      ack(await log.append(Buffer.from("m2"), 6));
    } finally {
      restore();
    }
    expect(queueBehind && behind !== null).toBe(true);
    expect(events).toEqual(["synced on the pool", "acknowledged 1", "synced on the loop", "acknowledged 2", "synced on the pool", "acknowledged 34", "acknowledged 35", "synced on the pool", "acknowledged 36", "synced on the loop", "acknowledged 37"]);
    await log.close();
  });

  test("a lone producer's batches of more than 32 sync on the pool until two pool syncs had nothing queued behind them, then on the loop", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    const restore = recordSyncs(events, { loop: "loop", pool: "pool" });
    const batch = (k: number) => Array.from({ length: 100 }, (_, i) => Buffer.from(`${k}.${i}`));
    const firsts: number[] = [];
    try {
      // One request at a time, each sent after the one before was acknowledged (256 in flight, one tick's refill a request).
      for (let k = 0; k < 5; k++) firsts.push((await log.appendBatch(batch(k), k, batch(k).map(() => undefined)))[0]!);
    } finally {
      restore();
    }
    // A new topic's commit and the next on the pool: two pool syncs that nothing was queued behind; then the loop.
    expect(events).toEqual(["pool", "pool", "loop", "loop", "loop"]);
    expect(firsts).toEqual([1, 101, 201, 301, 401]);
    expect((await log.read(1, 1000, 1 << 20)).map((m) => Buffer.from(m.data).toString())).toEqual([0, 1, 2, 3, 4].flatMap((k) => batch(k).map(String)));
    await log.close();
  });

  test("a lone producer's batches stay on the pool while frames come in during their syncs", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
    const events: string[] = [];
    // What Connection counts while each sync runs: a consumer's ack, another client's request.
    const restore = recordSyncs(events, { loop: "loop", pool: "pool", poolDone: () => void framesIn.count++ });
    const batch = (k: number) => Array.from({ length: 100 }, (_, i) => Buffer.from(`${k}.${i}`));
    try {
      for (let k = 0; k < 5; k++) await log.appendBatch(batch(k), k, batch(k).map(() => undefined));
    } finally {
      restore();
    }
    expect(events).toEqual(["pool", "pool", "pool", "pool", "pool"]);
    await log.close();
  });

  test("--deliver-after fsync: a failed fdatasync on the loop acknowledges nothing and the next append starts clean", async () => {
    const log = FileTopicLog.open(dir, { fsync: "always", deliverAfter: "fsync", fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16) });
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

describe("FileTopicLog with --fsync always and --deliver-after fsync, a failed fdatasync while retention deletes segments", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-sync-fail-trim-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // Each message fills a segment (maxSegmentBytes 64): every append starts a new segment file.
  const options = () => ({ fsync: "always" as const, deliverAfter: "fsync" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 64, files: new OpenFiles(16) });
  const segmentFiles = () => fs.readdirSync(dir).filter((n) => n.endsWith(".log")).sort();
  const texts = async (log: FileTopicLog, from: number) => (await log.read(from, 100, 1 << 20)).map((m) => `${m.seq}:${Buffer.from(m.data).toString()}`);
  /** Closes `log`, opens its directory again, and expects `expected` read from seq 1 there. */
  async function expectAfterReopen(log: FileTopicLog, expected: string[]): Promise<void> {
    await log.close();
    const again = FileTopicLog.open(dir, options());
    expect(await texts(again, 1)).toEqual(expected);
    await again.close();
  }

  /**
   * Appends "lost" (into a new segment) with its fdatasync on the pool held; retention runs
   * while it is held (`trimBefore`: seqs below it may go); then the sync fails with EIO.
   */
  async function failWhileTrimming(log: FileTopicLog, trimBefore: number, options: { dirSyncFails?: boolean } = {}): Promise<unknown> {
    const held = Promise.withResolvers<(err: NodeJS.ErrnoException | null) => void>();
    const failing = spyOn(fs, "fdatasync").mockImplementation(((_fd: number, done: (err: NodeJS.ErrnoException | null) => void) => held.resolve(done)) as typeof fs.fdatasync);
    let err: unknown;
    try {
      const append = log.append(Buffer.from("lost"), 9).catch((e: unknown) => (err = e));
      const done = await held.promise;
      expect(await log.trim(trimBefore, { maxAgeMs: Infinity, maxBytes: 0 }, Date.now())).toBeGreaterThan(0);
      // The failing disk refuses the directory's fsync of a new segment too (at the rollback).
      const dirSync = options.dirSyncFails ? spyOn(fs, "fsyncSync").mockImplementation((() => { throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }); }) as typeof fs.fsyncSync) : null;
      done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
      await append;
      dirSync?.mockRestore();
    } finally {
      failing.mockRestore();
    }
    return err;
  }

  test("undoes the failed commit's new segment, not the segment before it, when retention deleted older ones meanwhile", async () => {
    const log = FileTopicLog.open(dir, options());
    for (const t of ["m1", "m2", "m3"]) await log.append(Buffer.from(t), 1);
    // Seq 3's segment (the newest before "lost") stays; those of seqs 1 and 2 go.
    const err = await failWhileTrimming(log, 3);
    expect((err as NodeJS.ErrnoException).code).toBe("EIO");
    expect(segmentFiles()).toEqual(["00000000000000000003.log"]);
    expect(await log.append(Buffer.from("m4"), 2)).toBe(4);
    expect(await texts(log, 3)).toEqual(["3:m3", "4:m4"]);
    await expectAfterReopen(log, ["3:m3", "4:m4"]);
  });

  test("starts a new segment when retention deleted the segment the failed commit had followed", async () => {
    const log = FileTopicLog.open(dir, options());
    for (const t of ["m1", "m2", "m3"]) await log.append(Buffer.from(t), 1);
    // All acknowledged seqs may go: only the failed commit's segment is left to retention.
    const err = await failWhileTrimming(log, 4);
    expect((err as NodeJS.ErrnoException).code).toBe("EIO");
    expect(segmentFiles()).toEqual(["00000000000000000004.log"]); // new and empty: m4 goes there
    expect(await log.append(Buffer.from("m4"), 2)).toBe(4);
    expect(await texts(log, 1)).toEqual(["4:m4"]);
    await log.close();
    const again = FileTopicLog.open(dir, options());
    expect(await texts(again, 1)).toEqual(["4:m4"]);
    expect(again.nextSeq).toBe(5);
    await again.close();
  });

  test("when that new segment cannot be made at the rollback, the next append makes it: the topic is not stuck", async () => {
    const log = FileTopicLog.open(dir, options());
    for (const t of ["m1", "m2", "m3"]) await log.append(Buffer.from(t), 1);
    const err = await failWhileTrimming(log, 4, { dirSyncFails: true });
    expect((err as NodeJS.ErrnoException).code).toBe("EIO");
    expect(segmentFiles()).toEqual([]);
    expect(await log.append(Buffer.from("m4"), 2)).toBe(4);
    expect(await log.append(Buffer.from("m5"), 2)).toBe(5);
    expect(await texts(log, 1)).toEqual(["4:m4", "5:m5"]);
    await expectAfterReopen(log, ["4:m4", "5:m5"]);
  });

  test("a failed commit that sealed segments of its own leaves none of their files, checkpoints included", async () => {
    const log = FileTopicLog.open(dir, options());
    await log.append(Buffer.from("m1"), 1);
    const before = fs.readdirSync(dir).sort();
    const failing = spyOn(fs, "fdatasync").mockImplementation(((_fd: number, done: (err: NodeJS.ErrnoException | null) => void) => done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }))) as typeof fs.fdatasync);
    let err: unknown;
    try {
      // Three messages, one segment each: the first two are sealed (checkpointed) by the batch itself.
      await log.appendBatch([Buffer.from("a"), Buffer.from("b"), Buffer.from("c")], 2, [undefined, undefined, undefined]).catch((e: unknown) => (err = e));
    } finally {
      failing.mockRestore();
    }
    expect((err as NodeJS.ErrnoException).code).toBe("EIO");
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(await log.append(Buffer.from("m2"), 2)).toBe(2);
    await expectAfterReopen(log, ["1:m1", "2:m2"]);
  });
});
