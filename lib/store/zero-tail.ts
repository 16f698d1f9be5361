/**
 * The zeroed region a segment keeps after its last record under `--fsync always`
 * (docs/storage.md, "Free space after the last record"). A commit that writes into blocks
 * the file already has, below its size, makes an fdatasync that has no size or block
 * allocation to commit to the file system's journal: the data alone is written, which is
 * faster (docs/benchmarks.md, "The disk: an fdatasync that commits no journal").
 *
 * So when a commit's write would pass the end of the file, the same positional write also
 * writes a run of zeros after the records, and that commit's own fdatasync makes the longer
 * file durable once; the commits after it write into the zeros. The run grows with use (the
 * rest of the block first, so a topic of one message costs no more disk than before, then
 * 4 KiB, doubling up to 256 KiB), and never passes the segment's size limit. Big commits
 * (more than 64 KiB) append without zeros.
 *
 * Not fallocate: its unwritten extents are converted on the first write into them, which
 * is a journal commit again.
 */
import * as fs from "node:fs";
import { errnoCode, readAtSync, writeAllSync } from "./fsutil.ts";

/** Bytes read at a time when looking at a tail (as segment.ts READ_CHUNK; not imported, segment.ts imports this file). */
const READ_CHUNK = 256 * 1024;

/** The file system block the zero run is rounded to (the usual 4 KiB). */
export const ZERO_BLOCK = 4096;
/** The longest run of zeros written past the records at once. */
export const MAX_ZERO_GROWTH = 256 * 1024;
/**
 * A commit writing more than this appends without zeros: the zeros would serve fewer than four
 * such commits, and writing them costs about what the journal commits they save do
 * (docs/benchmarks.md: 128 KiB commits were slower with zeros, 43 KiB ones much faster).
 */
export const MAX_WRITE_FOR_ZEROS = MAX_ZERO_GROWTH / 4;
/** Never written to: the source of every run of zeros. */
const ZEROS = new Uint8Array(MAX_ZERO_GROWTH + ZERO_BLOCK);

/**
 * Where the zeroed region should end after a write that ends at `writeEnd`: `growth` bytes
 * past it rounded up to a block, but not past `limit` (the segment's size limit) rounded
 * down to one; `writeEnd` (no zeros) when that is not past the write.
 */
export function zeroRegionEnd(writeEnd: number, growth: number, limit: number): number {
  // Block-aligned both ways: a file mq zeroed ahead always ends at a multiple of ZERO_BLOCK (freeTail).
  const end = Math.min(Math.ceil((writeEnd + growth) / ZERO_BLOCK), Math.floor(limit / ZERO_BLOCK)) * ZERO_BLOCK;
  return Math.max(writeEnd, end);
}

/** The growth of the next extension: 0 (the rest of the block) first, then 4 KiB, doubling up to MAX_ZERO_GROWTH. */
export function nextZeroGrowth(growth: number): number {
  return Math.min(MAX_ZERO_GROWTH, Math.max(ZERO_BLOCK, growth * 2));
}

/** Writes `buf` at `position` and `zeros` zero bytes right after it, in one positional write (more only when the kernel writes less). */
export function writeWithZeros(fd: number, buf: Uint8Array, position: number, zeros: number): void {
  if (zeros === 0) return writeAllSync(fd, buf, position);
  if (zeros > ZEROS.length) throw new RangeError(`a run of ${zeros} zero bytes is longer than ${ZEROS.length}`);
  const total = buf.length + zeros;
  let done = 0;
  while (done < buf.length) done += fs.writevSync(fd, [buf.subarray(done), ZEROS.subarray(0, zeros)], position + done);
  while (done < total) done += fs.writeSync(fd, ZEROS, 0, total - done, position + done);
}

/**
 * writeWithZeros, but on a full disk (ENOSPC) the bytes alone: the zeros make fdatasync
 * cheaper, they are never a reason to fail a commit. `fileSize`: the file's size before the
 * write; what the failed write added past it is cut first, so no partial run of zeros is left
 * (a file with zeros after its records always ends at a block boundary). Returns the zeros written.
 */
export function writeWithZerosIfRoom(fd: number, buf: Uint8Array, position: number, zeros: number, fileSize: number): number {
  try {
    writeWithZeros(fd, buf, position, zeros);
    return zeros;
  } catch (err) {
    if (zeros === 0 || errnoCode(err) !== "ENOSPC") throw err;
    try {
      fs.ftruncateSync(fd, Math.max(fileSize, position));
      writeAllSync(fd, buf, position);
      return 0;
    } catch {
      throw err; // no room for the records either (or no file to cut: /dev/full): the disk-full error it is
    }
  }
}

/**
 * True when bytes `from..size` of the file open as `fd` are free space: all zero, and the
 * file ends at a multiple of ZERO_BLOCK, as every run of zeros written here does. A zero
 * tail that ends elsewhere is not one of ours (a torn append): it is damage, as before.
 */
export function freeTail(fd: number, from: number, size: number): boolean {
  if (size % ZERO_BLOCK !== 0) return false;
  // From the end backwards: a zero tail is read once, garbage at the end is found at once.
  for (let end = size; end > from; ) {
    const start = Math.max(from, end - READ_CHUNK);
    const chunk = readAtSync(fd, end - start, start);
    if (chunk.length < end - start) return false;
    if (!Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).equals(ZEROS.subarray(0, chunk.length))) return false;
    end = start;
  }
  return true;
}
