/**
 * Helpers for tests that damage topic logs on disk: where each record is, read with a
 * parser of the tests' own (so a bug in lib/store/segment.ts cannot hide itself), and
 * records in the old format 1 for conversion fixtures.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** Version-2 sizes, as docs/storage.md gives them. */
export const FILE_HEADER = 32;
export const RECORD_HEADER = 32;

/** Segment files of the topic directory `dir`, oldest first. */
export function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^\d+\.log$/.test(n))
    .sort()
    .map((n) => path.join(dir, n));
}

export interface Located {
  seq: number;
  file: string;
  start: number;
  end: number;
}

/** Where each record of the (intact) topic directory `dir` is: record header = marker, CRC, length, flags, options length, seq, time. */
export function layout(dir: string): Located[] {
  const out: Located[] = [];
  for (const file of segmentFiles(dir)) {
    const buf = fs.readFileSync(file);
    for (let pos = FILE_HEADER; pos + RECORD_HEADER <= buf.length; ) {
      const end = pos + RECORD_HEADER + buf.readUInt16BE(pos + 14) + buf.readUInt32BE(pos + 8);
      out.push({ seq: Number(buf.readBigUInt64BE(pos + 16)), file, start: pos, end });
      pos = end;
    }
  }
  return out;
}

export function flipByte(file: string, offset: number): void {
  const buf = fs.readFileSync(file);
  buf[offset] = buf[offset]! ^ 0x5a;
  fs.writeFileSync(file, buf);
}

export const V1_RECORD_HEADER = 24;

/** A record as mq 0.1 wrote it: [u32 length][u32 CRC-32 of bytes 8..][u64 seq][f64 time][payload]. */
export function v1Record(seq: number, time: number, data: Uint8Array): Buffer {
  const buf = Buffer.alloc(V1_RECORD_HEADER + data.length);
  buf.writeUInt32BE(data.length, 0);
  buf.writeBigUInt64BE(BigInt(seq), 8);
  buf.writeDoubleBE(time, 16);
  buf.set(data, V1_RECORD_HEADER);
  buf.writeUInt32BE(Bun.hash.crc32(buf.subarray(8)), 4);
  return buf;
}
