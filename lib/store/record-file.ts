/**
 * A mirrored journal of small checksummed CBOR records, for state that changes by events
 * (subscriber index, client registry, local id table). It is kept as two identical copies,
 * `FILE` and `FILE.mirror`, so that one bad sector costs nothing and a damaged record costs
 * only that record:
 *
 *     header  [u32 magic "mqrf"][u16 version 2][u16 32][u32 generation][u32 0][u64 mark][u32 0][u32 crc32 of bytes 0..28]
 *     record  [u32 sync][u32 length][u32 crc32 of the next 8 + length bytes][u32 generation][u32 index][cbor map]
 *
 * Every record carries its generation (which compaction wrote the file) and its index in
 * that generation, so the copies are merged record by record on open: a record damaged in
 * one copy is taken from the other, and only a record damaged in both is lost. The sync
 * word lets the reader find the next record after damaged bytes. Appends go to copy A and
 * then to copy B (each fsynced when durable, one after the other), so a crash tears at most
 * one copy. Compaction and repair write each copy to a temp file, fsync it and rename it
 * over, one copy after the other.
 *
 * `mark` is a number kept in the headers of both copies, apart from the records: the id
 * tables keep their next id there, so losing records never lowers it.
 *
 * Files of the previous format (records `[u32 length][u32 crc32][cbor]` from byte 0, one
 * copy) are read and rewritten in this format when opened.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { logger } from "../log.ts";
import { decodeMap, encode } from "../wire/codec.ts";
import { writeAllSync, writeFileAtomic, writeFileAtomicAsync } from "./fsutil.ts";
import { GroupCommit } from "./group-commit.ts";
import { UNBOUNDED, type OpenFiles, type PooledFile } from "./open-files.ts";

const log = logger("store");

export const HEADER_BYTES = 32;
export const FRAME_BYTES = 20;
const MAGIC = 0x6d717266; // "mqrf"
const VERSION = 2;
const SYNC = 0xa55ac33c;
/**
 * Records are small maps, or a delayed message (schedule.ts: up to 1 MiB of payload and its
 * fields); anything claiming more is damage, not data.
 */
export const MAX_RECORD_BYTES = 1024 * 1024 + 64 * 1024;
/** Legacy (version 1) records: `[u32 length][u32 crc32][cbor]`. */
const LEGACY_HEADER = 8;

export type Record_ = Record<string, unknown>;

/** What the owner of a record file provides. */
export interface RecordFileOwner {
  /** Applies one record; called in order, for every record that survived. */
  apply(record: Record_): void;
  /** The current state as records: written by compaction and by repairs. */
  snapshot(): Record_[];
  /** The mark that compaction and repairs write into the headers (never below the current one). */
  mark?(): number;
  /**
   * Called once, after replay and before the repair is written, when records were damaged
   * in both copies and are lost: `count` of them (at least), described in `where`; `mark`
   * is the one read from the headers. The owner logs what the loss means for its state and
   * may change the state that the repair then writes.
   */
  lost?(loss: { count: number; where: string; mark: number }): void;
}

/** The second copy of `file`. */
export function mirrorOf(file: string): string {
  return `${file}.mirror`;
}

interface Frame {
  gen: number;
  index: number;
  body: Uint8Array;
  offset: number;
}

interface ParsedCopy {
  file: string;
  /** null when the file does not exist. */
  size: number | null;
  header: { gen: number; mark: number } | null;
  frames: Frame[];
  /** Bytes that are not records, each followed by a good record. */
  damaged: Array<{ offset: number; length: number }>;
  /** Bytes after the last good record that are not a record (a torn write, or damage). */
  tail: { offset: number; length: number } | null;
}

export class RecordFile {
  private readonly copies: [string, string];
  /** Both copies, opened on first write and closed when the pool needs room (open-files.ts). */
  private readonly handles: [PooledFile, PooledFile];
  private closed = false;
  private size: number;
  private gen: number;
  private nextIndex: number;
  private markValue: number;
  private writtenMark: number;
  private readonly commits = new GroupCommit((batch: Array<{ record: Record_ | null; durable: boolean; mark: number }>) => this.commit(batch));

  private constructor(
    readonly file: string,
    private readonly owner: RecordFileOwner,
    state: { gen: number; nextIndex: number; mark: number; size: number },
    files: OpenFiles,
  ) {
    this.copies = [file, mirrorOf(file)];
    this.gen = state.gen;
    this.nextIndex = state.nextIndex;
    this.markValue = this.writtenMark = state.mark;
    this.size = state.size;
    this.handles = [files.lazy(this.copies[0]), files.lazy(this.copies[1])];
  }

  /**
   * Opens both copies (creating them if absent), replays every record that survives in
   * either through `owner.apply`, in order, logs any damage (ERROR) and repairs the copies
   * from the merged state. The copies are read whole here, then opened again only to be
   * written, in `files` (no bound by default).
   */
  static open(file: string, owner: RecordFileOwner, files: OpenFiles = UNBOUNDED): RecordFile {
    const a = parseCopy(file);
    const b = parseCopy(mirrorOf(file));
    const readable = (p: ParsedCopy) => p.header !== null || p.frames.length > 0;
    if (!readable(a) && !readable(b)) {
      if (a.size === null && b.size === null) {
        writeBoth(file, 1, 0, []);
        return new RecordFile(file, owner, { gen: 1, nextIndex: 0, mark: 0, size: HEADER_BYTES }, files);
      }
      // The previous format had no second copy; a junk one beside a readable old file is ignored.
      if (a.size !== null && (b.size === null || parseLegacy(fs.readFileSync(file)).records.length > 0)) return RecordFile.openLegacy(file, owner, a, b, files);
    }

    const genOf = (p: ParsedCopy) => p.header?.gen ?? maxOf(p.frames.map((f) => f.gen), -1);
    const gen = Math.max(genOf(a), genOf(b), 1);
    // The mark lives in the headers, apart from the records: the highest readable one counts.
    const mark = Math.max(a.header?.mark ?? 0, b.header?.mark ?? 0);
    const byIndex = (p: ParsedCopy) => {
      const m = new Map<number, Frame>();
      if (genOf(p) === gen) for (const f of p.frames) if (f.gen === gen && !m.has(f.index)) m.set(f.index, f);
      return m;
    };
    const own = [byIndex(a), byIndex(b)] as const;
    const count = Math.max(maxOf(own[0].keys(), -1), maxOf(own[1].keys(), -1)) + 1;

    const lost: number[] = [];
    const took: [number[], number[]] = [[], []];
    for (let i = 0; i < count; i++) {
      const ra = own[0].has(i) ? decode(own[0].get(i)!.body) : null;
      const rb = own[1].has(i) ? decode(own[1].get(i)!.body) : null;
      const record = ra ?? rb;
      if (!record) {
        lost.push(i);
        continue;
      }
      if (!ra) took[0].push(i);
      if (!rb) took[1].push(i);
      if (Object.keys(record).length > 0) owner.apply(record);
    }
    // Records after the last one read may be lost when neither copy ends cleanly: a torn
    // tail in one copy is a crash while it was written only if the other copy is whole.
    const ragged = (p: ParsedCopy) => p.tail !== null || !readable(p) || genOf(p) < gen;
    const tailLost = ragged(a) && ragged(b);

    // Report, copy by copy: what was wrong with it and what came from the other copy.
    let healthy = true;
    for (const k of [0, 1] as const) {
      const p = k === 0 ? a : b;
      const other = k === 0 ? b.file : a.file;
      const problems: string[] = [];
      let serious = false;
      if (p.size === null) problems.push("missing"), (serious = true);
      else if (p.size === 0) problems.push("empty (0 bytes)"), (serious = true);
      else {
        if (!p.header) problems.push(`header unreadable (bytes 0..${HEADER_BYTES})`), (serious = true);
        if (readable(p) && genOf(p) < gen) problems.push(`older than ${other} (generation ${genOf(p)} < ${gen}: a compaction was interrupted)`);
        if (p.damaged.length > 0) problems.push(`damaged bytes at ${ranges(p.damaged)}`), (serious = true);
        if (p.tail) problems.push(`${p.tail.length} bytes at offset ${p.tail.offset} that are not a whole record (a torn write, or damage)`);
      }
      // Copy B may lack the last records of A after a crash between the two writes; any
      // other record missing from a copy is damage.
      const last = maxOf(own[k].keys(), -1);
      if (took[k].some((i) => k === 0 || i < last)) serious = true;
      if (took[k].length > 0) {
        // Cut short: a record may hold a whole message (schedule.ts).
        const shown = took[k].slice(0, 5).map((i) => JSON.stringify(decode(own[1 - k]!.get(i)!.body)).slice(0, 200));
        problems.push(`record${took[k].length > 1 ? "s" : ""} ${list(took[k])} of ${count} recovered from ${other} (${shown.join(", ")}${took[k].length > 5 ? ", …" : ""})`);
      }
      if (problems.length === 0) continue;
      healthy = false;
      const line = `${p.file}: ${problems.join("; ")}`;
      if (serious || tailLost) log.error(line);
      else log.warn(line);
    }
    if (lost.length > 0 || tailLost) {
      const what = [
        ...(lost.length > 0 ? [`record${lost.length > 1 ? "s" : ""} ${list(lost)} of ${count} damaged in both copies`] : []),
        ...(tailLost ? [`neither copy ends cleanly, so records after the ${count} read may be missing`] : []),
      ].join("; ");
      const where = `${file} and ${b.file}: ${what}`;
      log.error(`${where}: what they recorded is lost`);
      owner.lost?.({ count: lost.length + (tailLost ? 1 : 0), where, mark });
    }
    if (healthy && lost.length === 0) return new RecordFile(file, owner, { gen, nextIndex: count, mark, size: a.size! }, files);
    const records = owner.snapshot();
    const repaired = Math.max(mark, owner.mark?.() ?? 0);
    const size = writeBoth(file, gen + 1, repaired, records);
    log.info(`${file}: both copies rewritten from the ${count - lost.length} records read (generation ${gen + 1})`);
    return new RecordFile(file, owner, { gen: gen + 1, nextIndex: records.length, mark: repaired, size }, files);
  }

  /** A file of the previous format: replay what is intact, then write both copies in this format. */
  private static openLegacy(file: string, owner: RecordFileOwner, a: ParsedCopy, b: ParsedCopy, files: OpenFiles): RecordFile {
    const { records, damaged, tail } = parseLegacy(fs.readFileSync(file));
    for (const r of records) if (Object.keys(r).length > 0) owner.apply(r);
    // One copy only: a damaged record is lost. A torn last record is what a crash leaves
    // (it was never acknowledged), unless nothing at all could be read.
    if (damaged.length > 0 || (tail && records.length === 0)) {
      const where = `${file} (previous format, one copy): damaged bytes at ${ranges(tail ? [...damaged, tail] : damaged)}`;
      log.error(`${where}: what they recorded is lost; ${records.length} records read`);
      owner.lost?.({ count: damaged.length + (tail ? 1 : 0), where, mark: 0 });
    } else if (tail) log.warn(`${file}: dropped a torn or corrupt tail of ${tail.length} bytes at offset ${tail.offset}`);
    if (b.size !== null) log.warn(`${b.file}: unreadable, beside ${file} of the previous format; replaced by a copy of it`);
    const snapshot = owner.snapshot();
    const mark = owner.mark?.() ?? 0;
    const size = writeBoth(file, 1, mark, snapshot);
    log.info(`${file}: converted from the previous format (${a.size} bytes, ${records.length} records) to two copies, ${file} and ${mirrorOf(file)}`);
    return new RecordFile(file, owner, { gen: 1, nextIndex: snapshot.length, mark, size }, files);
  }

  /**
   * Makes both copies of an empty record file (each temp + fsync + rename) off the event
   * loop, for `open` to find; the caller fsyncs the directory.
   */
  static async create(file: string): Promise<void> {
    const empty = headerBytes(1, 0);
    await writeFileAtomicAsync(file, empty, { syncDir: false });
    await writeFileAtomicAsync(mirrorOf(file), empty, { syncDir: false });
  }

  /** Bytes in one copy, to decide when to compact. */
  get bytes(): number {
    return this.size;
  }

  /** The number kept in the headers (never lowered); see `append`. */
  get mark(): number {
    return this.markValue;
  }

  /**
   * Appends a record; records appended in one tick share one write per copy, and the
   * durable ones share one fsync per copy. `mark`, when given and higher than the current
   * one, is written into both headers in the same batch. The promise resolves when written
   * (and fsynced if `durable`).
   */
  append(record: Record_, durable: boolean, mark = 0): Promise<void> {
    return this.commits.add({ record, durable, mark });
  }

  /** Writes what is batched now and fsyncs. */
  sync(): Promise<void> {
    return this.commits.add({ record: null, durable: true, mark: 0 });
  }

  private async commit(batch: Array<{ record: Record_ | null; durable: boolean; mark: number }>): Promise<void[]> {
    if (this.closed) throw new Error(`${this.file}: closed`);
    const records = batch.flatMap((b) => (b.record ? [b.record] : []));
    const buf = Buffer.concat(records.map((r, i) => frame(r, this.gen, this.nextIndex + i)));
    const mark = maxOf(batch.map((b) => b.mark), this.writtenMark);
    const header = mark > this.writtenMark ? headerBytes(this.gen, mark) : null;
    const durable = batch.some((b) => b.durable);
    try {
      // One copy after the other: a crash can tear only the copy being written.
      for (const h of this.handles) {
        if (buf.length > 0 || header) h.wrote(!durable);
        if (buf.length > 0) writeAllSync(h.fd(), buf, this.size);
        if (header) writeAllSync(h.fd(), header, 0);
        // Only what was written and not yet fsynced (lazy records too); nothing when nothing was.
        if (durable) await h.sync();
      }
    } catch (err) {
      // Nothing of a failed batch may come back on the next open: cut both copies back.
      for (const h of this.handles) {
        try {
          fs.ftruncateSync(h.fd(), this.size);
        } catch {}
      }
      throw err;
    }
    this.size += buf.length;
    this.nextIndex += records.length;
    this.writtenMark = mark;
    this.markValue = Math.max(this.markValue, mark);
    return [];
  }

  /**
   * Replaces both copies with a snapshot, crash-safely. `snapshot` (by default the
   * owner's) is called once the pending appends are on disk, and the copies are swapped in
   * the same tick, so no append can fall between the snapshot and the swap.
   */
  async rewrite(snapshot: () => Record_[] = () => this.owner.snapshot()): Promise<void> {
    while (this.commits.busy) await this.commits.idle();
    const records = snapshot();
    const gen = this.gen + 1;
    const mark = Math.max(this.writtenMark, this.owner.mark?.() ?? 0);
    const size = writeBoth(this.file, gen, mark, records);
    // The copies were replaced (and fsynced): the next write opens the new files.
    for (const h of this.handles) h.reset();
    this.gen = gen;
    this.nextIndex = records.length;
    this.size = size;
    this.writtenMark = this.markValue = mark;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    this.closed = true;
    for (const h of this.handles) h.close();
  }
}

function headerBytes(gen: number, mark: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC);
  view.setUint16(4, VERSION);
  view.setUint16(6, HEADER_BYTES);
  view.setUint32(8, gen);
  view.setBigUint64(16, BigInt(mark));
  view.setUint32(28, Bun.hash.crc32(out.subarray(0, 28)));
  return out;
}

function frame(record: Record_, gen: number, index: number): Uint8Array {
  const body = encode(record);
  const out = new Uint8Array(FRAME_BYTES + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, SYNC);
  view.setUint32(4, body.length);
  view.setUint32(12, gen);
  view.setUint32(16, index);
  out.set(body, FRAME_BYTES);
  view.setUint32(8, Bun.hash.crc32(out.subarray(12)));
  return out;
}

/** Writes one copy after the other, each temp + fsync + rename; returns the size of each. */
function writeBoth(file: string, gen: number, mark: number, records: Record_[]): number {
  const buf = Buffer.concat([headerBytes(gen, mark), ...records.map((r, i) => frame(r, gen, i))]);
  writeFileAtomic(file, buf);
  writeFileAtomic(mirrorOf(file), buf);
  return buf.length;
}

function decode(body: Uint8Array): Record_ | null {
  try {
    return decodeMap(body);
  } catch {
    return null;
  }
}

function parseCopy(file: string): ParsedCopy {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { file, size: null, header: null, frames: [], damaged: [], tail: null };
    throw new Error(`Cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: ParsedCopy["header"] = null;
  let pos = 0;
  if (bytes.length >= HEADER_BYTES && view.getUint32(0) === MAGIC) {
    pos = HEADER_BYTES; // the header is there, even if its checksum fails
    if (view.getUint16(4) === VERSION && Bun.hash.crc32(bytes.subarray(0, 28)) === view.getUint32(28)) {
      header = { gen: view.getUint32(8), mark: Number(view.getBigUint64(16)) };
    }
  }
  const frames: Frame[] = [];
  const damaged: ParsedCopy["damaged"] = [];
  let bad = -1;
  while (pos + FRAME_BYTES <= bytes.length) {
    if (view.getUint32(pos) === SYNC) {
      const length = view.getUint32(pos + 4);
      const end = pos + FRAME_BYTES + length;
      if (length <= MAX_RECORD_BYTES && end <= bytes.length && Bun.hash.crc32(bytes.subarray(pos + 12, end)) === view.getUint32(pos + 8)) {
        if (bad >= 0) damaged.push({ offset: bad, length: pos - bad });
        bad = -1;
        frames.push({ gen: view.getUint32(pos + 12), index: view.getUint32(pos + 16), body: bytes.subarray(pos + FRAME_BYTES, end), offset: pos });
        pos = end;
        continue;
      }
    }
    // Not a record here: look for the next one byte by byte.
    if (bad < 0) bad = pos;
    pos++;
  }
  if (bad < 0 && pos < bytes.length) bad = pos;
  return { file, size: bytes.length, header, frames, damaged, tail: bad >= 0 ? { offset: bad, length: bytes.length - bad } : null };
}

/** The previous format; after a damaged record it looks for the next intact one. */
function parseLegacy(bytes: Uint8Array): { records: Record_[]; damaged: Array<{ offset: number; length: number }>; tail: { offset: number; length: number } | null } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: Record_[] = [];
  const damaged: Array<{ offset: number; length: number }> = [];
  let pos = 0;
  let bad = -1;
  while (pos + LEGACY_HEADER <= bytes.length) {
    const length = view.getUint32(pos);
    const end = pos + LEGACY_HEADER + length;
    if (length > 0 && length <= MAX_RECORD_BYTES && end <= bytes.length) {
      const body = bytes.subarray(pos + LEGACY_HEADER, end);
      const record = Bun.hash.crc32(body) === view.getUint32(pos + 4) ? decode(body) : null;
      if (record) {
        if (bad >= 0) damaged.push({ offset: bad, length: pos - bad });
        bad = -1;
        records.push(record);
        pos = end;
        continue;
      }
    }
    if (bad < 0) bad = pos;
    pos++;
  }
  if (bad < 0 && pos < bytes.length) bad = pos;
  return { records, damaged, tail: bad >= 0 ? { offset: bad, length: bytes.length - bad } : null };
}

/** The largest of `values` and `floor` (no spread: tables can hold many ids). */
function maxOf(values: Iterable<number>, floor: number): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}

function ranges(list: Array<{ offset: number; length: number }>): string {
  return list.map((r) => `${r.offset}..${r.offset + r.length}`).join(", ");
}

/** "3, 5, 7-9" */
function list(indices: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < indices.length; ) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j]! + 1) j++;
    out.push(i === j ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
    i = j + 1;
  }
  return out.join(", ");
}
