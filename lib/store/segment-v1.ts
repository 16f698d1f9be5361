/**
 * Segments of format version 1 (mq 0.1: no file header, records
 * `[u32 length][u32 CRC-32 of bytes 8..][u64 seq][f64 time][payload]`) are converted to
 * version 2 once, when their topic is opened: the records are read (resynchronising after
 * damage at the next record whose seq follows), damaged bytes are copied aside, and the
 * new file is written beside the old one, fsynced and renamed over it. A crash during the
 * conversion leaves the old file, which is converted again at the next start.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fsyncDir, readAtSync, writeAllSync } from "./fsutil.ts";
import { copyAside, fileHeader, getU64, READ_CHUNK, recordSize, writeRecord, type Damage } from "./segment.ts";

export const V1_RECORD_HEADER = 24;
/** After damage, a v1 record is believed only if its seq is at most this far above the last good one. */
const MAX_SEQ_JUMP = 1 << 20;

function v1Intact(buf: Uint8Array, view: DataView, p: number, length: number): boolean {
  return Bun.hash.crc32(buf.subarray(p + 8, p + V1_RECORD_HEADER + length)) === view.getUint32(p + 4);
}

/** True when the file starts with an intact version-1 record of seq `base`. */
export function startsWithV1Record(fd: number, size: number, base: number): boolean {
  if (size < V1_RECORD_HEADER) return false;
  const head = readAtSync(fd, V1_RECORD_HEADER, 0);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const length = view.getUint32(0);
  if (getU64(view, 8) !== base || V1_RECORD_HEADER + length > size) return false;
  const rec = readAtSync(fd, V1_RECORD_HEADER + length, 0);
  return v1Intact(rec, new DataView(rec.buffer, rec.byteOffset, rec.byteLength), 0, length);
}

/** The next intact v1 record at or after `from` whose seq is in (after, after + MAX_SEQ_JUMP]. */
function findV1Record(fd: number, size: number, from: number, after: number): number {
  for (let pos = from; pos + V1_RECORD_HEADER <= size; ) {
    const chunk = readAtSync(fd, Math.min(READ_CHUNK, size - pos), pos);
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let p = 0; p + V1_RECORD_HEADER <= chunk.length; p++) {
      const seq = getU64(view, p + 8);
      if (seq <= after || seq > after + MAX_SEQ_JUMP) continue;
      const length = view.getUint32(p);
      if (pos + p + V1_RECORD_HEADER + length > size) continue;
      const rec = p + V1_RECORD_HEADER + length <= chunk.length ? chunk.subarray(p, p + V1_RECORD_HEADER + length) : readAtSync(fd, V1_RECORD_HEADER + length, pos + p);
      if (v1Intact(rec, new DataView(rec.buffer, rec.byteOffset, rec.byteLength), 0, length)) return pos + p;
    }
    if (pos + chunk.length >= size) break;
    pos += chunk.length - V1_RECORD_HEADER + 1;
  }
  return -1;
}

export interface V1Conversion {
  records: number;
  /** Damaged byte ranges of the old file, each copied to `aside(start, end)`. */
  damage: Damage[];
}

/**
 * Converts the v1 segment `file` (open as `fd`, `size` bytes, first seq `base`) to version 2
 * in place. `aside(start, end)` names the file that receives damaged bytes.
 */
export function convertV1(file: string, fd: number, size: number, base: number, aside: (start: number, end: number) => string): V1Conversion {
  const tmp = `${file}.convert`;
  const out = fs.openSync(tmp, "w", 0o600);
  const result: V1Conversion = { records: 0, damage: [] };
  try {
    let outPos = 0;
    const header = fileHeader(base, Date.now());
    writeAllSync(out, header, outPos);
    outPos += header.length;
    let prev = base - 1;
    let pos = 0;
    let pending: Damage | null = null;
    const outBuf = new Uint8Array(READ_CHUNK + 64);
    const outView = new DataView(outBuf.buffer);
    let outFill = 0;
    const flush = () => {
      writeAllSync(out, outBuf.subarray(0, outFill), outPos);
      outPos += outFill;
      outFill = 0;
    };
    const emit = (seq: number, time: number, data: Uint8Array) => {
      if (pending) pending.after = seq;
      pending = null;
      const total = recordSize(data.length);
      if (outFill + total > outBuf.length) flush();
      if (total > outBuf.length) {
        const big = new Uint8Array(total);
        writeRecord(big, new DataView(big.buffer), 0, seq, time, data);
        writeAllSync(out, big, outPos);
        outPos += total;
      } else outFill += writeRecord(outBuf, outView, outFill, seq, time, data);
      result.records++;
      prev = seq;
    };
    while (pos < size) {
      const chunk = readAtSync(fd, Math.min(READ_CHUNK, size - pos), pos);
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let p = 0;
      let bad = -1;
      while (p < chunk.length) {
        if (p + V1_RECORD_HEADER > chunk.length) {
          if (pos + p + V1_RECORD_HEADER > size) bad = pos + p;
          break;
        }
        const length = view.getUint32(p);
        const total = V1_RECORD_HEADER + length;
        if (pos + p + total > size) {
          bad = pos + p;
          break;
        }
        let rec = chunk;
        let rv = view;
        let rp = p;
        if (p + total > chunk.length) {
          if (p > 0) break;
          rec = readAtSync(fd, total, pos);
          rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
          rp = 0;
        }
        const seq = getU64(rv, rp + 8);
        if (!v1Intact(rec, rv, rp, length) || seq <= prev) {
          bad = pos + p;
          break;
        }
        emit(seq, rv.getFloat64(rp + 16), rec.subarray(rp + V1_RECORD_HEADER, rp + total));
        p += total;
      }
      if (bad < 0) {
        pos += p;
        continue;
      }
      const next = findV1Record(fd, size, bad + 1, prev);
      pending = { start: bad, end: next >= 0 ? next : size, before: prev, after: 0 };
      result.damage.push(pending);
      if (next < 0) break;
      pos = next;
    }
    flush();
    fs.fsyncSync(out);
  } finally {
    fs.closeSync(out);
  }
  // The damaged bytes go aside before the old file is replaced.
  for (const d of result.damage) copyAside(fd, d.start, d.end, aside(d.start, d.end));
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
  return result;
}
