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
import { FileTopicLog } from "../../lib/store/topic-log.ts";
import type { DeliverAfter } from "../../lib/store/types.ts";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-deliver-after-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const options = (deliverAfter?: DeliverAfter) => ({ fsync: "always" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 1 << 20, files: new OpenFiles(16), ...(deliverAfter ? { deliverAfter } : {}) });
const texts = async (log: FileTopicLog, from: number) => (await log.read(from, 100, 1 << 20)).map((m) => `${m.seq}:${Buffer.from(m.data).toString()}`);

type Done = (err: NodeJS.ErrnoException | null) => void;

/** Holds every pool fdatasync until the test settles it; the loop's fdatasyncSync is not expected. */
function holdSyncs() {
  const held: Done[] = [];
  let waiter: (() => void) | null = null;
  const pool = spyOn(fs, "fdatasync").mockImplementation(((_fd: number, done: Done) => {
    held.push(done);
    waiter?.();
  }) as typeof fs.fdatasync);
  const loop = spyOn(fs, "fdatasyncSync");
  return {
    loop,
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
    firstSync(null);
    // The second's sync (it waited for the first's: lib/store/commit-syncs.ts).
    (await syncs.next())(null);
    await Promise.all([first, second]);
    expect(answers).toEqual([2, 3]);
  } finally {
    syncs.restore();
  }
  await log.close();
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
  log.onWritten = () => {
    throw new Error("push failed");
  };
  expect(await log.append(Buffer.from("m1"), 1)).toBe(1);
  expect(await texts(log, 1)).toEqual(["1:m1"]);
  await log.close();
});
