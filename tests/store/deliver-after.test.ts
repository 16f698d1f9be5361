/**
 * `--deliver-after` (lib/store/types.ts, DeliverAfter) in a file log under `--fsync always`:
 * `write` makes a commit's messages readable, and tells the server, while their fdatasync runs
 * (the append itself resolves after it); `fsync` only once it returned. A sync that fails after
 * its messages were readable leaves them where they are: their seqs are never handed out again.
 */
import { afterEach, beforeEach, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { syncPlace } from "../../lib/store/sync-place.ts";
import { FileTopicLog } from "../../lib/store/topic-log.ts";
import { decodeMeta, encodeMeta } from "../../lib/store/topic-meta.ts";
import type { DeliverAfter } from "../../lib/store/types.ts";

let dir: string;
const quietMs = syncPlace.quietMs;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-deliver-after-"));
  // Every sync on the pool, where holdSyncs holds it: a lone commit would sync on the loop once its topic had been alone for quietMs.
  syncPlace.quietMs = Infinity;
});
afterEach(() => {
  syncPlace.quietMs = quietMs;
  fs.rmSync(dir, { recursive: true, force: true });
});

const options = (deliverAfter?: DeliverAfter) => ({ fsync: "always" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16), ...(deliverAfter ? { deliverAfter } : {}) });
const texts = async (log: FileTopicLog, from: number) => (await log.read(from, 100, 1 << 20)).map((m) => `${m.seq}:${Buffer.from(m.data).toString()}`);

type Done = (err: NodeJS.ErrnoException | null) => void;

/** Holds every pool fdatasync until the test settles it; the loop's fdatasyncSync is not expected. */
function holdSyncs() {
  const held: Done[] = [];
  /** The fd of every sync asked for, in order. */
  const fds: number[] = [];
  let waiter: (() => void) | null = null;
  const pool = spyOn(fs, "fdatasync").mockImplementation(((fd: number, done: Done) => {
    fds.push(fd);
    held.push(done);
    waiter?.();
  }) as typeof fs.fdatasync);
  const loop = spyOn(fs, "fdatasyncSync");
  return {
    loop,
    fds,
    get held() {
      return held.length;
    },
    /** Resolves once a sync is held (bounded: 2 s). */
    async next(): Promise<Done> {
      for (let i = 0; i < 200 && held.length === 0; i++) await new Promise<void>((resolve) => ((waiter = resolve), setTimeout(resolve, 10)));
      expect(held.length).toBeGreaterThan(0);
      return held.shift()!;
    },
    /** Lets what is still held go (a failed test must not leave the process's sync lanes stuck), then un-mocks. */
    restore() {
      for (const done of held.splice(0)) done(null);
      pool.mockRestore();
      loop.mockRestore();
    },
  };
}

/** A log with one message committed (so that the seq reservation's own sync is done), and a count of onWritten calls. */
async function openWith(deliverAfter?: DeliverAfter) {
  const log = FileTopicLog.open(dir, options(deliverAfter));
  const told: number[] = [];
  log.onWritten = () => {
    told.push(log.lastSeq);
    return true;
  };
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  told.length = 0;
  return { log, told };
}

test("write (the default): a commit's messages are readable, and the server is told, while their fdatasync runs; the append resolves after it", async () => {
  const { log, told } = await openWith();
  const syncs = holdSyncs();
  try {
    let answered = null as number | null;
    const append = log.appendBatch([Buffer.from("m2"), Buffer.from("m3")], 2, [undefined, undefined]).then((seqs) => (answered = seqs[0]!));
    const done = await syncs.next();
    expect(told).toEqual([3]);
    expect(log.lastSeq).toBe(3);
    expect(log.nextSeq).toBe(4);
    expect(await texts(log, 2)).toEqual(["2:m2", "3:m3"]);
    expect(answered).toBeNull();
    done(null);
    await append;
    expect(answered).toBe(2);
    // Told readers were there: the sync ran on the pool (the loop stays free to push), never on the loop.
    expect(syncs.loop).toHaveBeenCalledTimes(0);
  } finally {
    syncs.restore();
  }
  await log.close();
});

test("write, with readers: the next commit is written and readable while the one before it syncs; answers come in order", async () => {
  const { log, told } = await openWith();
  const syncs = holdSyncs();
  try {
    const answers: number[] = [];
    const first = log.append(Buffer.from("m2"), 2).then((seq) => answers.push(seq));
    const firstSync = await syncs.next();
    const second = log.append(Buffer.from("m3"), 3).then((seq) => answers.push(seq));
    // Bounded: until the second commit is written.
    for (let i = 0; i < 200 && told.length < 2; i++) await Bun.sleep(5);
    // Both readable, both told, neither answered.
    expect(told).toEqual([2, 3]);
    expect(await texts(log, 2)).toEqual(["2:m2", "3:m3"]);
    expect(answers).toEqual([]);
    // One sync of the topic at a time: the second's starts once the first's returned.
    await Bun.sleep(20);
    expect(syncs.held).toBe(0);
    firstSync(null);
    (await syncs.next())(null);
    await Promise.all([first, second]);
    expect(answers).toEqual([2, 3]);
  } finally {
    syncs.restore();
  }
  await log.close();
});

test("write, with readers: commits made while a sync stalls are still written and readable (STALL_MS apart at most), and share the one sync due after it", async () => {
  const { log, told } = await openWith();
  const syncs = holdSyncs();
  let firstSync: Done | undefined;
  try {
    const answers: number[] = [];
    const appends = [log.append(Buffer.from("m2"), 2).then((seq) => answers.push(seq))];
    firstSync = await syncs.next();
    // Three more commits, one after another, each once the one before it is written (a disk that stalls under steady traffic).
    for (const [i, text] of ["m3", "m4", "m5"].entries()) {
      appends.push(log.append(Buffer.from(text), 3 + i).then((seq) => answers.push(seq)));
      for (let k = 0; k < 200 && told.length < i + 2; k++) await Bun.sleep(5);
    }
    expect(told).toEqual([2, 3, 4, 5]);
    expect(await texts(log, 2)).toEqual(["2:m2", "3:m3", "4:m4", "5:m5"]);
    expect(answers).toEqual([]);
    // The second sync waits for the first.
    await Bun.sleep(20);
    expect(syncs.held).toBe(0);
    firstSync(null);
    firstSync = undefined;
    (await syncs.next())(null);
    await Promise.all(appends);
    expect(answers).toEqual([2, 3, 4, 5]);
    // One sync for the three: none is left.
    await Bun.sleep(20);
    expect(syncs.held).toBe(0);
  } finally {
    firstSync?.(null);
    syncs.restore();
    await log.close();
  }
});

test("write, with readers: commits that roll to a new segment while a sync runs share the sync due after it, which syncs every file they wrote", async () => {
  // Segments of one message each: a record of 250 bytes fills one.
  const log = FileTopicLog.open(dir, { ...options(), maxSegmentBytes: 200 });
  const told: number[] = [];
  log.onWritten = () => {
    told.push(log.lastSeq);
    return true;
  };
  const payload = (n: number) => Buffer.from(`m${n}`.padEnd(250, "."));
  expect(await log.append(payload(1), 1)).toBe(1);
  told.length = 0;
  const syncs = holdSyncs();
  let firstSync: Done | undefined;
  /** Taken from the held ones, not let go yet (restore() cannot let them go). */
  const due: Done[] = [];
  try {
    const appends = [log.append(payload(2), 2)];
    firstSync = await syncs.next();
    for (const [i, n] of [3, 4].entries()) {
      appends.push(log.append(payload(n), n));
      for (let k = 0; k < 200 && told.length < i + 2; k++) await Bun.sleep(5);
    }
    expect(told).toEqual([2, 3, 4]);
    const segments = fs.readdirSync(dir).filter((f) => f.endsWith(".log"));
    expect(segments.length).toBeGreaterThanOrEqual(3);
    expect(syncs.fds.length).toBe(1);
    firstSync(null);
    firstSync = undefined;
    // The due sync: one fdatasync for each of the two segments m3 and m4 went to.
    due.push(await syncs.next());
    due.push(await syncs.next());
    expect(new Set(syncs.fds.slice(1)).size).toBe(2);
    expect(syncs.fds.slice(1)).not.toContain(syncs.fds[0]);
    for (const done of due.splice(0)) done(null);
    expect(await Promise.all(appends)).toEqual([2, 3, 4]);
    await Bun.sleep(20);
    expect(syncs.held).toBe(0);
  } finally {
    firstSync?.(null);
    for (const done of due) done(null);
    syncs.restore();
    await log.close();
  }
  const again = FileTopicLog.open(dir, options());
  try {
    expect((await again.read(1, 10, 1 << 20)).map((m) => Buffer.from(m.data).toString().replace(/\.+$/, ""))).toEqual(["m1", "m2", "m3", "m4"]);
  } finally {
    await again.close();
  }
});

test("write, with readers: a sync that fails fails the commits written while it ran too (the kernel may answer the next fdatasync 0), and no commit after those", async () => {
  const { log, told } = await openWith();
  const syncs = holdSyncs();
  let firstSync: Done | undefined;
  try {
    const outcome = (p: Promise<number>) => p.then((seq) => `ok ${seq}`, (err: NodeJS.ErrnoException) => `${err.code}: ${err.message}`);
    const first = outcome(log.append(Buffer.from("m2"), 2));
    firstSync = await syncs.next();
    const during = [outcome(log.append(Buffer.from("m3"), 3))];
    for (let k = 0; k < 200 && told.length < 2; k++) await Bun.sleep(5);
    during.push(outcome(log.append(Buffer.from("m4"), 4)));
    for (let k = 0; k < 200 && told.length < 3; k++) await Bun.sleep(5);
    expect(told).toEqual([2, 3, 4]);
    firstSync(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    firstSync = undefined;
    expect(await first).toMatch(/^EIO: .*1 message from seq 2 failed after they were written/);
    // Their own sync, the one after, returns 0: they fail all the same.
    (await syncs.next())(null);
    for (const o of await Promise.all(during)) expect(o).toMatch(/^EIO: an fsync of this topic's log failed while these messages were being written .*not known to be on disk/);
    // Written after that: not failed for it.
    const after = outcome(log.append(Buffer.from("m5"), 5));
    (await syncs.next())(null);
    expect(await after).toBe("ok 5");
  } finally {
    firstSync?.(null);
    syncs.restore();
    await log.close();
  }
});

test("write, with readers: the sync starts after what the server hands over at the next turn (mq up's in-memory link), not beside it", async () => {
  const { log } = await openWith();
  const syncs = holdSyncs();
  let done: Done | undefined;
  try {
    // As the server's push through the link: its frames reach the local broker at the next turn.
    const order: string[] = [];
    log.onWritten = () => {
      setImmediate(() => order.push(`pushed (syncs held: ${syncs.held})`));
      return true;
    };
    const append = log.append(Buffer.from("m2"), 2);
    done = await syncs.next();
    expect(order).toEqual(["pushed (syncs held: 0)"]);
    done(null);
    expect(await append).toBe(2);
  } finally {
    // Taken from the held ones: restore() cannot let it go (a sync left hanging would hold close()).
    done?.(null);
    syncs.restore();
    await log.close();
  }
});

test("write, without readers: the next commit waits for the sync before it, as with fsync", async () => {
  const log = FileTopicLog.open(dir, options());
  log.onWritten = () => false;
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  const syncs = holdSyncs();
  try {
    const first = log.append(Buffer.from("m2"), 2);
    const firstSync = await syncs.next();
    const second = log.append(Buffer.from("m3"), 3);
    await Bun.sleep(20);
    // m3 is not written yet: it goes in the next commit, after this sync.
    expect(log.lastSeq).toBe(2);
    firstSync(null);
    expect(await first).toBe(2);
    (await syncs.next())(null);
    expect(await second).toBe(3);
  } finally {
    syncs.restore();
  }
  await log.close();
});

test("fsync: nothing of a commit is readable, and nobody is told, until its fdatasync returned", async () => {
  const { log, told } = await openWith("fsync");
  const syncs = holdSyncs();
  try {
    const append = log.append(Buffer.from("m2"), 2);
    const done = await syncs.next();
    expect(log.lastSeq).toBe(1);
    expect(await texts(log, 2)).toEqual([]);
    done(null);
    expect(await append).toBe(2);
    expect(log.lastSeq).toBe(2);
    expect(await texts(log, 2)).toEqual(["2:m2"]);
    expect(told).toEqual([]);
  } finally {
    syncs.restore();
  }
  await log.close();
});

test("write: a sync that fails after its messages were readable fails the append, keeps them, and never hands their seqs out again", async () => {
  const { log } = await openWith();
  const syncs = holdSyncs();
  let err: NodeJS.ErrnoException | undefined;
  try {
    const append = log.append(Buffer.from("unsure"), 2).catch((e: NodeJS.ErrnoException) => (err = e));
    const done = await syncs.next();
    done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    await append;
  } finally {
    syncs.restore();
  }
  expect(err?.code).toBe("EIO");
  expect(err?.message).toMatch(/EIO.*1 message from seq 2 failed after they were written.*subscribers may have received them.*not known to be on disk/);
  // A reader that got seq 2 never sees another message under it.
  expect(await log.append(Buffer.from("m3"), 3)).toBe(3);
  expect(await texts(log, 1)).toEqual(["1:m1", "2:unsure", "3:m3"]);
  await log.close();
  const again = FileTopicLog.open(dir, options());
  expect(await texts(again, 1)).toEqual(["1:m1", "2:unsure", "3:m3"]);
  expect(again.nextSeq).toBe(4);
  await again.close();
});

test("write: a server push that throws is logged, and the commit goes on to its sync and answer", async () => {
  const log = FileTopicLog.open(dir, options());
  let calls = 0;
  log.onWritten = () => {
    calls++;
    throw new Error("push failed");
  };
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  expect(calls).toBe(1);
  expect(await texts(log, 1)).toEqual(["1:m1"]);
  await log.close();
});

test("write: retention leaves a segment whose sync has not returned, though every subscriber acknowledged it", async () => {
  // Each message fills a segment: every append starts a new segment file.
  const log = FileTopicLog.open(dir, { ...options(), maxSegmentBytes: 64 });
  log.onWritten = () => true;
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  const syncs = holdSyncs();
  try {
    const second = log.append(Buffer.from("m2"), 2);
    const done = await syncs.next();
    const third = log.append(Buffer.from("m3"), 3);
    for (let i = 0; i < 200 && log.lastSeq < 3; i++) await Bun.sleep(5);
    expect(log.lastSeq).toBe(3);
    // Seqs 1 and 2 acknowledged by every subscriber, old enough: only seq 1's segment may go.
    expect(await log.trim(3, { maxAgeMs: 0, maxBytes: 0 }, Date.now() + 1000)).toBe(1);
    expect(await texts(log, 1)).toEqual(["2:m2", "3:m3"]);
    done(null);
    expect(await second).toBe(2);
    (await syncs.next())(null);
    expect(await third).toBe(3);
  } finally {
    syncs.restore();
  }
  // Synced now: it may go.
  expect(await log.trim(3, { maxAgeMs: 0, maxBytes: 0 }, Date.now() + 1000)).toBe(1);
  await log.close();
});

test("write: retention syncs a segment that still owes one (its sync failed) before deleting it", async () => {
  const log = FileTopicLog.open(dir, { ...options(), maxSegmentBytes: 64 });
  log.onWritten = () => true;
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  const syncs = holdSyncs();
  try {
    const failed = log.append(Buffer.from("m2"), 2).catch((e: NodeJS.ErrnoException) => e.code);
    (await syncs.next())(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    expect(await failed).toBe("EIO");
  } finally {
    syncs.restore();
  }
  expect(await log.append(Buffer.from("m3"), 3)).toBe(3);
  // Seqs 1 and 2 acknowledged by every subscriber: both segments go, seq 2's after a sync of its own.
  expect(await log.trim(3, { maxAgeMs: 0, maxBytes: 0 }, Date.now() + 1000)).toBe(2);
  expect(await texts(log, 1)).toEqual(["3:m3"]);
  await log.close();
});

/**
 * What a power cut can leave while a commit's sync is held: a copy of the directory in which
 * that commit's record never reached the disk (zeros where it was written), nor `head`'s
 * rewrite (never fsynced: the one before that commit), whose boot id is not this boot's (the
 * machine restarted).
 */
async function powerCutImage(deliverAfter: DeliverAfter): Promise<{ image: string; told: number[] }> {
  const { log, told } = await openWith(deliverAfter);
  expect(await log.append(Buffer.from("m2"), 2)).toBe(2);
  const segment = path.join(dir, "00000000000000000001.log");
  const end = (log as unknown as { segments: Array<{ size: number }> }).segments[0]!.size;
  const staleHead = fs.readFileSync(path.join(dir, "head"));
  const syncs = holdSyncs();
  const image = fs.mkdtempSync(path.join(os.tmpdir(), "mq-deliver-after-cut-"));
  try {
    const append = log.append(Buffer.from("unsynced"), 3);
    const done = await syncs.next();
    fs.cpSync(dir, image, { recursive: true });
    done(null);
    expect(await append).toBe(3);
  } finally {
    syncs.restore();
  }
  await log.close();
  // The record of seq 3 did not reach the disk.
  const fd = fs.openSync(path.join(image, path.basename(segment)), "r+");
  fs.writeSync(fd, Buffer.alloc(fs.fstatSync(fd).size - end), 0, fs.fstatSync(fd).size - end, end);
  fs.closeSync(fd);
  // Another boot: a boot id that is not this one's, the head's CRC made good again.
  const head = staleHead;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  view.setUint32(24, (view.getUint32(24) + 1) >>> 0 || 1);
  view.setUint32(28, Bun.hash.crc32(head.subarray(0, 28)));
  fs.writeFileSync(path.join(image, "head"), head);
  const meta = decodeMeta(fs.readFileSync(path.join(image, "meta"), "utf8"))!;
  fs.writeFileSync(path.join(image, "meta"), encodeMeta(meta, (meta.boot! + 1) >>> 0 || 1));
  return { image, told };
}

test("write: after a power cut, seqs a subscriber may have got before their sync are never handed out again", async () => {
  const { image, told } = await powerCutImage("write");
  try {
    expect(told).toEqual([2, 3]); // seq 3 was readable before its sync
    const again = FileTopicLog.open(image, options());
    try {
      expect(await texts(again, 1)).toEqual(["1:m1", "2:m2"]);
      // Not 3: the head cannot say how far readers got, the seq reservation (fsynced before any seq in it is used) can.
      expect(again.nextSeq).toBeGreaterThan(3);
      const seq = await again.append(Buffer.from("after"), 4);
      expect(seq).toBeGreaterThan(3);
      expect(await texts(again, 3)).toEqual([`${seq}:after`]);
    } finally {
      await again.close();
    }
  } finally {
    fs.rmSync(image, { recursive: true, force: true });
  }
});

test("fsync: after a power cut the head is trusted: nothing unsynced was readable, the next seq is exact", async () => {
  const { image, told } = await powerCutImage("fsync");
  try {
    expect(told).toEqual([]);
    const again = FileTopicLog.open(image, options("fsync"));
    try {
      expect(await texts(again, 1)).toEqual(["1:m1", "2:m2"]);
      expect(again.nextSeq).toBe(3);
      expect(again.lost).toBe(0);
    } finally {
      await again.close();
    }
  } finally {
    fs.rmSync(image, { recursive: true, force: true });
  }
});
