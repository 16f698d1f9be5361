/**
 * The byte format of topic log segments (version 2, docs/storage.md) and the scan that
 * verifies one: a file header, then records that each start with a sync marker, so that a
 * scan can find the next intact record after damage and lose the damaged bytes only.
 * Every multi-byte integer is big-endian.
 *
 * File header (32 bytes):
 *   0 u32 magic "MQSG" · 4 u16 version (2) · 6 u16 header length (32) · 8 u64 base seq ·
 *   16 f64 creation time · 24 u32 reserved (0) · 28 u32 CRC-32 of bytes 0..27
 *
 * Record (32-byte header, then X bytes of optional fields, then the payload):
 *   0 u32 sync marker F8 6D 71 A7 · 4 u32 CRC-32 of bytes 8..end of record ·
 *   8 u32 payload length L · 12 u16 flags (0 in version 2) · 14 u16 options length X ·
 *   16 u64 seq · 24 f64 append time (ms since the epoch) · 32 options (TLV) · 32+X payload
 * Options: `[u8 type][u16 length][value]` each; type 4 (FIELD_MSG_ID) is the publisher's message id,
 * type 1 (FIELD_HEADERS) the message's headers (record-fields.ts), type 2 (FIELD_EXPIRES_AT)
 * its expiry (f64, ms since the epoch). A reader skips types it does not know.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fsyncDir, readAtIntoSync, readAtSync, writeAllSync } from "./fsutil.ts";
import { digitCount, runIdNumber, writeRunId } from "./id-run.ts";
import type { MsgIdRun } from "./types.ts";
import { freeTail } from "./zero-tail.ts";

export const SEGMENT_MAGIC = 0x4d515347; // "MQSG"
export const SEGMENT_VERSION = 2;
export const FILE_HEADER = 32;
export const RECORD_SYNC = 0xf86d71a7;
export const RECORD_HEADER = 32;
const SYNC_BYTES = Buffer.from([0xf8, 0x6d, 0x71, 0xa7]);
/** One sparse index entry per this many bytes of segment: a read walks at most this much to find its seq. */
export const INDEX_EVERY_BYTES = 64 * 1024;
export const READ_CHUNK = 256 * 1024;

export function getU64(view: DataView, p: number): number {
  return view.getUint32(p) * 2 ** 32 + view.getUint32(p + 4);
}

export function setU64(view: DataView, p: number, value: number): void {
  view.setUint32(p, Math.floor(value / 2 ** 32));
  view.setUint32(p + 4, value >>> 0);
}

/** The 32-byte file header of a new segment whose first record will be `base`. */
export function fileHeader(base: number, time: number): Uint8Array {
  const buf = new Uint8Array(FILE_HEADER);
  const view = new DataView(buf.buffer);
  view.setUint32(0, SEGMENT_MAGIC);
  view.setUint16(4, SEGMENT_VERSION);
  view.setUint16(6, FILE_HEADER);
  setU64(view, 8, base);
  view.setFloat64(16, time);
  view.setUint32(28, Bun.hash.crc32(buf.subarray(0, 28)));
  return buf;
}

/** The base seq of an intact version-2 file header, or null. */
export function parseFileHeader(buf: Uint8Array): number | null {
  if (buf.length < FILE_HEADER) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== SEGMENT_MAGIC || view.getUint16(4) !== SEGMENT_VERSION || view.getUint16(6) !== FILE_HEADER) return null;
  if (Bun.hash.crc32(buf.subarray(0, 28)) !== view.getUint32(28)) return null;
  return getU64(view, 8);
}

/** Optional field (type, u16 length, value) holding the publisher's message id, as UTF-8. */
export const FIELD_MSG_ID = 4;
/** Optional field holding the message's headers (encodeHeaders in record-fields.ts). */
export const FIELD_HEADERS = 1;
/** Optional field holding the message's expiry: f64, ms since the epoch. */
export const FIELD_EXPIRES_AT = 2;
export const FIELD_HEADER = 3;

/** The optional fields of a record besides the message id, ready to write: only messages published with headers or a TTL have them. */
export interface ExtraFields {
  /** encodeHeaders' bytes, or undefined. */
  headers: Uint8Array | undefined;
  expiresAt: number | undefined;
}

/** Bytes the extra fields take in a record. */
export function extraFieldsSize(extra: ExtraFields | undefined): number {
  if (!extra) return 0;
  return (extra.headers ? FIELD_HEADER + extra.headers.length : 0) + (extra.expiresAt !== undefined ? FIELD_HEADER + 8 : 0);
}

/** Bytes a record of `dataLength` payload bytes takes, with a message id of `msgIdLength` bytes (0: none) and `extraLength` bytes of other fields. */
export function recordSize(dataLength: number, msgIdLength = 0, extraLength = 0): number {
  return RECORD_HEADER + (msgIdLength > 0 ? FIELD_HEADER + msgIdLength : 0) + extraLength + dataLength;
}

/** Writes one record at `pos` of `buf`, with the message id and the extra fields as its optional fields when given; returns its size. */
export function writeRecord(buf: Uint8Array, view: DataView, pos: number, seq: number, time: number, data: Uint8Array, msgId?: Uint8Array, extra?: ExtraFields): number {
  const idBytes = msgId ? FIELD_HEADER + msgId.length : 0;
  const options = idBytes + extraFieldsSize(extra);
  writeRecordHeader(view, pos, data.length, options, seq, time);
  if (msgId) {
    buf[pos + RECORD_HEADER] = FIELD_MSG_ID;
    view.setUint16(pos + RECORD_HEADER + 1, msgId.length);
    buf.set(msgId, pos + RECORD_HEADER + FIELD_HEADER);
  }
  if (extra) writeExtraFields(buf, view, pos + RECORD_HEADER + idBytes, extra);
  return writeRecordBody(buf, view, pos, options, data);
}

/**
 * `writeRecord` with the message id `idPrefix` + the digits of `idNumber` (lib/store/id-run.ts):
 * the same bytes, no string made. `digits`: digitCount(idNumber), when the caller has it.
 */
export function writeRecordOfRun(buf: Uint8Array, view: DataView, pos: number, seq: number, time: number, data: Uint8Array, idPrefix: Uint8Array, idNumber: number, extra?: ExtraFields, digits = digitCount(idNumber)): number {
  const idLength = idPrefix.length + digits;
  const options = FIELD_HEADER + idLength + extraFieldsSize(extra);
  writeRecordHeader(view, pos, data.length, options, seq, time);
  buf[pos + RECORD_HEADER] = FIELD_MSG_ID;
  view.setUint16(pos + RECORD_HEADER + 1, idLength);
  writeRunId(buf, pos + RECORD_HEADER + FIELD_HEADER, idPrefix, idNumber, digits);
  if (extra) writeExtraFields(buf, view, pos + RECORD_HEADER + FIELD_HEADER + idLength, extra);
  return writeRecordBody(buf, view, pos, options, data);
}

/** A record's fixed header, before its optional fields (the crc is written last, by writeRecordBody). */
function writeRecordHeader(view: DataView, pos: number, size: number, options: number, seq: number, time: number): void {
  view.setUint32(pos, RECORD_SYNC);
  view.setUint32(pos + 8, size);
  view.setUint16(pos + 12, 0);
  view.setUint16(pos + 14, options);
  setU64(view, pos + 16, seq);
  view.setFloat64(pos + 24, time);
}

/** `copyBytes.call(source, target, at)` copies all of `source` into `target` at `at`: Buffer's copy takes the offset without a view, about half the cost of `set` for a small payload. */
const copyBytes = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number) => number;

/** The payload after the optional fields, then the crc over everything after it; returns the record's size. */
function writeRecordBody(buf: Uint8Array, view: DataView, pos: number, options: number, data: Uint8Array): number {
  copyBytes.call(data, buf, pos + RECORD_HEADER + options);
  const end = pos + RECORD_HEADER + options + data.length;
  view.setUint32(pos + 4, Bun.hash.crc32(buf.subarray(pos + 8, end)));
  return end - pos;
}

function writeExtraFields(buf: Uint8Array, view: DataView, q: number, extra: ExtraFields): void {
  if (extra.headers) {
    buf[q] = FIELD_HEADERS;
    view.setUint16(q + 1, extra.headers.length);
    buf.set(extra.headers, q + FIELD_HEADER);
    q += FIELD_HEADER + extra.headers.length;
  }
  if (extra.expiresAt !== undefined) {
    buf[q] = FIELD_EXPIRES_AT;
    view.setUint16(q + 1, 8);
    view.setFloat64(q + FIELD_HEADER, extra.expiresAt);
  }
}

/** The message id among the optional fields of the record at `p` (a view into `buf`), or null. Unknown fields are skipped. */
export function recordMsgId(buf: Uint8Array, view: DataView, p: number): Uint8Array | null {
  let q = p + RECORD_HEADER;
  const end = q + view.getUint16(p + 14);
  while (q + FIELD_HEADER <= end) {
    const length = view.getUint16(q + 1);
    if (q + FIELD_HEADER + length > end) return null;
    if (buf[q] === FIELD_MSG_ID) return buf.subarray(q + FIELD_HEADER, q + FIELD_HEADER + length);
    q += FIELD_HEADER + length;
  }
  return null;
}

/**
 * The size of the record whose header is at `p` (the header must be in `view`), or -1 when
 * the bytes there cannot start a record (no sync marker, or flags this version does not know).
 */
export function recordTotal(view: DataView, p: number): number {
  if (view.getUint32(p) !== RECORD_SYNC || view.getUint16(p + 12) !== 0) return -1;
  return RECORD_HEADER + view.getUint16(p + 14) + view.getUint32(p + 8);
}

/** True when the CRC of the record at `p` (of `total` bytes, all in `buf`) matches. */
export function recordIntact(buf: Uint8Array, view: DataView, p: number, total: number): boolean {
  return Bun.hash.crc32(buf.subarray(p + 8, p + total)) === view.getUint32(p + 4);
}

export function recordSeq(view: DataView, p: number): number {
  return getU64(view, p + 16);
}

export function recordTime(view: DataView, p: number): number {
  return view.getFloat64(p + 24);
}

/** The payload of the record at `p` of `total` bytes, as a view into `buf`. */
export function recordData(buf: Uint8Array, view: DataView, p: number, total: number): Uint8Array {
  return buf.subarray(p + RECORD_HEADER + view.getUint16(p + 14), p + total);
}

/** A run of bytes in a segment that holds no intact record. */
export interface Damage {
  start: number;
  end: number;
  /** Seq of the last intact record before it (or the scan's lower bound), and of the first one after it (0: none, the damage runs to the end). */
  before: number;
  after: number;
}

/** What a scan of a segment found. */
export interface ScanResult {
  count: number;
  firstSeq: number;
  lastSeq: number;
  /** Offset of the last intact record (0 when none). */
  lastPos: number;
  indexSeq: number[];
  indexPos: number[];
  damage: Damage[];
  /** Seq ranges missing between two intact records of this segment (damaged or not). */
  gaps: Array<{ from: number; to: number; damage: Damage | null }>;
  /** The log's end in this file: where the zeros after the last record (or damage) start, free space (zero-tail.ts); else the file's size. */
  end: number;
}

/** Limits a scan checks each record against: seqs must rise above `after` and stay below `below`. */
export interface ScanBounds {
  after: number;
  below: number;
}

/**
 * Walks every record of a version-2 segment from `start` to `size`, verifying sync marker,
 * length, CRC and seq order. At a bad record it resynchronises at the next intact record
 * (sync marker + plausible length + CRC + seq above the last good one and below the bound),
 * so damage costs the damaged records only; each damaged run is listed in `damage`. Zeros
 * from a bad record to the end of the file, when it ends at a block boundary, are free
 * space (zero-tail.ts), not damage: the scan ends there (`end`).
 */
export function scanSegment(fd: number, size: number, start: number, bounds: ScanBounds): ScanResult {
  const r: ScanResult = { count: 0, firstSeq: 0, lastSeq: 0, lastPos: 0, indexSeq: [], indexPos: [], damage: [], gaps: [], end: size };
  let prev = bounds.after;
  let pos = start;
  let lastIndexed = -Infinity;
  let pendingDamage: Damage | null = null;
  const accept = (seq: number, at: number) => {
    if (r.count > 0 && seq > prev + 1) r.gaps.push({ from: prev + 1, to: seq - 1, damage: pendingDamage });
    if (at - lastIndexed >= INDEX_EVERY_BYTES || pendingDamage) {
      r.indexSeq.push(seq);
      r.indexPos.push(at);
      lastIndexed = at;
    }
    if (pendingDamage) pendingDamage.after = seq;
    pendingDamage = null;
    if (r.count === 0) r.firstSeq = seq;
    r.count++;
    r.lastSeq = seq;
    r.lastPos = at;
    prev = seq;
  };
  while (pos < size) {
    const chunk = readAtSync(fd, Math.min(READ_CHUNK, size - pos), pos);
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let p = 0;
    let bad = -1;
    while (p < chunk.length) {
      if (p + RECORD_HEADER > chunk.length) {
        if (pos + p + RECORD_HEADER > size) bad = pos + p; // a torn header at the end
        break;
      }
      const total = recordTotal(view, p);
      if (total < 0 || pos + p + total > size) {
        bad = pos + p;
        break;
      }
      if (p + total > chunk.length) {
        if (p > 0) break; // read on from this record
        // One record bigger than the chunk: check it alone.
        const whole = readAtSync(fd, total, pos);
        const wv = new DataView(whole.buffer, whole.byteOffset, whole.byteLength);
        const seq = recordSeq(wv, 0);
        if (!recordIntact(whole, wv, 0, total) || seq <= prev || seq >= bounds.below) {
          bad = pos;
          break;
        }
        accept(seq, pos);
        p = total;
        break;
      }
      const seq = recordSeq(view, p);
      if (!recordIntact(chunk, view, p, total) || seq <= prev || seq >= bounds.below) {
        bad = pos + p;
        break;
      }
      accept(seq, pos + p);
      p += total;
    }
    if (bad < 0) {
      pos += p;
      continue;
    }
    if (freeTail(fd, bad, size)) {
      r.end = bad;
      break;
    }
    const next = findRecord(fd, size, bad + 1, prev, bounds.below);
    pendingDamage = { start: bad, end: next ? next.pos : size, before: prev, after: 0 };
    r.damage.push(pendingDamage);
    if (!next) break;
    pos = next.pos;
  }
  return r;
}

/**
 * The first intact record at or after `from` whose seq is above `after` and below `below`:
 * found by its sync marker, then checked for a length that fits the file, its CRC and its seq.
 */
export function findRecord(fd: number, size: number, from: number, after: number, below: number): { pos: number; seq: number } | null {
  let pos = from;
  while (pos + RECORD_HEADER <= size) {
    const bytes = readAtSync(fd, Math.min(READ_CHUNK, size - pos), pos);
    const chunk = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let i = chunk.indexOf(SYNC_BYTES, 0);
    while (i >= 0) {
      const at = pos + i;
      if (at + RECORD_HEADER > size) return null;
      const head = i + RECORD_HEADER <= chunk.length ? chunk.subarray(i, i + RECORD_HEADER) : readAtSync(fd, RECORD_HEADER, at);
      const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
      const total = recordTotal(hv, 0);
      const seq = recordSeq(hv, 0);
      if (total >= 0 && at + total <= size && seq > after && seq < below) {
        const rec = i + total <= chunk.length ? chunk.subarray(i, i + total) : readAtSync(fd, total, at);
        if (recordIntact(rec, new DataView(rec.buffer, rec.byteOffset, rec.byteLength), 0, total)) return { pos: at, seq };
      }
      i = chunk.indexOf(SYNC_BYTES, i + 1);
    }
    // The marker may straddle the chunk's end: go on 3 bytes before it.
    if (pos + chunk.length >= size) return null;
    pos += Math.max(1, chunk.length - 3);
  }
  return null;
}

/**
 * Copies bytes `start..end` of the file open as `fd` to `target` (temp + fsync + rename), so
 * the damaged bytes survive whatever is cut or rewritten next. Keeps an existing copy.
 * Returns false when the copy already existed.
 */
export function copyAside(fd: number, start: number, end: number, target: string): boolean {
  if (fs.existsSync(target)) return false;
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  const tmp = `${target}.tmp`;
  const out = fs.openSync(tmp, "w", 0o600);
  try {
    let written = 0;
    for (let pos = start; pos < end; ) {
      const chunk = readAtSync(fd, Math.min(READ_CHUNK, end - pos), pos);
      if (chunk.length === 0) break;
      writeAllSync(out, chunk, written);
      written += chunk.length;
      pos += chunk.length;
    }
    fs.fsyncSync(out);
  } finally {
    fs.closeSync(out);
  }
  fs.renameSync(tmp, target);
  fsyncDir(path.dirname(target));
  return true;
}

// A leading U+FEFF is part of an id (the wire decoder keeps it too): not a byte order mark to drop.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** `id` starts with `prefix` and its prefix is that long. */
function samePrefix(id: Uint8Array, prefix: Uint8Array, prefixLength: number): boolean {
  if (prefix.length !== prefixLength) return false;
  for (let i = 0; i < prefixLength; i++) if (id[i] !== prefix[i]) return false;
  return true;
}

/** scanMsgIds' read buffer, made at its first use. */
let msgIdScratch: Uint8Array | null = null;

/**
 * The message ids of the intact records of a segment appended at or after `since` and with
 * a seq below `below`, in file order, pushed to `out` as runs (MsgIdRun: the ids of one
 * append that follow each other, `P:1`, `P:2`, …, are one entry). It opens the file itself and reads
 * from the last index entry (`indexPos`, record offsets) whose record is older than `since`,
 * so a segment mostly older than the window costs a few header reads. Damage is skipped
 * (resync at the next intact record). Returns the append time of the first record it read,
 * or -Infinity when it read none (the caller stops going to older segments once that is
 * below `since`). It reads up to `end`, the log's end in the file (the zeros after it are free space).
 */
export function scanMsgIds(file: string, end: number, indexPos: readonly number[], since: number, below: number, out: MsgIdRun[]): number {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return -Infinity;
  }
  try {
    const size = Math.min(end, fs.fstatSync(fd).size);
    const timeAt = (pos: number): number => {
      const head = readAtSync(fd, RECORD_HEADER, pos);
      const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
      return head.length === RECORD_HEADER && recordTotal(view, 0) >= 0 ? recordTime(view, 0) : -Infinity;
    };
    // The last index entry older than `since` (binary search; times rise with seqs).
    let lo = 0;
    let hi = indexPos.length - 1;
    let start = FILE_HEADER;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (timeAt(indexPos[mid]!) < since) {
        start = indexPos[mid]!;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    let first = -Infinity;
    let prev = 0;
    let pos = start;
    // The prefix (a copy) and first number of the run `out` ends with, when its ids are of that form.
    let runPrefix: Uint8Array | null = null;
    let runFirst = 0;
    // One buffer for every chunk (nothing read is kept: an id is decoded to a string, a run's prefix copied): a start
    // reading back a busy window went through up to a GB of fresh 256 KiB buffers.
    const scratch = (msgIdScratch ??= new Uint8Array(READ_CHUNK));
    while (pos + RECORD_HEADER <= size) {
      const chunk = readAtIntoSync(fd, scratch, Math.min(READ_CHUNK, size - pos), pos);
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let p = 0;
      let bad = false;
      while (p + RECORD_HEADER <= chunk.length) {
        const total = recordTotal(view, p);
        if (total < 0 || pos + p + total > size) {
          bad = true;
          break;
        }
        let rec: Uint8Array = chunk;
        let rv = view;
        let rp = p;
        if (p + total > chunk.length) {
          if (p > 0) break; // read on from this record
          rec = readAtSync(fd, total, pos);
          rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
          rp = 0;
        }
        const seq = recordSeq(rv, rp);
        if (!recordIntact(rec, rv, rp, total) || seq <= prev) {
          bad = true;
          break;
        }
        if (seq >= below) return first;
        const time = recordTime(rv, rp);
        if (first === -Infinity) first = time;
        if (time >= since) {
          const id = recordMsgId(rec, rv, rp);
          if (id) {
            // The next id of the run before it (same append: same time, next seq, next number)
            // extends that run: no string, no object (a library's publishes are such runs).
            const number = runIdNumber(id);
            const last = out.length > 0 ? out[out.length - 1]! : null;
            if (number && last && runPrefix && last.time === time && last.seq + last.count === seq && runFirst + last.count === number.n && samePrefix(id, runPrefix, number.prefixLength)) last.count++;
            else {
              out.push({ msgId: utf8.decode(id), seq, time, count: 1 });
              runPrefix = number ? id.slice(0, number.prefixLength) : null;
              runFirst = number ? number.n : 0;
            }
          }
        }
        prev = seq;
        p += total;
        if (rec !== chunk) break;
      }
      if (bad) {
        const next = findRecord(fd, size, pos + p + 1, prev, below);
        if (!next) break;
        pos = next.pos;
        continue;
      }
      if (p === 0) break;
      pos += p;
    }
    return first;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------
// Checkpoint of a sealed segment: `<base>.ckpt` beside it.
//   0 u32 magic "MQCK" · 4 u16 version (1) · 6 u16 reserved · 8 u64 segment size ·
//   16 u64 base · 24 u64 first seq · 32 u64 last seq · 40 u64 offset of the last record ·
//   48 u32 record count · 52 u32 index entries n · 56 u32 damaged ranges k · 60 u32 reserved ·
//   64 n × (u64 seq, u64 offset) · k × (u64 start, u64 end) · u32 CRC-32 of all bytes before

const CHECKPOINT_MAGIC = 0x4d51434b; // "MQCK"

export interface Checkpoint {
  size: number;
  base: number;
  count: number;
  firstSeq: number;
  lastSeq: number;
  lastPos: number;
  indexSeq: number[];
  indexPos: number[];
  skips: Array<{ start: number; end: number }>;
}

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const n = c.indexSeq.length;
  const k = c.skips.length;
  const buf = new Uint8Array(64 + 16 * (n + k) + 4);
  const view = new DataView(buf.buffer);
  view.setUint32(0, CHECKPOINT_MAGIC);
  view.setUint16(4, 1);
  setU64(view, 8, c.size);
  setU64(view, 16, c.base);
  setU64(view, 24, c.firstSeq);
  setU64(view, 32, c.lastSeq);
  setU64(view, 40, c.lastPos);
  view.setUint32(48, c.count);
  view.setUint32(52, n);
  view.setUint32(56, k);
  let p = 64;
  for (let i = 0; i < n; i++, p += 16) {
    setU64(view, p, c.indexSeq[i]!);
    setU64(view, p + 8, c.indexPos[i]!);
  }
  for (const s of c.skips) {
    setU64(view, p, s.start);
    setU64(view, p + 8, s.end);
    p += 16;
  }
  view.setUint32(p, Bun.hash.crc32(buf.subarray(0, p)));
  return buf;
}

/** The checkpoint in `buf`, or null when it is not an intact one. */
export function decodeCheckpoint(buf: Uint8Array): Checkpoint | null {
  if (buf.length < 68) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== CHECKPOINT_MAGIC || view.getUint16(4) !== 1) return null;
  const n = view.getUint32(52);
  const k = view.getUint32(56);
  const end = 64 + 16 * (n + k);
  if (buf.length !== end + 4 || Bun.hash.crc32(buf.subarray(0, end)) !== view.getUint32(end)) return null;
  const c: Checkpoint = {
    size: getU64(view, 8),
    base: getU64(view, 16),
    firstSeq: getU64(view, 24),
    lastSeq: getU64(view, 32),
    lastPos: getU64(view, 40),
    count: view.getUint32(48),
    indexSeq: [],
    indexPos: [],
    skips: [],
  };
  let p = 64;
  for (let i = 0; i < n; i++, p += 16) {
    c.indexSeq.push(getU64(view, p));
    c.indexPos.push(getU64(view, p + 8));
  }
  for (let i = 0; i < k; i++, p += 16) c.skips.push({ start: getU64(view, p), end: getU64(view, p + 8) });
  return c;
}

/**
 * Loads the checkpoint of a sealed segment and verifies it against the file: same size, an
 * intact file header with the same base, and an intact last record with the recorded seq.
 * Null when any of it does not hold (the segment is then scanned instead).
 */
export function loadCheckpoint(file: string, fd: number, size: number, base: number): Checkpoint | null {
  let c: Checkpoint | null;
  try {
    c = decodeCheckpoint(fs.readFileSync(checkpointFile(file)));
  } catch {
    return null;
  }
  if (!c || c.size !== size || c.base !== base) return null;
  if (parseFileHeader(readAtSync(fd, FILE_HEADER, 0)) !== base) return null;
  if (c.count === 0) return c.lastPos === 0 ? c : null;
  if (c.lastPos + RECORD_HEADER > size) return null;
  const head = readAtSync(fd, RECORD_HEADER, c.lastPos);
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const total = head.length === RECORD_HEADER ? recordTotal(hv, 0) : -1;
  if (total < 0 || c.lastPos + total > size || recordSeq(hv, 0) !== c.lastSeq) return null;
  const rec = readAtSync(fd, total, c.lastPos);
  return recordIntact(rec, new DataView(rec.buffer, rec.byteOffset, rec.byteLength), 0, total) ? c : null;
}

/**
 * Writes the checkpoint of a sealed segment: temp + rename, without fsync. A checkpoint
 * that did not reach the disk, or does not match the file any more, is simply not used.
 */
export function writeCheckpoint(file: string, c: Checkpoint): void {
  const target = checkpointFile(file);
  fs.writeFileSync(`${target}.tmp`, encodeCheckpoint(c), { mode: 0o600 });
  fs.renameSync(`${target}.tmp`, target);
}

export function checkpointFile(segmentFile: string): string {
  return segmentFile.replace(/\.log$/, ".ckpt");
}
