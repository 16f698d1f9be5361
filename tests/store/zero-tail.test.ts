/**
 * The zeros a segment keeps after its last record under --fsync always (lib/store/zero-tail.ts,
 * docs/storage.md "Free space after the last record"), on real files: they are written ahead
 * so later commits change no size, a start takes them for free space (not damage), appends go
 * on at the end of the last record, and sealing or a clean close cuts them.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { FileTopicLog, type TopicLogOptions } from "../../lib/store/topic-log.ts";
import { freeTail, MAX_WRITE_FOR_ZEROS, MAX_ZERO_GROWTH, nextZeroGrowth, writeWithZeros, ZERO_BLOCK, zeroRegionEnd } from "../../lib/store/zero-tail.ts";
import { FILE_HEADER, append, body, logDirPerTest, RECORD_HEADER, segmentFiles } from "./segment-kit.ts";
import { payload } from "./topic-log.contract.ts";

const ALL = Number.MAX_SAFE_INTEGER;
const ALWAYS: TopicLogOptions = { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 };
const SYNC = [0xf8, 0x6d, 0x71, 0xa7];

const fx = logDirPerTest("mq-zero-tail-");

function openLog(at = fx.dir, options: Partial<TopicLogOptions> = {}): FileTopicLog {
  const log = FileTopicLog.open(at, { ...ALWAYS, ...options });
  fx.opened.push(log);
  return log;
}

/** The directory as SIGKILL would leave it: copied while the log is open. */
function crashCopy(): string {
  const copy = `${fx.dir}-crash`;
  fs.cpSync(fx.dir, copy, { recursive: true });
  return copy;
}

/** Records back to back from the file header on, parsed here (not by lib/store): their seqs, and where the last one ends. */
function records(file: string): { seqs: number[]; starts: number[]; end: number } {
  const buf = fs.readFileSync(file);
  const seqs: number[] = [];
  const starts: number[] = [];
  let pos = FILE_HEADER;
  while (pos + RECORD_HEADER <= buf.length && SYNC.every((b, i) => buf[pos + i] === b)) {
    seqs.push(Number(buf.readBigUInt64BE(pos + 16)));
    starts.push(pos);
    pos += RECORD_HEADER + buf.readUInt16BE(pos + 14) + buf.readUInt32BE(pos + 8);
  }
  return { seqs, starts, end: pos };
}

function allZero(file: string, from: number): boolean {
  return fs.readFileSync(file).subarray(from).every((b) => b === 0);
}

function aside(at = fx.dir): string[] {
  const d = path.join(at, "damaged");
  return fs.existsSync(d) ? fs.readdirSync(d) : [];
}

const warnOrError = () => fx.stderr.split("\n").filter((l) => / (WARN|ERROR) /.test(l));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function served(log: FileTopicLog): Promise<number[]> {
  const got = await log.read(1, ALL, ALL);
  for (const m of got) expect({ seq: m.seq, intact: Buffer.from(m.data).equals(Buffer.from(body(m.seq))), time: m.time }).toEqual({ seq: m.seq, intact: true, time: 1000 + m.seq });
  return got.map((m) => m.seq);
}

describe("zero-tail helpers", () => {
  test("zeroRegionEnd: the rest of the block first, then growth rounded up to a block, never past the limit rounded down", () => {
    expect(zeroRegionEnd(100, 0, 64 << 20)).toBe(ZERO_BLOCK);
    expect(zeroRegionEnd(ZERO_BLOCK, 0, 64 << 20)).toBe(ZERO_BLOCK); // already at a block's end: no zeros
    expect(zeroRegionEnd(5000, 4096, 64 << 20)).toBe(3 * ZERO_BLOCK);
    expect(zeroRegionEnd(5000, MAX_ZERO_GROWTH, 16 * 1024)).toBe(16 * 1024);
    expect(zeroRegionEnd(5000, MAX_ZERO_GROWTH, 1024)).toBe(5000); // a small limit: no zeros
    expect(zeroRegionEnd(20_000, 4096, 18_000)).toBe(20_000); // the write is past the limit already
    const growths = [0];
    for (let i = 0; i < 12; i++) growths.push(nextZeroGrowth(growths.at(-1)!));
    expect(growths).toEqual([0, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 262144, 262144, 262144, 262144, 262144]);
  });

  test("writeWithZeros writes the bytes then the zeros in one go; freeTail knows zeros to a block boundary from anything else", () => {
    const file = path.join(fx.dir, "f");
    const fd = fs.openSync(file, "w+");
    try {
      fs.writeSync(fd, Buffer.alloc(10, 0xaa), 0, 10, 0);
      writeWithZeros(fd, Buffer.from("abc"), 10, ZERO_BLOCK - 13);
      expect(fs.fstatSync(fd).size).toBe(ZERO_BLOCK);
      expect(fs.readFileSync(file).subarray(10, 13).toString()).toBe("abc");
      expect(freeTail(fd, 13, ZERO_BLOCK)).toBe(true);
      expect(freeTail(fd, 12, ZERO_BLOCK)).toBe(false); // "c" is not free
      expect(freeTail(fd, 13, ZERO_BLOCK - 1)).toBe(false); // zeros not ending at a block boundary: not ours
      fs.writeSync(fd, Buffer.from([1]), 0, 1, ZERO_BLOCK - 1);
      expect(freeTail(fd, 13, ZERO_BLOCK)).toBe(false);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe("FileTopicLog under --fsync always keeps zeros after its last record", () => {
  test("the segment ends at a block boundary with zeros after the records; a crash copy opens without a warning, serves everything, and appends go on right after the last record", async () => {
    const log = openLog();
    await append(log, 1, 30);
    const file = segmentFiles(fx.dir)[0]!;
    const before = records(file);
    expect(before.seqs).toEqual(range(1, 30));
    expect(fs.statSync(file).size % ZERO_BLOCK).toBe(0);
    expect(fs.statSync(file).size).toBeGreaterThan(before.end);
    expect(allZero(file, before.end)).toBe(true);

    const copy = crashCopy();
    const again = openLog(copy);
    expect([again.nextSeq, again.lost]).toEqual([31, 0]);
    expect(await served(again)).toEqual(range(1, 30));
    expect(warnOrError()).toEqual([]);
    expect(aside(copy)).toEqual([]);
    const copied = segmentFiles(copy)[0]!;
    const sizeAtOpen = fs.statSync(copied).size;
    expect(sizeAtOpen).toBe(fs.statSync(file).size); // nothing cut at open: the zeros are room for appends
    await append(again, 31, 35);
    const after = records(copied);
    expect(after.seqs).toEqual(range(1, 35));
    expect(after.starts[30]).toBe(before.end); // seq 31 went where the last record ended
    expect(fs.statSync(copied).size).toBe(sizeAtOpen); // into the zeros: the file did not grow
    expect(await served(again)).toEqual(range(1, 35));
  });

  test("a clean close cuts the zeros: the file ends with its last record, as segments of older builds do", async () => {
    const log = openLog();
    await append(log, 1, 10);
    const file = segmentFiles(fx.dir)[0]!;
    expect(fs.statSync(file).size).toBeGreaterThan(records(file).end);
    await log.close();
    expect(fs.statSync(file).size).toBe(records(file).end);
    expect(records(file).seqs).toEqual(range(1, 10));
    const again = openLog();
    await append(again, 11, 12);
    expect(await served(again)).toEqual(range(1, 12));
    expect(warnOrError()).toEqual([]);
  });

  test("--fsync never and interval write no zeros", async () => {
    for (const fsync of ["never", "interval"] as const) {
      const at = path.join(fx.dir, fsync);
      const log = openLog(at, { fsync, fsyncIntervalMs: 5 });
      await append(log, 1, 10);
      const file = segmentFiles(at)[0]!;
      expect({ fsync, size: fs.statSync(file).size }).toEqual({ fsync, size: records(file).end });
    }
  });

  test("the zeros grow with use: one small message costs one block, a busy log at most about twice what it wrote", async () => {
    const log = openLog();
    await append(log, 1, 1);
    const file = segmentFiles(fx.dir)[0]!;
    expect(fs.statSync(file).size).toBe(ZERO_BLOCK);
    await append(log, 2, 600);
    const end = records(file).end;
    expect(end).toBeGreaterThan(4 * ZERO_BLOCK);
    expect(fs.statSync(file).size).toBeLessThanOrEqual(2 * end + ZERO_BLOCK);
  });

  test("a commit of more than 64 KiB appends without zeros; small commits after it write zeros again", async () => {
    const log = openLog();
    const big = Array.from({ length: 100 }, (_, i) => log.append(payload(1000, i + 1), 1000 + i + 1)); // one commit of ~100 KiB
    expect(await Promise.all(big)).toEqual(range(1, 100));
    const file = segmentFiles(fx.dir)[0]!;
    expect(fs.statSync(file).size).toBe(records(file).end);
    expect(records(file).end).toBeGreaterThan(MAX_WRITE_FOR_ZEROS);
    expect(await log.append(body(101), 1101)).toBe(101);
    expect(fs.statSync(file).size % ZERO_BLOCK).toBe(0);
    expect(fs.statSync(file).size).toBeGreaterThan(records(file).end);
  });

  test("on a full disk (ENOSPC from the write with zeros) the records are written alone: the commit succeeds, no partial run of zeros is left", async () => {
    const log = openLog();
    await append(log, 1, 1);
    const file = segmentFiles(fx.dir)[0]!;
    expect(fs.statSync(file).size).toBe(ZERO_BLOCK);
    let seq = 2;
    const realWritev = fs.writevSync;
    const writev = spyOn(fs, "writevSync").mockImplementation(((fd: number, buffers: readonly Uint8Array[], position?: number) => {
      realWritev(fd, [buffers[0]!, buffers[1]!.subarray(0, 100)], position); // part of the zeros, then the disk is full
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    }) as unknown as typeof fs.writevSync);
    let calls: number;
    try {
      // Appends fill the block; the one that passes its end writes zeros ahead, and fails.
      for (; seq < 100 && writev.mock.calls.length === 0; seq++) await append(log, seq, seq);
      calls = writev.mock.calls.length;
    } finally {
      writev.mockRestore();
    }
    expect(calls).toBe(1);
    expect(fs.statSync(file).size).toBe(records(file).end); // the records alone: no zeros after them
    expect(fs.statSync(file).size).toBeGreaterThan(ZERO_BLOCK);
    expect(await served(log)).toEqual(range(1, seq - 1));
    await log.close();
    const again = openLog();
    expect([again.nextSeq, again.lost]).toEqual([seq, 0]);
    expect(warnOrError()).toEqual([]);
  });

  test("1,000 topics of one message each take one 4 KiB block each on disk, as before (not a megabyte each)", async () => {
    const n = 1000;
    for (let t = 0; t < n; t++) {
      const log = openLog(path.join(fx.dir, `t${t}`));
      await log.append(body(t + 1), 1);
    }
    let bytes = 0;
    let blocks = 0;
    for (let t = 0; t < n; t++) {
      const st = fs.statSync(segmentFiles(path.join(fx.dir, `t${t}`))[0]!);
      bytes += st.size;
      blocks += st.blocks * 512;
    }
    expect(bytes).toBe(n * ZERO_BLOCK);
    expect(blocks).toBeLessThanOrEqual(n * ZERO_BLOCK);
  });
});

describe("FileTopicLog opening a segment with zeros after its records", () => {
  test("a torn record in the zeros (a power cut in the middle of a commit) is a torn tail as before: copied aside and cut, no seq lost", async () => {
    const log = openLog();
    await append(log, 1, 20);
    const copy = crashCopy();
    const file = segmentFiles(copy)[0]!;
    const { end, starts } = records(file);
    const size = fs.statSync(file).size;
    // Half of a record written into the zeros, the size unchanged (the file's blocks were there).
    const half = fs.readFileSync(file).subarray(starts[5]!, starts[5]! + 20);
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, half, 0, half.length, end);
    fs.closeSync(fd);
    expect(fs.statSync(file).size).toBe(size);
    const again = openLog(copy);
    expect([again.nextSeq, again.lost]).toEqual([21, 0]);
    expect(await served(again)).toEqual(range(1, 20));
    expect(aside(copy)).toEqual([`00000000000000000001.log.${end}-${size}`]);
    expect(fs.statSync(file).size).toBe(end);
    expect(warnOrError().filter((l) => / ERROR /.test(l))).toEqual([]);
    expect(warnOrError().join("\n")).toContain(`cut ${size - end} bytes of a torn or damaged end`);
    await append(again, 21, 22);
    expect(records(file).seqs).toEqual(range(1, 22));
  });

  test("zeros in the middle followed by intact records (bad input): the records after them are kept, the zeroed one is reported lost once", async () => {
    const log = openLog();
    await append(log, 1, 20);
    const copy = crashCopy();
    const file = segmentFiles(copy)[0]!;
    const { starts, end } = records(file);
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, new Uint8Array(starts[10]! - starts[9]!), 0, starts[10]! - starts[9]!, starts[9]!); // seq 10 zeroed
    fs.closeSync(fd);
    const again = openLog(copy);
    expect([again.nextSeq, again.lost]).toEqual([21, 1]);
    expect(await served(again)).toEqual([...range(1, 9), ...range(11, 20)]);
    expect(aside(copy)).toEqual([`00000000000000000001.log.${starts[9]}-${starts[10]}`]);
    expect(warnOrError().filter((l) => / ERROR /.test(l)).join("\n")).toContain("lost 1 message, seq 10");
    await append(again, 21, 21);
    const at = fs.readFileSync(file).subarray(end); // seq 21 went right after seq 20, not into the zeros in the middle
    expect([[...at.subarray(0, 4)], Number(at.readBigUInt64BE(16))]).toEqual([SYNC, 21]);
    await again.close();
    const errors = warnOrError().length;
    const third = openLog(copy);
    expect([third.nextSeq, third.lost]).toEqual([22, 1]);
    expect(await served(third)).toEqual([...range(1, 9), ...range(11, 21)]);
    expect(warnOrError().length).toBe(errors); // reported once
  });
});

describe("FileTopicLog segment rolls with zeros ahead", () => {
  const SMALL: Partial<TopicLogOptions> = { maxSegmentBytes: 16 * 1024 };

  test("sealed segments end with their last record and have a checkpoint a restart trusts; the newest's zeros stay within the size limit", async () => {
    const log = openLog(fx.dir, SMALL);
    await append(log, 1, 800);
    const files = segmentFiles(fx.dir);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files.slice(0, -1)) {
      expect({ f, size: fs.statSync(f).size }).toEqual({ f, size: records(f).end });
      expect(fs.existsSync(f.replace(/\.log$/, ".ckpt"))).toBe(true);
    }
    const newest = files.at(-1)!;
    expect(fs.statSync(newest).size).toBeLessThanOrEqual(16 * 1024);
    expect(allZero(newest, records(newest).end)).toBe(true);
    expect(files.flatMap((f) => records(f).seqs)).toEqual(range(1, 800));

    // A restart from the crash copy reads the sealed segments' checkpoints, not their records.
    const copy = crashCopy();
    const read = spyOn(fs, "readSync");
    let again: FileTopicLog;
    let bytes: number;
    try {
      again = openLog(copy, SMALL);
      bytes = read.mock.calls.reduce((n, c) => n + Number((c as unknown[])[3] ?? 0), 0);
    } finally {
      read.mockRestore();
    }
    expect(bytes).toBeLessThan(2 * 16 * 1024 + 8 * 1024);
    expect([again.nextSeq, again.lost]).toEqual([801, 0]);
    expect(await served(again)).toEqual(range(1, 800));
    await append(again, 801, 900);
    expect(await served(again)).toEqual(range(1, 900));
    expect(warnOrError()).toEqual([]);
  });

  test("a sealed segment whose cut of the zeros did not reach the disk is scanned, sealed again and cut, without a warning", async () => {
    const log = openLog(fx.dir, SMALL);
    await append(log, 1, 400);
    await log.close();
    expect(segmentFiles(fx.dir).length).toBeGreaterThan(1);
    const sealed = segmentFiles(fx.dir)[0]!;
    const end = fs.statSync(sealed).size;
    fs.truncateSync(sealed, Math.ceil((end + 1) / ZERO_BLOCK) * ZERO_BLOCK); // zeros back to the block's end
    const again = openLog(fx.dir, SMALL);
    expect([again.nextSeq, again.lost]).toEqual([401, 0]);
    expect(await served(again)).toEqual(range(1, 400));
    expect(fs.statSync(sealed).size).toBe(end);
    expect(warnOrError()).toEqual([]);
    expect(aside()).toEqual([]);
  });
});
