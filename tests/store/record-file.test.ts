/**
 * RecordFile on real files: two copies, a checksum per record, damage in one copy costs
 * nothing and damage in both costs only the damaged records; crashes at any instant; the
 * previous format is read and converted.
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { HEADER_BYTES, mirrorOf, RecordFile, type Record_ } from "../../lib/store/record-file.ts";
import { captureLog, copiesOf, flipBit, flipBitInRecord, legacyBytes, level, recordSpans } from "./damage-kit.ts";

let dir: string;
let opened: RecordFile[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-recordfile-"));
  opened = [];
});

afterEach(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

const file = () => path.join(dir, "records");
const rec = (i: number) => ({ i, text: "x".repeat(i) });
const size = (f: string) => fs.statSync(f).size;

interface Opened {
  rf: RecordFile;
  records: Record_[];
  /** How many records the file reported lost (0 when `lost` was not called). */
  lost: number;
  lines: string[];
}

/** Opens the file, collecting what is replayed; the snapshot written by a repair is what was replayed. */
async function openRecords(): Promise<Opened> {
  const records: Record_[] = [];
  let lost = 0;
  const { result: rf, lines } = await captureLog(() =>
    RecordFile.open(file(), {
      apply: (r) => void records.push(r),
      snapshot: () => records,
      lost: (l) => void (lost = l.count),
    }),
  );
  opened.push(rf);
  return { rf, records, lost, lines };
}

/** Writes records rec(1)..rec(n) (even ones durable) and closes. */
async function writeRecords(n: number): Promise<void> {
  const { rf } = await openRecords();
  for (let i = 1; i <= n; i++) await rf.append(rec(i), i % 2 === 0);
  await rf.close();
}

function sameCopies(): boolean {
  const [a, b] = copiesOf(file());
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe("RecordFile", () => {
  test("RecordFile replays every record in order after reopen, from two identical copies", async () => {
    await writeRecords(5);
    expect(sameCopies()).toBe(true);
    const again = await openRecords();
    expect(again.records).toEqual([1, 2, 3, 4, 5].map(rec));
    expect(again.lines).toEqual([]);
  });

  test("RecordFile creates both copies, header only, when absent", async () => {
    const { rf, records, lines } = await openRecords();
    expect(records).toEqual([]);
    expect(rf.bytes).toBe(HEADER_BYTES);
    expect(fs.readdirSync(dir).sort()).toEqual(["records", "records.mirror"]);
    expect(size(file())).toBe(HEADER_BYTES);
    expect(lines).toEqual([]);
  });

  test("RecordFile skips empty records on replay", async () => {
    const { rf } = await openRecords();
    await rf.append({}, false);
    await rf.append(rec(1), true);
    await rf.close();
    expect((await openRecords()).records).toEqual([rec(1)]);
  });

  test("RecordFile shares one write and one fdatasync per copy among records appended in one tick", async () => {
    const { rf } = await openRecords();
    const fsync = spyOn(fs, "fdatasync");
    const write = spyOn(fs, "writeSync");
    try {
      await Promise.all([1, 2, 3, 4].map((i) => rf.append(rec(i), true)));
      expect(fsync).toHaveBeenCalledTimes(2);
      expect(write).toHaveBeenCalledTimes(2);
    } finally {
      fsync.mockRestore();
      write.mockRestore();
    }
  });

  test("RecordFile.append does not fsync a record that is not durable", async () => {
    const { rf } = await openRecords();
    const fsync = spyOn(fs, "fdatasync");
    try {
      await rf.append(rec(1), false);
      expect(fsync).toHaveBeenCalledTimes(0);
      await rf.sync();
      expect(fsync).toHaveBeenCalledTimes(2);
    } finally {
      fsync.mockRestore();
    }
  });

  test("RecordFile: records that are not durable cost no fsync when the pool closes their copies to make room; sync makes them durable after all", async () => {
    // Two record files (four copies) in a pool of two open files, written in turn: each append
    // closes the other file's copies, as acks on 10,000 topics did with `subscribers` files.
    const pool = new OpenFiles(2);
    const owner = { apply: () => {}, snapshot: () => [] };
    const a = RecordFile.open(path.join(dir, "a"), owner, pool);
    const b = RecordFile.open(path.join(dir, "b"), owner, pool);
    opened.push(a, b);
    const fsync = spyOn(fs, "fsyncSync");
    const fdatasync = spyOn(fs, "fdatasync");
    try {
      for (let i = 1; i <= 20; i++) await (i % 2 ? a : b).append(rec(i), false);
      expect(pool.evictions).toBeGreaterThanOrEqual(30);
      expect(fsync).toHaveBeenCalledTimes(0);
      expect(fdatasync).toHaveBeenCalledTimes(0);
      await a.sync();
      expect(fdatasync).toHaveBeenCalledTimes(2); // both copies of `a`, opened again
    } finally {
      fsync.mockRestore();
      fdatasync.mockRestore();
    }
    const replayed = (name: string) => {
      const got: Record_[] = [];
      RecordFile.open(path.join(dir, name), { apply: (r) => void got.push(r), snapshot: () => got }).close();
      return got;
    };
    await a.close();
    await b.close();
    expect(replayed("a")).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19].map(rec));
    expect(replayed("b")).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].map(rec));
  });

  test("RecordFile.rewrite replaces both copies with the snapshot and keeps later appends", async () => {
    const { rf } = await openRecords();
    for (let i = 1; i <= 20; i++) await rf.append(rec(i), false);
    const before = rf.bytes;
    // An append still pending when rewrite starts is written before the snapshot is taken.
    void rf.append(rec(21), false);
    let snapshotAt = -1;
    await rf.rewrite(() => {
      snapshotAt = rf.bytes;
      return [{ all: 21 }];
    });
    expect(snapshotAt).toBeGreaterThan(before);
    expect(rf.bytes).toBe(size(file()));
    expect(rf.bytes).toBeLessThan(before);
    await rf.append(rec(22), true);
    await rf.close();
    expect(sameCopies()).toBe(true);
    expect((await openRecords()).records).toEqual([{ all: 21 }, rec(22)]);
    expect(fs.readdirSync(dir).sort()).toEqual(["records", "records.mirror"]); // no temp file left behind
  });
});

describe("RecordFile mark", () => {
  test("RecordFile keeps the mark in both headers, written with the record that raised it", async () => {
    const { rf } = await openRecords();
    expect(rf.mark).toBe(0);
    await rf.append(rec(1), true, 2);
    await rf.append(rec(2), true, 1); // never lowered
    expect(rf.mark).toBe(2);
    await rf.close();
    expect((await openRecords()).rf.mark).toBe(2);
  });

  test("RecordFile keeps the mark when every record is lost (both copies cut back to their headers)", async () => {
    const { rf } = await openRecords();
    for (let i = 1; i <= 3; i++) await rf.append(rec(i), true, i + 1);
    await rf.close();
    for (const f of copiesOf(file())) fs.truncateSync(f, HEADER_BYTES);
    const again = await openRecords();
    expect(again.records).toEqual([]);
    expect(again.rf.mark).toBe(4);
  });

  test("RecordFile keeps the mark across a rewrite", async () => {
    const { rf } = await openRecords();
    await rf.append(rec(1), true, 7);
    await rf.rewrite(() => []);
    await rf.close();
    expect((await openRecords()).rf.mark).toBe(7);
  });

  test("RecordFile takes the mark from the other copy when one header is damaged", async () => {
    const { rf } = await openRecords();
    await rf.append(rec(1), true, 9);
    await rf.close();
    flipBit(file(), 17); // inside the mark of copy A
    const again = await openRecords();
    expect(again.rf.mark).toBe(9);
    expect(again.records).toEqual([rec(1)]);
    expect(level(again.lines, "error")).toEqual([expect.stringContaining(`${file()}: header unreadable`)]);
  });
});

describe("RecordFile damage in one copy", () => {
  test.each([
    ["the first record of copy A", 0, 0],
    ["the first record of copy B", 1, 0],
    ["a middle record of copy A", 0, 2],
    ["the last record of copy A", 0, 4],
  ])("RecordFile recovers %s from the other copy and says so at ERROR", async (_name, copy, index) => {
    await writeRecords(5);
    const damaged = copiesOf(file())[copy]!;
    const other = copiesOf(file())[1 - copy]!;
    flipBitInRecord(damaged, index);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3, 4, 5].map(rec));
    expect(lost).toBe(0);
    // Damage before a good record is "damaged bytes"; at the end it looks like a torn write.
    expect(level(lines, "error")).toEqual([expect.stringContaining(`${damaged}: ${index < 4 ? "damaged bytes at" : "35 bytes at offset 162 that are not a whole record"}`)]);
    expect(level(lines, "error")[0]).toContain(`record ${index} of 5 recovered from ${other} (${JSON.stringify(rec(index + 1))})`);
    // Repaired: both copies whole and equal again, and the next open is silent.
    expect(sameCopies()).toBe(true);
    const again = await openRecords();
    expect(again.records).toEqual([1, 2, 3, 4, 5].map(rec));
    expect(again.lines).toEqual([]);
  });

  test.each([
    ["truncated to 0 bytes", (f: string) => fs.truncateSync(f, 0), "empty (0 bytes)"],
    ["deleted", (f: string) => fs.rmSync(f), "missing"],
    ["cut back to its header", (f: string) => fs.truncateSync(f, HEADER_BYTES), "records 0-4 of 5 recovered from"],
    ["overwritten with zeros", (f: string) => fs.writeFileSync(f, new Uint8Array(size(f))), "header unreadable"],
  ])("RecordFile recovers every record from copy B when copy A is %s", async (_name, damage, says) => {
    await writeRecords(5);
    damage(file());
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3, 4, 5].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "error")).toEqual([expect.stringContaining(says)]);
    expect(level(lines, "error")[0]).toStartWith(`[error] [store] ${file()}:`);
    expect(sameCopies()).toBe(true);
  });

  test("RecordFile recovers every record from copy A when copy B is truncated to 0 bytes", async () => {
    await writeRecords(3);
    fs.truncateSync(mirrorOf(file()), 0);
    const { records, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3].map(rec));
    expect(level(lines, "error")).toEqual([expect.stringContaining(`${mirrorOf(file())}: empty (0 bytes); records 0-2 of 3 recovered from ${file()}`)]);
  });

  test("RecordFile recovers records damaged in different places of the two copies", async () => {
    await writeRecords(6);
    flipBitInRecord(file(), 1);
    flipBitInRecord(mirrorOf(file()), 4);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3, 4, 5, 6].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "error")).toHaveLength(2);
  });
});

describe("RecordFile damage in both copies", () => {
  test("RecordFile loses only the record damaged in both copies, and reports it", async () => {
    await writeRecords(5);
    for (const f of copiesOf(file())) flipBitInRecord(f, 0);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([2, 3, 4, 5].map(rec));
    expect(lost).toBe(1);
    expect(level(lines, "error")).toContainEqual(expect.stringContaining(`${file()} and ${mirrorOf(file())}: record 0 of 5 damaged in both copies: what they recorded is lost`));
    // The survivors are written back to both copies; the loss is not reported again.
    const again = await openRecords();
    expect(again.records).toEqual([2, 3, 4, 5].map(rec));
    expect(again.lost).toBe(0);
    expect(again.lines).toEqual([]);
  });

  test("RecordFile reports a possible loss when neither copy ends cleanly", async () => {
    await writeRecords(3);
    for (const f of copiesOf(file())) fs.truncateSync(f, size(f) - 2);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2].map(rec));
    expect(lost).toBe(1);
    expect(level(lines, "error")).toContainEqual(expect.stringContaining("neither copy ends cleanly"));
  });
});

describe("RecordFile crashes", () => {
  test("RecordFile keeps a record that reached copy A only (a crash between the two writes), with a warning", async () => {
    await writeRecords(3);
    const b = mirrorOf(file());
    const spans = recordSpans(b);
    fs.truncateSync(b, spans[2]!.offset);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "error")).toEqual([]);
    expect(level(lines, "warn")).toEqual([expect.stringContaining(`${b}: record 2 of 3 recovered from ${file()}`)]);
  });

  test.each([1, 4, 8, 19, 20, -1])("RecordFile drops a last record torn after %i bytes in copy A (never in B), with a warning", async (keep) => {
    await writeRecords(3);
    const b = mirrorOf(file());
    const last = recordSpans(file())[2]!;
    fs.truncateSync(file(), keep >= 0 ? last.offset + keep : last.offset + last.length + keep);
    fs.truncateSync(b, last.offset);
    const { rf, records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "error")).toEqual([]);
    expect(level(lines, "warn")).toEqual([expect.stringContaining("that are not a whole record")]);
    // Repaired, and it goes on appending.
    await rf.append(rec(4), true);
    await rf.close();
    expect((await openRecords()).records).toEqual([1, 2, 4].map(rec));
  });

  test("RecordFile takes the newer copy after a compaction interrupted between the two renames", async () => {
    await writeRecords(3);
    const old = fs.readFileSync(mirrorOf(file()));
    const { rf } = await openRecords();
    await rf.rewrite(() => [{ all: 3 }]);
    await rf.close();
    fs.writeFileSync(mirrorOf(file()), old); // B still holds the generation before
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([{ all: 3 }]);
    expect(lost).toBe(0);
    expect(level(lines, "error")).toEqual([]);
    expect(level(lines, "warn")).toEqual([expect.stringContaining("a compaction was interrupted")]);
  });

  test("RecordFile leaves nothing of a failed append in either copy", async () => {
    const { rf } = await openRecords();
    await rf.append(rec(1), true);
    const fsync = spyOn(fs, "fdatasync").mockImplementation(((_fd: number, cb: (err: Error | null) => void) => cb(new Error("EIO: simulated"))) as never);
    try {
      await expect(rf.append(rec(2), true)).rejects.toThrow("EIO");
    } finally {
      fsync.mockRestore();
    }
    await rf.append(rec(3), true);
    await rf.close();
    const again = await openRecords();
    expect(again.records).toEqual([rec(1), rec(3)]);
    expect(again.lines).toEqual([]);
  });
});

describe("RecordFile previous format", () => {
  test("RecordFile reads a file of the previous format and converts it to two copies", async () => {
    fs.writeFileSync(file(), legacyBytes([1, 2, 3].map(rec)));
    const { rf, records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2, 3].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "info")).toEqual([expect.stringContaining("converted from the previous format")]);
    await rf.append(rec(4), true);
    await rf.close();
    expect(sameCopies()).toBe(true);
    const again = await openRecords();
    expect(again.records).toEqual([1, 2, 3, 4].map(rec));
    expect(again.lines).toEqual([]);
  });

  test("RecordFile converts an empty file of the previous format silently", async () => {
    fs.writeFileSync(file(), new Uint8Array(0));
    const { records, lines } = await openRecords();
    expect(records).toEqual([]);
    expect(level(lines, "error")).toEqual([]);
    expect(sameCopies()).toBe(true);
  });

  test("RecordFile loses only a damaged record of a file of the previous format, and reports it", async () => {
    const bytes = legacyBytes([1, 2, 3].map(rec));
    bytes[8 + 2]! ^= 0x10; // in the body of the first record
    fs.writeFileSync(file(), bytes);
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([2, 3].map(rec));
    expect(lost).toBe(1);
    expect(level(lines, "error")).toEqual([expect.stringContaining(`${file()} (previous format, one copy): damaged bytes at 0..`)]);
  });

  test("RecordFile drops a torn last record of a file of the previous format, with a warning", async () => {
    const bytes = legacyBytes([1, 2, 3].map(rec));
    fs.writeFileSync(file(), bytes.subarray(0, bytes.length - 3));
    const { records, lost, lines } = await openRecords();
    expect(records).toEqual([1, 2].map(rec));
    expect(lost).toBe(0);
    expect(level(lines, "warn")).toEqual([expect.stringContaining("dropped a torn or corrupt tail")]);
  });
});
