/**
 * FileTopicLog: a topic as a directory of append-only segments `<first seq>.log`.
 * Record: `[u32 length][u32 crc32 of the rest][u32 seq hi][u32 seq lo][f64 time][payload]`.
 * At open every segment is scanned: a torn or corrupt tail is truncated (and logged), so
 * a corrupt record is never served. Appends in flight together share one write and, with
 * fsync "always", one fsync (group commit).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { logger } from "../log.ts";
import { fsyncAsync, fsyncDir, readAtSync, writeAllSync } from "./fsutil.ts";
import { GroupCommit } from "./group-commit.ts";
import type { FsyncPolicy, RetentionPolicy, StoredMessage, TopicLog } from "./types.ts";

const log = logger("store");

export const RECORD_HEADER = 24;
/** One sparse index entry per this many bytes of segment: a read scans at most this much to find its seq. */
const INDEX_EVERY_BYTES = 64 * 1024;
const READ_CHUNK = 256 * 1024;
/**
 * The newest committed messages stay in memory (views into the buffers they were written
 * from), so subscribers that keep up are served without a read syscall or a copy.
 */
const TAIL_CACHE_BYTES = 1024 * 1024;
/** All tails of the process together stay under this, however many topics there are. */
const TAIL_CACHE_TOTAL_BYTES = 64 * 1024 * 1024;
const TAIL_ENTRY_OVERHEAD = 64;
let tailCacheTotal = 0;
/** Logs with a non-empty tail cache, least recently appended first. */
const cachedLogs = new Set<FileTopicLog>();

export interface TopicLogOptions {
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  maxSegmentBytes: number;
}

interface Segment {
  base: number;
  file: string;
  fd: number;
  size: number;
  count: number;
  /** Sparse index: seqs and their byte offsets, ascending. */
  indexSeq: number[];
  indexPos: number[];
}

interface PendingAppend {
  data: Uint8Array;
  time: number;
}

export class FileTopicLog implements TopicLog {
  private segments: Segment[] = [];
  private committed: number;
  /** Seq the next append gets, counting appends not yet committed. */
  private assigned: number;
  private readonly commits = new GroupCommit((batch: PendingAppend[]) => this.commit(batch));
  /** Tail cache: dense, ascending, committed messages from `tail[tailHead]` on. */
  private tail: StoredMessage[] = [];
  private tailHead = 0;
  private tailBytes = 0;
  /** Segments written since the last fsync (interval policy): a roll must not leave the old one unsynced. */
  private readonly dirty = new Set<Segment>();
  private intervalTimer: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly options: TopicLogOptions,
  ) {
    this.committed = 1;
    this.assigned = 1;
  }

  /** Opens the log in `dir` (creating it), verifying every segment and cutting damage. */
  static open(dir: string, options: TopicLogOptions): FileTopicLog {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tl = new FileTopicLog(dir, options);
    const names = fs
      .readdirSync(dir)
      .filter((n) => /^\d+\.log$/.test(n))
      .sort((a, b) => Number(a.slice(0, -4)) - Number(b.slice(0, -4)));
    for (const name of names) {
      const base = Number(name.slice(0, -4));
      if (tl.segments.length > 0) {
        const prev = tl.segments[tl.segments.length - 1]!;
        if (prev.base + prev.count > base) {
          log.warn(`${dir}: segment ${name} overlaps the one before it; ignoring it`);
          continue;
        }
      }
      tl.segments.push(tl.scanSegment(base, path.join(dir, name)));
    }
    if (tl.segments.length === 0) tl.segments.push(tl.createSegment(1));
    const last = tl.segments[tl.segments.length - 1]!;
    tl.committed = tl.assigned = last.base + last.count;
    if (options.fsync === "interval") {
      tl.intervalTimer = setInterval(() => void tl.syncIfDirty(), options.fsyncIntervalMs);
      tl.intervalTimer.unref?.();
    }
    return tl;
  }

  get firstSeq(): number {
    const first = this.segments.find((s) => s.count > 0);
    return first ? first.base : this.committed;
  }

  get nextSeq(): number {
    return this.committed;
  }

  append(data: Uint8Array, time: number): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`topic log ${this.dir} is closed`));
    return this.commits.add({ data, time });
  }

  /** Writes a batch of appends in one go, fsyncs per policy; returns their seqs. */
  private async commit(batch: PendingAppend[]): Promise<number[]> {
    const firstSeq = this.assigned;
    const touched = new Set<Segment>();
    const written: StoredMessage[] = [];
    try {
      this.writeBatch(batch, touched, written);
      this.assigned += batch.length;
      if (this.options.fsync === "always") await Promise.all([...touched].map((s) => fsyncAsync(s.fd)));
      else for (const s of touched) this.dirty.add(s);
    } catch (err) {
      // Nothing of this batch is acknowledged: cut what may have reached the file so that
      // seqs stay dense and the next append starts clean.
      this.rollBack(firstSeq);
      this.assigned = firstSeq;
      throw err;
    }
    this.committed = this.assigned;
    this.cacheTail(written);
    return batch.map((_, i) => firstSeq + i);
  }

  private cacheTail(written: StoredMessage[]): void {
    // Entries are views into the commit's write buffer, which they keep alive. A commit
    // bigger than the cache would pin a big buffer for a small cached part: keep only the
    // part that fits, copied out.
    let start = 0;
    let bytes = 0;
    for (const m of written) bytes += m.data.length + TAIL_ENTRY_OVERHEAD;
    const copy = bytes > TAIL_CACHE_BYTES;
    while (bytes > TAIL_CACHE_BYTES && start < written.length - 1) bytes -= written[start++]!.data.length + TAIL_ENTRY_OVERHEAD;
    for (let i = start; i < written.length; i++) {
      const m = written[i]!;
      this.tail.push(copy ? { seq: m.seq, time: m.time, data: m.data.slice() } : m);
      this.tailBytes += m.data.length + TAIL_ENTRY_OVERHEAD;
      tailCacheTotal += m.data.length + TAIL_ENTRY_OVERHEAD;
    }
    // The cache must stay dense: if part of this commit was left out, what came before goes.
    if (start > 0) this.evictTail(this.tail.length - (written.length - start));
    // Least recently appended topics give up their cache first.
    cachedLogs.delete(this);
    cachedLogs.add(this);
    for (const other of cachedLogs) {
      if (tailCacheTotal <= TAIL_CACHE_TOTAL_BYTES || other === this) break;
      other.evictTail(other.tail.length);
    }
    let upTo = this.tailHead;
    let over = this.tailBytes - TAIL_CACHE_BYTES;
    let overTotal = tailCacheTotal - TAIL_CACHE_TOTAL_BYTES;
    while (upTo < this.tail.length && (over > 0 || overTotal > 0)) {
      const size = this.tail[upTo++]!.data.length + TAIL_ENTRY_OVERHEAD;
      over -= size;
      overTotal -= size;
    }
    this.evictTail(upTo);
  }

  /** Evicts the tail cache's entries before index `upTo`. */
  private evictTail(upTo: number): void {
    while (this.tailHead < upTo) {
      const size = this.tail[this.tailHead]!.data.length + TAIL_ENTRY_OVERHEAD;
      this.tailBytes -= size;
      tailCacheTotal -= size;
      this.tail[this.tailHead++] = undefined as never; // let the buffer go
    }
    if (this.tailHead === this.tail.length) {
      this.tail = [];
      this.tailHead = 0;
      cachedLogs.delete(this);
    } else if (this.tailHead > 4096 && this.tailHead * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailHead);
      this.tailHead = 0;
    }
  }

  /** Serves `from` on out of the tail cache; null when `from` is older than the cache. */
  private readTail(from: number, maxCount: number, maxBytes: number): StoredMessage[] | null {
    if (this.tailHead >= this.tail.length) return null;
    const first = this.tail[this.tailHead]!.seq;
    if (from < first) return null;
    const out: StoredMessage[] = [];
    let bytes = 0;
    for (let i = this.tailHead + (from - first); i < this.tail.length && out.length < maxCount && (out.length === 0 || bytes < maxBytes); i++) {
      const m = this.tail[i]!;
      out.push(m);
      bytes += m.data.length;
    }
    return out;
  }

  private writeBatch(batch: PendingAppend[], touched: Set<Segment>, written: StoredMessage[]): void {
    let seq = this.assigned;
    let i = 0;
    while (i < batch.length) {
      let seg = this.segments[this.segments.length - 1]!;
      if (seg.size >= this.options.maxSegmentBytes && seg.count > 0) {
        seg = this.createSegment(seq);
        this.segments.push(seg);
      }
      // Fill the current segment up to its size limit with one write.
      let bytes = 0;
      let j = i;
      while (j < batch.length && (j === i || seg.size + bytes + RECORD_HEADER + batch[j]!.data.length <= this.options.maxSegmentBytes)) {
        bytes += RECORD_HEADER + batch[j]!.data.length;
        j++;
      }
      const buf = new Uint8Array(bytes);
      const view = new DataView(buf.buffer);
      let pos = 0;
      for (let k = i; k < j; k++, seq++) {
        const { data, time } = batch[k]!;
        if (seg.size + pos - lastIndexPos(seg) >= INDEX_EVERY_BYTES || seg.indexSeq.length === 0) {
          seg.indexSeq.push(seq);
          seg.indexPos.push(seg.size + pos);
        }
        writeRecord(buf, view, pos, seq, time, data);
        written.push({ seq, time, data: buf.subarray(pos + RECORD_HEADER, pos + RECORD_HEADER + data.length) });
        pos += RECORD_HEADER + data.length;
      }
      writeAllSync(seg.fd, buf, seg.size);
      seg.size += bytes;
      seg.count += j - i;
      touched.add(seg);
      i = j;
    }
  }

  private rollBack(toSeq: number): void {
    while (this.segments.length > 1 && this.segments[this.segments.length - 1]!.base >= toSeq) {
      const seg = this.segments.pop()!;
      this.dirty.delete(seg);
      fs.closeSync(seg.fd);
      fs.rmSync(seg.file, { force: true });
    }
    const seg = this.segments[this.segments.length - 1]!;
    const keep = Math.min(seg.count, toSeq - seg.base);
    // Cut even when no record was counted: a failed write may have left part of one.
    const offset = seg.count > keep ? this.offsetOf(seg, toSeq) : seg.size;
    try {
      fs.ftruncateSync(seg.fd, offset);
    } catch (err) {
      log.error(`${seg.file}: cannot cut a failed write at offset ${offset}:`, err);
    }
    seg.size = offset;
    seg.count = keep;
    while (seg.indexSeq.length > 0 && seg.indexSeq[seg.indexSeq.length - 1]! >= toSeq) {
      seg.indexSeq.pop();
      seg.indexPos.pop();
    }
  }

  private async syncIfDirty(): Promise<void> {
    const segments = [...this.dirty];
    this.dirty.clear();
    for (const seg of segments) {
      if (!this.segments.includes(seg)) continue; // deleted by retention meanwhile
      try {
        await fsyncAsync(seg.fd);
      } catch (err) {
        log.error(`${seg.file}: fsync failed:`, err);
      }
    }
  }

  trim(before: number, policy: RetentionPolicy, now: number): number {
    let total = 0;
    for (const seg of this.segments) total += seg.size;
    let removed = 0;
    // Oldest first, never the segment being written, and never one a subscriber still needs.
    while (this.segments.length > 1) {
      const seg = this.segments[0]!;
      if (seg.base + seg.count > before) break;
      const old = fs.fstatSync(seg.fd).mtimeMs < now - policy.maxAgeMs;
      if (!old && total <= policy.maxBytes) break;
      this.segments.shift();
      this.dirty.delete(seg);
      fs.closeSync(seg.fd);
      fs.rmSync(seg.file, { force: true });
      total -= seg.size;
      removed += seg.count;
      log.info(`${seg.file}: deleted by retention (${seg.count} messages, ${seg.size} bytes)`);
    }
    if (removed > 0) fsyncDir(this.dir);
    return removed;
  }

  read(from: number, maxCount: number, maxBytes: number): StoredMessage[] {
    const cached = this.readTail(Math.max(from, this.firstSeq), maxCount, maxBytes);
    if (cached) return cached;
    const out: StoredMessage[] = [];
    let seq = Math.max(from, this.firstSeq);
    let bytes = 0;
    while (seq < this.committed && out.length < maxCount && (out.length === 0 || bytes < maxBytes)) {
      const seg = this.segmentFor(seq);
      if (!seg) break;
      if (seq < seg.base) seq = seg.base; // a gap left by a damaged segment: skip to what exists
      const got = this.readSegment(seg, seq, maxCount - out.length, maxBytes - bytes, out);
      if (got === 0) {
        // Nothing readable here: step over to the next segment (or stop at the end).
        const next = this.segments[this.segments.indexOf(seg) + 1];
        if (!next || next.base <= seq) break;
        seq = next.base;
        continue;
      }
      for (let k = out.length - got; k < out.length; k++) bytes += out[k]!.data.length;
      seq = out[out.length - 1]!.seq + 1;
    }
    return out;
  }

  /** The segment holding `seq`, or the first one after it. */
  private segmentFor(seq: number): Segment | undefined {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.base <= seq) lo = mid;
      else hi = mid - 1;
    }
    const seg = this.segments[lo];
    if (seg && seq >= seg.base + seg.count) return this.segments[lo + 1];
    return seg;
  }

  private offsetOf(seg: Segment, seq: number): number {
    const i = upperBound(seg.indexSeq, seq) - 1;
    let pos = i >= 0 ? seg.indexPos[i]! : 0;
    let at = i >= 0 ? seg.indexSeq[i]! : seg.base;
    while (at < seq) {
      const head = readAtSync(seg.fd, RECORD_HEADER, pos);
      pos += RECORD_HEADER + new DataView(head.buffer, head.byteOffset).getUint32(0);
      at++;
    }
    return pos;
  }

  /** Reads records of `seg` from `seq` on into `out`; returns how many it added. */
  private readSegment(seg: Segment, seq: number, maxCount: number, maxBytes: number, out: StoredMessage[]): number {
    const i = upperBound(seg.indexSeq, seq) - 1;
    let pos = i >= 0 ? seg.indexPos[i]! : 0;
    let at = i >= 0 ? seg.indexSeq[i]! : seg.base;
    const end = seg.base + Math.min(seg.count, this.committed - seg.base);
    let added = 0;
    let bytes = 0;
    while (at < end && added < maxCount && (added === 0 || bytes < maxBytes)) {
      // Read about what was asked for (plus the skip from the index entry), not a whole chunk.
      const want = (pos === (i >= 0 ? seg.indexPos[i]! : 0) ? INDEX_EVERY_BYTES : 0) + Math.min(maxBytes, maxCount * 1024) + RECORD_HEADER;
      const chunk = readAtSync(seg.fd, Math.min(READ_CHUNK, seg.size - pos, Math.max(want, 16 * 1024)), pos);
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let p = 0;
      let progressed = false;
      while (p + RECORD_HEADER <= chunk.length && at < end && added < maxCount && (added === 0 || bytes < maxBytes)) {
        const length = view.getUint32(p);
        if (p + RECORD_HEADER + length > chunk.length) {
          if (p === 0) {
            // One record bigger than the chunk: read it alone.
            const whole = readAtSync(seg.fd, RECORD_HEADER + length, pos);
            const msg = this.parse(seg, whole, new DataView(whole.buffer), 0, at);
            if (!msg) return added;
            if (at >= seq) {
              out.push(msg);
              added++;
              bytes += length;
            }
            at++;
            p = whole.length;
            progressed = true;
          }
          break;
        }
        if (at >= seq) {
          const msg = this.parse(seg, chunk, view, p, at);
          if (!msg) return added;
          out.push(msg);
          added++;
          bytes += length;
        }
        p += RECORD_HEADER + length;
        at++;
        progressed = true;
      }
      if (!progressed) break;
      pos += p;
      if (p === 0) break;
    }
    return added;
  }

  /** Verifies the record at `p` and returns it; null (and an error log) if it is damaged. */
  private parse(seg: Segment, buf: Uint8Array, view: DataView, p: number, expectSeq: number): StoredMessage | null {
    const length = view.getUint32(p);
    const rec = buf.subarray(p + 8, p + RECORD_HEADER + length);
    const seq = view.getUint32(p + 8) * 2 ** 32 + view.getUint32(p + 12);
    if (Bun.hash.crc32(rec) !== view.getUint32(p + 4) || seq !== expectSeq) {
      log.error(`${seg.file}: record ${expectSeq} is damaged on disk; not serving it`);
      return null;
    }
    return { seq, time: view.getFloat64(p + 16), data: buf.subarray(p + RECORD_HEADER, p + RECORD_HEADER + length) };
  }

  private createSegment(base: number): Segment {
    const file = path.join(this.dir, `${String(base).padStart(20, "0")}.log`);
    const fd = fs.openSync(file, "w+", 0o600);
    fsyncDir(this.dir);
    return { base, file, fd, size: 0, count: 0, indexSeq: [], indexPos: [] };
  }

  /** Opens a segment and walks every record, verifying it; cuts the segment at the first damage. */
  private scanSegment(base: number, file: string): Segment {
    const fd = fs.openSync(file, "r+");
    const fileSize = fs.fstatSync(fd).size;
    const seg: Segment = { base, file, fd, size: 0, count: 0, indexSeq: [], indexPos: [] };
    let pos = 0;
    let lastIndexed = -Infinity;
    let damage: string | null = null;
    while (pos < fileSize) {
      const chunk = readAtSync(fd, Math.min(READ_CHUNK, fileSize - pos), pos);
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let p = 0;
      while (p + RECORD_HEADER <= chunk.length) {
        // Plausibility comes from the file and the CRC, never from today's --max-message-bytes:
        // a limit lowered since must not cut records that were acknowledged under the old one.
        const length = view.getUint32(p);
        let rec: Uint8Array;
        let recView: DataView;
        let rp: number;
        if (p + RECORD_HEADER + length <= chunk.length) {
          rec = chunk;
          recView = view;
          rp = p;
        } else if (p === 0) {
          if (pos + RECORD_HEADER + length > fileSize) {
            damage = "torn record";
            break;
          }
          rec = readAtSync(fd, RECORD_HEADER + length, pos);
          recView = new DataView(rec.buffer);
          rp = 0;
        } else break;
        const seq = recView.getUint32(rp + 8) * 2 ** 32 + recView.getUint32(rp + 12);
        if (Bun.hash.crc32(rec.subarray(rp + 8, rp + RECORD_HEADER + length)) !== recView.getUint32(rp + 4)) {
          damage = "checksum mismatch";
          break;
        }
        if (seq !== base + seg.count) {
          damage = `seq ${seq} where ${base + seg.count} was expected`;
          break;
        }
        if (pos + p - lastIndexed >= INDEX_EVERY_BYTES) {
          seg.indexSeq.push(seq);
          seg.indexPos.push(pos + p);
          lastIndexed = pos + p;
        }
        seg.count++;
        p += RECORD_HEADER + length;
      }
      if (damage) {
        pos += p;
        break;
      }
      if (p === 0) {
        damage = "torn record header";
        break;
      }
      pos += p;
    }
    if (damage || pos < fileSize) {
      log.warn(`${file}: ${damage ?? "torn record"} at offset ${pos}; dropping ${fileSize - pos} bytes (${seg.count} records kept)`);
      fs.ftruncateSync(fd, pos);
      fs.fsyncSync(fd);
    }
    seg.size = pos;
    return seg;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.commits.idle();
    this.closed = true;
    this.evictTail(this.tail.length);
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    for (const seg of this.segments) {
      if (this.options.fsync !== "never") fs.fsyncSync(seg.fd);
      fs.closeSync(seg.fd);
    }
  }
}

function writeRecord(buf: Uint8Array, view: DataView, pos: number, seq: number, time: number, data: Uint8Array): void {
  view.setUint32(pos, data.length);
  view.setUint32(pos + 8, Math.floor(seq / 2 ** 32));
  view.setUint32(pos + 12, seq >>> 0);
  view.setFloat64(pos + 16, time);
  buf.set(data, pos + RECORD_HEADER);
  view.setUint32(pos + 4, Bun.hash.crc32(buf.subarray(pos + 8, pos + RECORD_HEADER + data.length)));
}

function lastIndexPos(seg: Segment): number {
  return seg.indexPos.length > 0 ? seg.indexPos[seg.indexPos.length - 1]! : -Infinity;
}

/** First index whose value is greater than `x` (values ascending). */
function upperBound(values: number[], x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
