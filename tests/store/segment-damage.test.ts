/**
 * "Acknowledged means kept" on real files: damage a log the way a bad disk, a careless
 * operator or a crash would, reopen, and check exactly which seqs survive, the exact count
 * reported lost (once), that the damaged bytes were copied aside, and that the next append
 * gets a seq above every seq appended before.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { FILE_HEADER, RECORD_HEADER } from "../../lib/store/segment.ts";
import { V1_RECORD_HEADER } from "../../lib/store/segment-v1.ts";
import { flipByte, layout as kitLayout, append, body, logDirPerTest, segmentFiles as kitSegmentFiles, v1Record } from "./segment-kit.ts";
import { FileTopicLog, type TopicLogOptions } from "../../lib/store/topic-log.ts";
import { decodeMeta, encodeMeta } from "../../lib/store/topic-meta.ts";

const ALL = Number.MAX_SAFE_INTEGER;
const N = 60;
/** Small segments: N records make about seven of them. */
const OPTIONS: TopicLogOptions = { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 1024 };

const fx = logDirPerTest("mq-damage-");

function openLog(at = fx.dir): FileTopicLog {
  const log = FileTopicLog.open(at, OPTIONS);
  fx.opened.push(log);
  return log;
}

async function writeLog(n = N): Promise<void> {
  const log = openLog();
  await append(log, 1, n);
  await log.close();
}

const segmentFiles = (at = fx.dir) => kitSegmentFiles(at);
const layout = (at = fx.dir) => kitLayout(at);

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** Checks that `log` serves exactly `seqs`, with their times and payloads. */
async function expectServed(log: FileTopicLog, seqs: number[]): Promise<void> {
  const got = await log.read(1, ALL, ALL);
  expect(got.map((m) => m.seq)).toEqual(seqs);
  for (const m of got) expect({ seq: m.seq, time: m.time, intact: Buffer.from(m.data).equals(Buffer.from(body(m.seq))) }).toEqual({ seq: m.seq, time: 1000 + m.seq, intact: true });
  // Reading from each seq, one at a time, gives the next surviving one.
  for (const s of [1, ...seqs.map((x) => x + 1)].filter((x) => x <= N)) {
    const next = seqs.find((x) => x >= s);
    expect({ from: s, got: (await log.read(s, 1, ALL)).map((m) => m.seq) }).toEqual({ from: s, got: next === undefined ? [] : [next] });
  }
}

/** The files in `damaged/` and their bytes. */
function aside(at = fx.dir): Map<string, Buffer> {
  const d = path.join(at, "damaged");
  const out = new Map<string, Buffer>();
  if (fs.existsSync(d)) for (const n of fs.readdirSync(d).sort()) out.set(n, fs.readFileSync(path.join(d, n)));
  return out;
}

function errorLines(): string[] {
  return fx.stderr.split("\n").filter((l) => / ERROR |\[error\]/.test(l));
}

/**
 * The common ending: the next append gets `N + 1` (above every seq appended before), the
 * log survives a reopen serving `seqs` plus the new one, and the reopen reports nothing new.
 */
async function expectGoesOn(log: FileTopicLog, seqs: number[], lost: number): Promise<void> {
  expect(log.nextSeq).toBe(N + 1);
  expect(await log.append(body(N + 1), 1000 + N + 1)).toBe(N + 1);
  await log.close();
  const errors = errorLines().length;
  const again = openLog();
  expect(again.lost).toBe(lost);
  expect((await again.read(1, ALL, ALL)).map((m) => m.seq)).toEqual([...seqs, N + 1]);
  expect(errorLines().length).toBe(errors); // counted once, reported once
}

describe("FileTopicLog loses only the damaged records", () => {
  test("one flipped byte in the middle of the newest segment costs that record only", async () => {
    await writeLog();
    const newest = segmentFiles().at(-1)!;
    const inNewest = layout().filter((r) => r.file === newest);
    const victim = inNewest[Math.floor(inNewest.length / 2)]!;
    flipByte(newest, victim.start + RECORD_HEADER + 5);
    const damaged = fs.readFileSync(newest).subarray(victim.start, victim.end);
    const log = openLog();
    const survivors = range(1, N).filter((s) => s !== victim.seq);
    await expectServed(log, survivors);
    expect(log.lost).toBe(1);
    expect(errorLines()).toHaveLength(1);
    expect(errorLines()[0]).toContain(`lost 1 message, seq ${victim.seq}: damaged bytes ${victim.start}..${victim.end} of segment ${path.basename(newest)}`);
    expect(aside()).toEqual(new Map([[`${path.basename(newest)}.${victim.start}-${victim.end}`, Buffer.from(damaged)]]));
    await expectGoesOn(log, survivors, 1);
  });

  test.each([
    ["found when it is read (the sealed segment's checkpoint is trusted at open)", false],
    ["found at open (the sealed segment has no checkpoint)", true],
  ])("one flipped byte in the middle of a middle segment costs that record only, %s", async (_name, dropCheckpoint) => {
    await writeLog();
    const middle = segmentFiles()[2]!;
    const inMiddle = layout().filter((r) => r.file === middle);
    const victim = inMiddle[Math.floor(inMiddle.length / 2)]!;
    flipByte(middle, victim.start + RECORD_HEADER + 5);
    if (dropCheckpoint) fs.rmSync(middle.replace(/\.log$/, ".ckpt"));
    const damaged = fs.readFileSync(middle).subarray(victim.start, victim.end);
    const log = openLog();
    const survivors = range(1, N).filter((s) => s !== victim.seq);
    await expectServed(log, survivors);
    expect(log.lost).toBe(1);
    expect(errorLines()).toHaveLength(1);
    expect(errorLines()[0]).toContain(`lost 1 message, seq ${victim.seq}: damaged bytes ${victim.start}..${victim.end} of segment ${path.basename(middle)}`);
    expect(aside()).toEqual(new Map([[`${path.basename(middle)}.${victim.start}-${victim.end}`, Buffer.from(damaged)]]));
    await expectGoesOn(log, survivors, 1);
  });

  test("a damaged run of several records costs exactly those, and the reader resyncs at the next intact one", async () => {
    await writeLog();
    const middle = segmentFiles()[1]!;
    const inMiddle = layout().filter((r) => r.file === middle);
    const [a, b] = [inMiddle[1]!, inMiddle[3]!];
    // Zeros from inside record a to inside record b: a, the ones between, and b are gone.
    const buf = fs.readFileSync(middle);
    buf.fill(0, a.start + 3, b.start + 40);
    fs.writeFileSync(middle, buf);
    const log = openLog();
    const survivors = range(1, N).filter((s) => s < a.seq || s > b.seq);
    await expectServed(log, survivors);
    expect(log.lost).toBe(b.seq - a.seq + 1);
    expect(errorLines()[0]).toContain(`lost ${b.seq - a.seq + 1} messages, seqs ${a.seq}..${b.seq}`);
    expect([...aside().values()].map((x) => x.length)).toEqual([b.end - a.start]);
    await expectGoesOn(log, survivors, b.seq - a.seq + 1);
  });
});

describe("FileTopicLog damage that appears while it runs", () => {
  test("a record of the newest segment damaged under a running log is reported once when read, and appends go on", async () => {
    await writeLog();
    const victim = layout().filter((r) => r.file === segmentFiles().at(-1))[1]!;
    // Reopened, so the records come from the disk (an appending log serves its newest from memory).
    const running = openLog();
    expect(running.lost).toBe(0);
    flipByte(victim.file, victim.start + RECORD_HEADER + 1);
    const survivors = range(1, N).filter((s) => s !== victim.seq);
    expect((await running.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(survivors);
    expect(running.lost).toBe(1);
    expect((await running.read(victim.seq, 2, ALL)).map((m) => m.seq)).toEqual([victim.seq + 1, victim.seq + 2]);
    expect(errorLines()).toHaveLength(1);
    expect(errorLines()[0]).toContain(`lost 1 message, seq ${victim.seq}: damaged bytes ${victim.start}..${victim.end} of segment ${path.basename(victim.file)}, found while reading`);
    expect([...aside().keys()]).toEqual([`${path.basename(victim.file)}.${victim.start}-${victim.end}`]);
    await expectGoesOn(running, survivors, 1);
  });
});

describe("FileTopicLog never hands a seq out twice after losing the tail", () => {
  test("the newest segment cut in the middle of a record: the cut records are counted lost, the cut bytes kept aside", async () => {
    await writeLog();
    const newest = segmentFiles().at(-1)!;
    const inNewest = layout().filter((r) => r.file === newest);
    const victim = inNewest[Math.floor(inNewest.length / 2)]!;
    const cutBytes = fs.readFileSync(newest).subarray(victim.start, victim.start + 10);
    fs.truncateSync(newest, victim.start + 10);
    const log = openLog();
    const survivors = range(1, victim.seq - 1);
    await expectServed(log, survivors);
    expect(log.lost).toBe(N - victim.seq + 1);
    expect(errorLines()[0]).toContain(`lost ${N - victim.seq + 1} messages, seqs ${victim.seq}..${N}`);
    expect(aside()).toEqual(new Map([[`${path.basename(newest)}.${victim.start}-${victim.start + 10}`, Buffer.from(cutBytes)]]));
    expect(fs.statSync(newest).size).toBe(victim.start);
    await expectGoesOn(log, survivors, N - victim.seq + 1);
  });

  test("the newest segment cut at a record boundary: the records after it are counted lost", async () => {
    await writeLog();
    const newest = segmentFiles().at(-1)!;
    const inNewest = layout().filter((r) => r.file === newest);
    const victim = inNewest[Math.floor(inNewest.length / 2)]!;
    fs.truncateSync(newest, victim.start);
    const log = openLog();
    const survivors = range(1, victim.seq - 1);
    await expectServed(log, survivors);
    expect(log.lost).toBe(N - victim.seq + 1);
    expect(errorLines()[0]).toContain(`lost ${N - victim.seq + 1} messages, seqs ${victim.seq}..${N}: missing at the end of the log`);
    expect(aside().size).toBe(0);
    await expectGoesOn(log, survivors, N - victim.seq + 1);
  });

  test("a deleted middle segment: its records are counted lost, the ones around it served", async () => {
    await writeLog();
    const middle = segmentFiles()[3]!;
    const gone = layout().filter((r) => r.file === middle).map((r) => r.seq);
    fs.rmSync(middle);
    fs.rmSync(middle.replace(/\.log$/, ".ckpt"));
    const log = openLog();
    const survivors = range(1, N).filter((s) => !gone.includes(s));
    await expectServed(log, survivors);
    expect(log.lost).toBe(gone.length);
    expect(errorLines()).toHaveLength(1);
    expect(errorLines()[0]).toContain(`lost ${gone.length} messages, seqs ${gone[0]}..${gone.at(-1)}: no segment holds them`);
    await expectGoesOn(log, survivors, gone.length);
  });

  test("a deleted newest segment: its records are counted lost (the head file says how far the log went)", async () => {
    await writeLog();
    const newest = segmentFiles().at(-1)!;
    const gone = layout().filter((r) => r.file === newest).map((r) => r.seq);
    fs.rmSync(newest);
    const log = openLog();
    const survivors = range(1, N).filter((s) => !gone.includes(s));
    await expectServed(log, survivors);
    expect(log.lost).toBe(gone.length);
    expect(errorLines()[0]).toContain(`lost ${gone.length} messages, seqs ${gone[0]}..${N}: the newest segment ${path.basename(newest)} is missing`);
    await expectGoesOn(log, survivors, gone.length);
  });
});

describe("FileTopicLog after a crash (a copy of the files taken while the log was open)", () => {
  /** Appends 1..N and copies the directory without closing the log: what SIGKILL would leave. */
  async function crashCopy(): Promise<string> {
    const log = openLog();
    await append(log, 1, N);
    const copy = `${fx.dir}-crash`;
    fs.cpSync(fx.dir, copy, { recursive: true });
    return copy;
  }

  test("a torn write of a record never acknowledged costs no seq", async () => {
    const copy = await crashCopy();
    const newest = segmentFiles(copy).at(-1)!;
    const good = fs.statSync(newest).size;
    fs.appendFileSync(newest, Buffer.from(fs.readFileSync(newest).subarray(FILE_HEADER, FILE_HEADER + 20))); // half a record
    const log = openLog(copy);
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, N));
    expect([log.nextSeq, log.lost]).toEqual([N + 1, 0]);
    expect(fs.statSync(newest).size).toBe(good);
    expect(errorLines()).toEqual([]);
  });

  test("a tail cut at a record boundary is counted exactly: the head file, rewritten at every commit, knows the next seq", async () => {
    const copy = await crashCopy();
    const newest = segmentFiles(copy).at(-1)!;
    const last = layout(copy).filter((r) => r.file === newest).at(-1)!;
    fs.truncateSync(newest, last.start);
    const log = openLog(copy);
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, N - 1));
    expect([log.nextSeq, log.lost]).toEqual([N + 1, 1]);
    expect(await log.append(body(N + 1), 1)).toBe(N + 1);
  });

  /** What a reboot leaves: `head` and `meta` written in another boot of the machine. */
  function anotherBoot(copy: string): void {
    const head = fs.readFileSync(path.join(copy, "head"));
    head.writeUInt32BE((head.readUInt32BE(24) + 1) >>> 0, 24);
    head.writeUInt32BE(Bun.hash.crc32(head.subarray(0, 28)), 28);
    fs.writeFileSync(path.join(copy, "head"), head);
    const meta = decodeMeta(fs.readFileSync(path.join(copy, "meta"), "utf8"))!;
    fs.writeFileSync(path.join(copy, "meta"), encodeMeta(meta, (meta.boot! + 1) >>> 0 || 1));
  }

  // A kill between a new topic's first reservation and its head's first write left the head
  // empty: 65,536 seqs were reported "may be lost … the machine restarted" and skipped.
  for (const [what, damage] of [
    ["empty (killed before its first write)", (f: string) => fs.writeFileSync(f, "")],
    ["missing", (f: string) => fs.rmSync(f)],
    ["damaged", (f: string) => flipByte(f, 10)],
  ] as const) {
    test(`a head file ${what} after a kill, with no reboot: the scan is exact, nothing is lost, no seq is skipped`, async () => {
      const copy = await crashCopy();
      damage(path.join(copy, "head"));
      const log = openLog(copy);
      expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, N));
      expect([log.nextSeq, log.lost]).toEqual([N + 1, 0]);
      expect(errorLines()).toEqual([]);
      expect(await log.append(body(N + 1), 1)).toBe(N + 1);
    });
  }

  test("an empty head after a reboot: seqs go on above the reservation, the loss is reported with its reason", async () => {
    const copy = await crashCopy();
    anotherBoot(copy);
    fs.writeFileSync(path.join(copy, "head"), "");
    const reserved = decodeMeta(fs.readFileSync(path.join(copy, "meta"), "utf8"))!.reserved;
    const log = openLog(copy);
    expect(log.nextSeq).toBe(reserved);
    expect(log.lost).toBe(reserved - (N + 1));
    expect(errorLines()[0]).toContain(`up to ${reserved - (N + 1)} messages may be lost, seqs ${N + 1}..${reserved - 1}`);
    expect(errorLines()[0]).toContain("the machine restarted since");
  });

  test("without a head file to trust (a power cut under fsync never), seqs go on above the reservation on disk", async () => {
    const copy = await crashCopy();
    // Files written before another boot of the machine: its page cache did not survive.
    anotherBoot(copy);
    const reserved = JSON.parse(fs.readFileSync(path.join(copy, "meta"), "utf8").split("\n")[0]!).reserved as number;
    expect(reserved).toBeGreaterThan(N + 1);
    const log = openLog(copy);
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, N));
    expect(log.nextSeq).toBe(reserved);
    expect(log.lost).toBe(reserved - (N + 1));
    expect(errorLines()[0]).toContain(`up to ${reserved - (N + 1)} messages may be lost, seqs ${N + 1}..${reserved - 1}`);
    expect(await log.append(body(1), 1)).toBe(reserved);
  });
});

describe("FileTopicLog start-up", () => {
  test("a restart reads the newest segment, and of each sealed one only its checkpoint, header and last record", async () => {
    await writeLog(400);
    const files = segmentFiles();
    expect(files.length).toBeGreaterThan(30);
    const total = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    const newest = fs.statSync(files.at(-1)!).size;
    const read = spyOn(fs, "readSync");
    let log: FileTopicLog;
    let bytes: number;
    let calls: number;
    try {
      log = openLog();
      calls = read.mock.calls.length;
      bytes = read.mock.calls.reduce((n, c) => n + Number((c as unknown[])[3] ?? 0), 0);
    } finally {
      read.mockRestore();
    }
    // Header (32) + last record (< 200 bytes here) per sealed segment, plus the newest in full.
    expect(bytes).toBeLessThanOrEqual(newest + (files.length - 1) * (FILE_HEADER + 2 * 200));
    expect(bytes).toBeLessThan(total / 2);
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, 400));
  });

  test("a checkpoint that no longer matches its segment is not trusted: the segment is scanned", async () => {
    await writeLog();
    const middle = segmentFiles()[2]!;
    fs.appendFileSync(middle, Buffer.alloc(50, 0xab)); // its size no longer matches the checkpoint
    const log = openLog();
    await expectServed(log, range(1, N));
    expect(log.lost).toBe(0);
    expect([...aside().values()]).toEqual([Buffer.alloc(50, 0xab)]);
  });
});

describe("FileTopicLog retention", () => {
  test("a deletion interrupted after the retention point was recorded is finished at open, and nothing is reported lost", async () => {
    await writeLog();
    const files = segmentFiles();
    const keep = layout().find((r) => r.file === files[2])!.seq;
    // What a crash between writing `meta` and removing the files leaves.
    const meta = decodeMeta(fs.readFileSync(path.join(fx.dir, "meta"), "utf8"))!;
    fs.writeFileSync(path.join(fx.dir, "meta"), encodeMeta({ ...meta, first: keep }));
    const log = openLog();
    expect(segmentFiles()).toEqual(files.slice(2));
    expect([log.firstSeq, log.lost]).toEqual([keep, 0]);
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(keep, N));
    expect(errorLines()).toEqual([]);
  });

  test("trim deletes whole old segments without reporting them lost, also after a reopen", async () => {
    await writeLog();
    const files = segmentFiles();
    const keep = layout().find((r) => r.file === files[3])!.seq;
    const log = openLog();
    expect(await log.trim(keep, { maxAgeMs: 0, maxBytes: Infinity }, Date.now() + 60_000)).toBe(keep - 1);
    expect([log.firstSeq, log.count, log.lost]).toEqual([keep, N - keep + 1, 0]);
    await log.close();
    const again = openLog();
    expect([again.firstSeq, again.count, again.lost]).toEqual([keep, N - keep + 1, 0]);
    expect((await again.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(keep, N));
    expect(errorLines()).toEqual([]);
  });
});

describe("FileTopicLog converts segments of format 1 (mq 0.1) once", () => {
  /** Segments 1..20, 21..40, 41..50 as mq 0.1 wrote them; returns each record's offset in its file. */
  function writeV1(): Map<number, { file: string; start: number; end: number }> {
    const where = new Map<number, { file: string; start: number; end: number }>();
    for (const [base, last] of [[1, 20], [21, 40], [41, 50]] as const) {
      const file = path.join(fx.dir, `${String(base).padStart(20, "0")}.log`);
      const parts: Buffer[] = [];
      let pos = 0;
      for (let seq = base; seq <= last; seq++) {
        const rec = v1Record(seq, 1000 + seq, body(seq));
        where.set(seq, { file, start: pos, end: pos + rec.length });
        parts.push(rec);
        pos += rec.length;
      }
      fs.writeFileSync(file, Buffer.concat(parts));
    }
    return where;
  }

  test("a data directory of format 1 opens with every record, converted to format 2 crash-safely", async () => {
    writeV1();
    fs.writeFileSync(path.join(fx.dir, `${String(21).padStart(20, "0")}.log.convert`), "left by a crash during a conversion");
    const log = openLog();
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, 50));
    for (const m of await log.read(1, ALL, ALL)) expect(Buffer.from(m.data).equals(Buffer.from(body(m.seq))) && m.time === 1000 + m.seq).toBe(true);
    expect([log.nextSeq, log.lost]).toEqual([51, 0]);
    for (const f of segmentFiles()) expect(fs.readFileSync(f).subarray(0, 4).toString()).toBe("MQSG");
    expect(fs.readdirSync(fx.dir).filter((n) => n.endsWith(".convert"))).toEqual([]);
    expect(fx.stderr.match(/converted segment \d+\.log to format 2/g)).toHaveLength(3);
    expect(await log.append(body(51), 1051)).toBe(51);
    await log.close();
    // Converted once: the next start has nothing to convert.
    fx.stderr = "";
    const again = openLog();
    expect((await again.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, 51));
    expect(fx.stderr).not.toContain("converted");
  });

  test("a damaged record of a format-1 segment costs that record only; its bytes go aside before the file is replaced", async () => {
    const where = writeV1();
    const victim = where.get(30)!;
    flipByte(victim.file, victim.start + V1_RECORD_HEADER + 2);
    const damaged = fs.readFileSync(victim.file).subarray(victim.start, victim.end);
    const log = openLog();
    expect((await log.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(range(1, 50).filter((s) => s !== 30));
    expect([log.nextSeq, log.lost]).toEqual([51, 1]);
    expect(errorLines()[0]).toContain("lost 1 message, seq 30");
    expect(aside()).toEqual(new Map([[`${path.basename(victim.file)}.${victim.start}-${victim.end}`, Buffer.from(damaged)]]));
  });
});
