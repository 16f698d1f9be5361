/**
 * FileTopicLog: a topic as a directory of append-only segments `<first seq>.log` in the
 * format of segment.ts, with `meta` and `head` beside them (topic-meta.ts).
 *
 * Acknowledged means kept: damage costs the damaged records only (the scan resyncs at the
 * next intact record), the damaged bytes are copied to `damaged/` before anything is cut,
 * every loss is logged at ERROR with its seqs and counted once (`lost`), and a seq is never
 * handed out twice, whatever was lost. Sealed segments have a checkpoint, so a start reads
 * the newest segment only. Appends in flight together share one write and, with fsync
 * "always", one fsync (group commit).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { logger } from "../log.ts";
import { fsyncDir, readAtSync } from "./fsutil.ts";
import { GroupCommit } from "./group-commit.ts";
import { digitCount, dropFromRun, expandMsgIdRuns, prefixBytes, type IdRun } from "./id-run.ts";
import {
  copyAside,
  FILE_HEADER,
  fileHeader,
  findRecord,
  INDEX_EVERY_BYTES,
  loadCheckpoint,
  parseFileHeader,
  READ_CHUNK,
  RECORD_HEADER,
  RECORD_SYNC,
  recordData,
  recordIntact,
  recordSeq,
  recordSize,
  recordTime,
  extraFieldsSize,
  recordTotal,
  scanMsgIds,
  scanSegment,
  checkpointFile,
  writeCheckpoint,
  writeRecord,
  writeRecordOfRun,
  type Damage,
  type ExtraFields,
  type ScanResult,
} from "./segment.ts";
import { UNBOUNDED, type OpenFiles, type PooledFile } from "./open-files.ts";
import { readAhead, READ_AHEAD_BYTES, ReadHints } from "./read-ahead.ts";
import { fileSystemOf, type FileSystemRef } from "./commit-syncs.ts";
import { syncCommit, type CommitShape } from "./sync-place.ts";
import { convertV1, startsWithV1Record } from "./segment-v1.ts";
import { addHole, bootId, HeadFile, readHead, readMeta, uncovered, writeMetaAsync, writeMetaSync, type Head, type MetaBatch, type TopicMeta } from "./topic-meta.ts";
import { extraFieldsOf, readExtraFields } from "./record-fields.ts";
import { MAX_WRITE_FOR_ZEROS, nextZeroGrowth, writeWithZerosIfRoom, zeroRegionEnd } from "./zero-tail.ts";
import type { AppendFields, DeliverAfter, FsyncPolicy, MsgIdRecord, MsgIdRun, RetentionPolicy, StoredMessage, TopicLog } from "./types.ts";

const log = logger("store");

export { RECORD_HEADER, FILE_HEADER };
/**
 * Seqs reserved ahead in `meta`: one meta write (temp + fsync + rename) per this many
 * appends, started early so that appends never wait for it in steady state.
 */
export const RESERVE_BLOCK = 65_536;
/**
 * The newest committed messages stay in memory (views into the buffers they were written
 * from), so subscribers that keep up are served without a read syscall or a copy. 8 MiB
 * (~40,000 messages of 128 B): the ids of a fan-out, which ack at their own pace, and a
 * publisher with many in flight keep the subscribers that far behind the head (1 MiB made
 * them read the disk, a read and a CRC per message per id: a third of `mq up`'s CPU).
 */
const TAIL_CACHE_BYTES = 8 * 1024 * 1024;
/** All tails of the process together stay under this, however many topics there are. */
const TAIL_CACHE_TOTAL_BYTES = 64 * 1024 * 1024;
const TAIL_ENTRY_OVERHEAD = 64;
/**
 * The readers' floor (`readFloor`) is asked once per this many bytes cached: a topic may have
 * very many subscriptions, and a cache this much above the floor costs nothing.
 */
const FLOOR_STEP_BYTES = 64 * 1024;
/** Records read at a time by a scan for an append time (seqAtTime). */
const SCAN_BATCH = 256;
/** How long a commit made while a sync runs holds the next one back at most (commit). */
const STALL_MS = 5;
/** A `syncBehind` with nothing running, and no failure to pass on. */
const NO_SYNC_FAILURE: Promise<unknown> = Promise.resolve(null);
let tailCacheTotal = 0;
/** Bytes the tail caches of this process hold (payload + TAIL_ENTRY_OVERHEAD a message): `mq stats`. */
export const tailCacheBytes = (): number => tailCacheTotal;
/** Logs with a non-empty tail cache, least recently appended first. */
const cachedLogs = new Set<FileTopicLog>();

export interface TopicLogOptions {
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  maxSegmentBytes: number;
  /** The pool its segments and `head` are opened in (open-files.ts); by default no bound. */
  files?: OpenFiles;
  /** `--fsync always`: readable once written (default) or once synced (types.ts, DeliverAfter). */
  deliverAfter?: DeliverAfter;
}

interface Segment {
  base: number;
  file: string;
  /** Opened on use, closed when the pool needs room (fsynced first if it owes that). */
  handle: PooledFile;
  /** The log's end in this file: the end of its last record (or damage). Not the file's size: see `allocated`. */
  size: number;
  /** The file's size: the bytes from `size` to here are zeros, written ahead for later commits (zero-tail.ts). */
  allocated: number;
  count: number;
  /** Seqs of the first and last record, and the offset of the last one (0 when count is 0). */
  firstSeq: number;
  lastSeq: number;
  lastPos: number;
  /** Sparse index: seqs and their byte offsets, ascending. */
  indexSeq: number[];
  indexPos: number[];
  /** Damaged byte ranges that reads jump over, ascending. */
  skips: Array<{ start: number; end: number }>;
  /** Rolled over (or found so at open): never appended to again; it has a checkpoint. */
  sealed: boolean;
}

/**
 * The appends of one call, waiting for the group commit together: one (`append`) or a publish
 * batch (`appendBatch`), all at `time`. A batch is one entry, not one object per message: the
 * per-message parts of a plain batch are its payloads and the numbers of its run of ids.
 */
interface PendingAppends {
  /** At least one. */
  data: Uint8Array[];
  time: number;
  /** The id of message k is these UTF-8 bytes then the digits of `idFrom + k` (lib/store/id-run.ts), or none. */
  idPrefix: Uint8Array | undefined;
  idFrom: number;
  /** Message ids and other fields, per message; undefined when no message of the call has any. */
  fields: Array<PreparedFields | undefined> | undefined;
}

/** What a record needs of a message's AppendFields: the message id as UTF-8, headers and expiry encoded. */
interface PreparedFields {
  msgId: Uint8Array | undefined;
  extra: ExtraFields | undefined;
  /** As the reader gets them back (only when there are headers or an expiry). */
  fields: AppendFields | undefined;
}

const utf8 = new TextEncoder();

function prepareFields(fields: AppendFields): PreparedFields | undefined {
  const extra = extraFieldsOf(fields.headers, fields.expiresAt);
  if (fields.msgId === undefined && !extra) return undefined;
  return { msgId: fields.msgId === undefined ? undefined : utf8.encode(fields.msgId), extra, fields: extra && fields };
}

function pendingAppends(data: Uint8Array[], time: number, fields: ReadonlyArray<AppendFields | undefined>, ids?: IdRun): PendingAppends {
  let prepared: Array<PreparedFields | undefined> | undefined;
  // An empty `fields`: no message has any (appendAll's plain batch).
  for (let k = 0; k < fields.length; k++) {
    const f = fields[k];
    if (f === undefined) continue;
    prepared ??= new Array<PreparedFields | undefined>(data.length);
    prepared[k] = prepareFields(f);
  }
  return { data, time, idPrefix: ids && prefixBytes(ids), idFrom: ids ? ids.from : 0, fields: prepared };
}

/** Bytes of the record of message `k` of `entry`. */
function recordSizeOf(entry: PendingAppends, k: number): number {
  const f = entry.fields?.[k];
  const idLength = entry.idPrefix ? entry.idPrefix.length + digitCount(entry.idFrom + k) : f?.msgId ? f.msgId.length : 0;
  return recordSize(entry.data[k]!.length, idLength, extraFieldsSize(f?.extra));
}

/** A run of seqs found missing, and why, for the log line. */
interface Gap {
  from: number;
  to: number;
  cause: string;
  /** False when only an upper bound is known (some of these seqs may never have been handed out). */
  exact: boolean;
}

/** What the last segment looked like before a batch, to undo the batch exactly. */
interface SavedTail {
  /** The newest segment then: those after it were made by the batch. */
  last: Segment;
  size: number;
  count: number;
  firstSeq: number;
  lastSeq: number;
  lastPos: number;
  index: number;
  sealed: boolean;
}

export class FileTopicLog implements TopicLog {
  private segments: Segment[] = [];
  private committed = 1;
  /** Seq the next append gets, counting appends not yet committed. */
  private assigned = 1;
  /** Newest committed seq stored (0: none), and how many committed messages are stored. */
  private lastStored = 0;
  private stored = 0;
  /** Each entry is answered with the seq of its first message (the others follow it). */
  private readonly commits = new GroupCommit((entries: PendingAppends[], waited: boolean, release: () => void) => this.commit(entries, waited, release));
  /** The newest sync of the topic, running or due: the next one starts after it. Never rejects: resolves to its own error, if it failed. */
  private syncBehind: Promise<unknown> = NO_SYNC_FAILURE;
  /** The sync due after the running one, for the commits with readers that came meanwhile (commit). */
  private nextSync: SharedSync | null = null;
  /** Where recent reads stopped, so that a reader's next read goes on from there (read-ahead.ts). */
  private readonly readHints = new ReadHints();
  /** Tail cache: dense, ascending, committed messages from `tail[tailHead]` on. */
  private tail: StoredMessage[] = [];
  private tailHead = 0;
  private tailBytes = 0;
  /** Bytes cached since the readers' floor was last asked. */
  private cachedSinceFloor = 0;
  readFloor: (() => number) | undefined = undefined;
  onWritten: (() => boolean) | undefined = undefined;
  /** `--fsync always --deliver-after write`: a commit's messages are readable before its fsync returns. */
  private readonly readableBeforeSync: boolean;
  /** Segments written since the last fsync (interval policy): a roll must not leave the old one unsynced. */
  private readonly dirty = new Set<Segment>();
  /** Interval policy: the fsync of `dirty` due (a timer only while something is dirty, so idle topics cost nothing). */
  private intervalTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private meta: TopicMeta = { reserved: 1, clean: true, first: 1, lost: 0, holes: [] };
  /** What `meta` on disk says (null: there is none). */
  private metaOnDisk: { reserved: number; clean: boolean } | null = null;
  /** Seqs below this are covered by a reservation on disk. */
  private durableReserved = 0;
  private reserving: Promise<void> | null = null;
  private metaWrites: Promise<void> = Promise.resolve();
  private metaBusy = 0;
  private head: HeadFile | null = null;
  /** How far past its records the next write that passes the end of the file zeroes ahead (zero-tail.ts): grows with use. */
  private zeroGrowth = 0;
  private readonly topic: string;
  private readonly files: OpenFiles;
  /** Where its files are, for a syncfs shared with other topics' commits (null: not asked yet). */
  private fileSystem: FileSystemRef | undefined | null = null;

  private constructor(
    readonly dir: string,
    private readonly options: TopicLogOptions,
  ) {
    this.topic = path.basename(dir);
    this.files = options.files ?? UNBOUNDED;
    this.readableBeforeSync = options.fsync === "always" && (options.deliverAfter ?? "write") === "write";
  }

  /**
   * Makes the first (empty) segment of a new log in `dir`, which exists, off the event loop;
   * the caller fsyncs the directory. `open` then only reads.
   */
  static async create(dir: string): Promise<void> {
    const handle = await fs.promises.open(path.join(dir, segmentFileName(1)), "wx", 0o600);
    await handle.close();
  }

  /** Opens the log in `dir` (creating it): verifies the newest segment, checks the others' checkpoints, reports losses. */
  static open(dir: string, options: TopicLogOptions): FileTopicLog {
    const tl = new FileTopicLog(dir, options);
    try {
      tl.recover();
    } catch (err) {
      for (const seg of tl.segments) seg.handle.close(false);
      throw err;
    }
    return tl;
  }

  get firstSeq(): number {
    const first = this.segments.find((s) => s.count > 0);
    return first && first.firstSeq < this.committed ? first.firstSeq : this.committed;
  }

  get nextSeq(): number {
    return this.committed;
  }

  get lastSeq(): number {
    return this.lastStored;
  }

  get count(): number {
    return this.stored;
  }

  get lost(): number {
    return this.meta.lost;
  }

  append(data: Uint8Array, time: number, fields?: AppendFields): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`topic log ${this.dir} is closed`));
    return this.commits.add(pendingAppends([data], time, [fields]));
  }

  appendBatch(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids?: IdRun): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error(`topic log ${this.dir} is closed`));
    if (data.length === 0) return Promise.resolve([]);
    const n = data.length;
    return this.commits.add(pendingAppends(data, time, fields, ids)).then((first) => {
      const seqs = new Array<number>(n);
      for (let i = 0; i < n; i++) seqs[i] = first + i;
      return seqs;
    });
  }

  async recentMsgIds(since: number, limit: number): Promise<MsgIdRecord[]> {
    return expandMsgIdRuns(await this.recentMsgIdRuns(since, limit));
  }

  async recentMsgIdRuns(since: number, limit: number): Promise<MsgIdRun[]> {
    const parts: MsgIdRun[][] = [];
    let n = 0;
    // Newest segment first; one whose first record read is older than `since` is the last.
    for (let k = this.segments.length - 1; k >= 0 && n < limit; k--) {
      const seg = this.segments[k]!;
      if (seg.count === 0) continue;
      const part: MsgIdRun[] = [];
      const first = scanMsgIds(seg.file, seg.size, seg.indexPos, since, this.committed, part);
      parts.push(part);
      for (const run of part) n += run.count;
      if (first < since) break;
    }
    const all = parts.reverse().flat();
    // The newest `limit` ids: whole runs dropped from the oldest, then part of one.
    let drop = n - limit;
    let from = 0;
    while (drop > 0 && drop >= all[from]!.count) drop -= all[from++]!.count;
    if (drop > 0) all[from] = dropFromRun(all[from]!, drop);
    return from > 0 ? all.slice(from) : all;
  }

  // ---------------------------------------------------------------------------------------
  // Opening: load, verify, convert, report

  private recover(): void {
    // One listing serves it all: a start with many topics pays for every syscall per topic.
    let listing: string[];
    try {
      listing = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      listing = [];
    }
    for (const n of listing) if (/\.(tmp|convert)$/.test(n)) fs.rmSync(path.join(this.dir, n), { force: true });
    const metaFile = path.join(this.dir, "meta");
    const read = readMeta(metaFile);
    if (read === "damaged") {
      const aside = this.asidePath(`meta.${Date.now()}`);
      fs.mkdirSync(path.dirname(aside), { recursive: true, mode: 0o700 });
      fs.copyFileSync(metaFile, aside);
      log.error(`topic "${this.topic}": ${metaFile} is damaged (copied to ${aside}); its seq reservation and list of reported losses are gone, so the segments and the head file are trusted`);
    }
    const meta = typeof read === "object" ? read : null;
    if (meta) {
      this.meta = meta;
      this.metaOnDisk = { reserved: meta.reserved, clean: meta.clean };
      this.durableReserved = meta.reserved;
    }
    const head = readHead(path.join(this.dir, "head"));
    const names = listing.filter((n) => /^\d+\.log$/.test(n)).sort((a, b) => Number(a.slice(0, -4)) - Number(b.slice(0, -4)));
    const checkpoints = new Set(listing.filter((n) => n.endsWith(".ckpt")));
    // Records of the newest segment must lie below every seq ever reserved.
    const newestBound = meta ? meta.reserved : Number.MAX_SAFE_INTEGER;
    const scans = new Map<Segment, ScanResult>();
    let prevLast = 0;
    let converted = false;
    for (const [i, name] of names.entries()) {
      const base = Number(name.slice(0, -4));
      const newest = i === names.length - 1;
      const below = newest ? newestBound : Number(names[i + 1]!.slice(0, -4));
      const loaded = this.loadSegment(path.join(this.dir, name), base, newest, prevLast, below, checkpoints.has(`${name.slice(0, -4)}.ckpt`));
      if (!loaded) continue;
      converted ||= loaded.converted;
      const seg = loaded.seg;
      if (meta && seg.count > 0 && seg.lastSeq < meta.first && !newest) {
        // Retention had moved past it and was stopped before deleting it.
        seg.handle.close(false);
        this.removeSegmentFiles(seg);
        log.info(`topic "${this.topic}": ${name} deleted by retention (finishing a deletion interrupted before)`);
        continue;
      }
      if (loaded.scan) scans.set(seg, loaded.scan);
      this.segments.push(seg);
      if (seg.count > 0) prevLast = seg.lastSeq;
    }
    if (!meta) this.meta.first = this.segments[0]?.base ?? 1;

    // The seq after the last one ever handed out.
    const last = prevLast >= this.meta.first ? prevLast + 1 : this.meta.first;
    let next = last;
    let exact = true;
    // Across a reboot only where every seq a reader was given had been fsynced when head said
    // so: `--deliver-after write` gives out seqs before their sync, so a power cut may take
    // messages that readers got, and their seqs must not be given again (the reservation's bound).
    const headTrusted = head !== null && ((head.policy === "always" && !head.early) || (head.boot !== 0 && head.boot === bootId()));
    // No reboot since the reservation was written (before any seq in it was handed out): the
    // page cache kept every record written since, so the scan is exact even when `head` is
    // empty or damaged (a kill before a new topic's head got its first write), unless the scan
    // cut damage from the end, whose seqs only a head could tell.
    const newestScanned = this.segments[this.segments.length - 1];
    const tailDamaged = newestScanned !== undefined && (scans.get(newestScanned)?.damage.some((d) => d.after === 0) ?? false);
    const sameBoot = meta?.boot !== undefined && meta.boot === bootId() && !tailDamaged;
    if (meta?.clean) next = Math.max(meta.reserved, last);
    else if (headTrusted) next = Math.max(head.next, last);
    else if (sameBoot) next = Math.max(head?.next ?? last, last);
    else if (meta) {
      next = Math.max(meta.reserved, last);
      exact = next === last;
    } else if (head) {
      // No reservation to go by (meta damaged): head, even untrusted, is a bound the records may not reach.
      next = Math.max(head.next, last);
      exact = next === last;
    }

    // Why only an upper bound is known, when it is (a reboot is claimed only when the boot ids say so).
    const rebooted = (head !== null && head.boot !== 0 && head.boot !== bootId()) || (meta?.boot !== undefined && meta.boot !== bootId());
    const headMissing = head === null ? "its head file (the exact next seq) is missing or damaged" : null;
    const gaps = this.findGaps(scans, head, last, next, exact ? null : rebooted ? "rebooted" : (headMissing ?? "rebooted"));
    const newlyLost = this.reconcile(gaps);
    this.committed = this.assigned = next;
    this.lastStored = prevLast >= this.meta.first ? prevLast : 0;
    this.stored = this.segments.reduce((n, s) => n + s.count, 0);
    const newestSeg = this.segments[this.segments.length - 1];
    if (!newestSeg || newestSeg.sealed) this.segments.push(this.createSegment(next));
    if (newlyLost > 0 || read === "damaged" || converted || (!meta && next > 1)) {
      // Write down what was found (losses, and the next seq) before anything is appended.
      this.meta.reserved = Math.max(next, this.durableReserved);
      this.meta.clean = this.meta.reserved === next;
      this.writeMetaNow(this.meta);
    }
  }

  /**
   * Opens one segment file: converts a version-1 file, trusts a verified checkpoint (not
   * for the newest, which is always scanned unless it was sealed), else scans it, copies
   * damaged bytes aside, cuts damage at the end of the newest, and checkpoints a sealed one.
   */
  private loadSegment(file: string, base: number, newest: boolean, after: number, below: number, checkpointed: boolean): { seg: Segment; scan: ScanResult | null; converted: boolean } | null {
    const handle = this.files.openNow(file, { durable: this.options.fsync !== "never" });
    try {
      return this.loadOpenSegment(handle, base, newest, after, below, checkpointed);
    } catch (err) {
      handle.close(false);
      throw err;
    }
  }

  /** loadSegment once the file is open; it closes `handle` itself when it returns null. */
  private loadOpenSegment(handle: PooledFile, base: number, newest: boolean, after: number, below: number, checkpointed: boolean): { seg: Segment; scan: ScanResult | null; converted: boolean } | null {
    const file = handle.file;
    const name = path.basename(file);
    // No other file of the pool is opened in here, so this fd stays open throughout.
    let fd = handle.fd();
    let size = fs.fstatSync(fd).size;
    const empty = (): Segment => ({ base, file, handle, size, allocated: size, count: 0, firstSeq: 0, lastSeq: 0, lastPos: 0, indexSeq: [], indexPos: [], skips: [], sealed: false });
    if (size === 0) {
      if (!newest) {
        handle.close(false);
        fs.rmSync(file, { force: true });
        log.warn(`topic "${this.topic}": removed the empty segment ${name}`);
        return null;
      }
      // Nothing is written at open: the first append writes the file header with its records.
      return { seg: empty(), scan: null, converted: false };
    }
    let converted = false;
    const headerBase = parseFileHeader(readAtSync(fd, FILE_HEADER, 0));
    if (headerBase === null && this.isVersion1(fd, size, base)) {
      const result = convertV1(file, fd, size, base, (start, end) => this.asidePath(`${name}.${start}-${end}`));
      handle.reset(); // the converted file was renamed over it
      fd = handle.fd();
      size = fs.fstatSync(fd).size;
      converted = true;
      log.info(`topic "${this.topic}": converted segment ${name} to format 2 (${result.records} records)`);
      for (const d of result.damage) {
        log.warn(`topic "${this.topic}": segment ${name} (format 1): damaged bytes ${d.start}..${d.end} copied to ${this.asidePath(`${name}.${d.start}-${d.end}`)}`);
      }
    } else if (headerBase === null) {
      const aside = this.asidePath(`${name}.0-${Math.min(FILE_HEADER, size)}`);
      if (copyAside(fd, 0, Math.min(FILE_HEADER, size), aside)) log.warn(`topic "${this.topic}": the file header of segment ${name} is damaged (copied to ${aside}); its records are read on`);
    } else if (headerBase !== base) {
      log.warn(`topic "${this.topic}": segment ${name} says its first seq is ${headerBase}; going by its name`);
    }
    if (!converted && headerBase !== null && checkpointed) {
      const ck = loadCheckpoint(file, fd, size, base);
      if (ck) {
        if (ck.count > 0 && ck.firstSeq <= after) return this.ignoreOverlap(handle, name, after);
        return { seg: { base, file, handle, size, allocated: size, count: ck.count, firstSeq: ck.firstSeq, lastSeq: ck.lastSeq, lastPos: ck.lastPos, indexSeq: ck.indexSeq, indexPos: ck.indexPos, skips: ck.skips, sealed: true }, scan: null, converted };
      }
    }
    // Two copies of one stretch of the log: keep the first, as before (an operator's copy, not damage).
    const firstSeq = firstRecordSeq(fd, size);
    if (firstSeq !== null && firstSeq <= after) return this.ignoreOverlap(handle, name, after);

    const scan = scanSegment(fd, size, FILE_HEADER, { after, below });
    if (headerBase === null && !converted && newest) {
      // Appends never go to a file whose header is damaged: with no record left it is
      // replaced (its bytes are aside), else it is sealed and a new segment follows.
      if (scan.count === 0) {
        for (const d of scan.damage) copyAside(fd, d.start, d.end, this.asidePath(`${name}.${d.start}-${d.end}`));
        handle.close(false);
        fs.rmSync(file, { force: true });
        return null;
      }
      newest = false;
    }
    // The zeros after the last record are room for appends, not damage: the log ends at `scan.end`.
    const seg: Segment = { ...empty(), size: scan.end, count: scan.count, firstSeq: scan.firstSeq, lastSeq: scan.lastSeq, lastPos: scan.lastPos, indexSeq: scan.indexSeq, indexPos: scan.indexPos };
    for (const d of scan.damage) {
      const aside = this.asidePath(`${name}.${d.start}-${d.end}`);
      const fresh = copyAside(fd, d.start, d.end, aside);
      if (newest && d.after === 0) {
        // Damage up to the end of the newest segment: cut it, so appends go on from the last intact record.
        fs.ftruncateSync(fd, d.start);
        fs.fsyncSync(fd);
        seg.size = seg.allocated = d.start;
        if (fresh) log.warn(`topic "${this.topic}": cut ${d.end - d.start} bytes of a torn or damaged end from segment ${name} at offset ${d.start} (copied to ${aside})`);
      } else {
        seg.skips.push({ start: d.start, end: d.end });
        if (fresh) log.warn(`topic "${this.topic}": damaged bytes ${d.start}..${d.end} of segment ${name} (copied to ${aside})${d.after === 0 ? "" : "; the intact records after them are kept"}`);
      }
    }
    if (!newest) this.seal(seg);
    return { seg, scan, converted };
  }

  private ignoreOverlap(handle: PooledFile, name: string, after: number): null {
    log.warn(`topic "${this.topic}": segment ${name} starts at or below seq ${after}, which an earlier segment holds; ignoring it`);
    handle.close(false);
    return null;
  }

  /** True when a file without a version-2 header is a version-1 segment (to convert). */
  private isVersion1(fd: number, size: number, base: number): boolean {
    const head = readAtSync(fd, 4, 0);
    if (head.length === 4 && new DataView(head.buffer, head.byteOffset).getUint32(0) === 0x4d515347) return false; // "MQSG": a damaged v2 header
    if (startsWithV1Record(fd, size, base)) return true;
    // A damaged v2 header in front of v2 records.
    if (size >= FILE_HEADER + RECORD_HEADER) {
      const at = readAtSync(fd, 4, FILE_HEADER);
      if (new DataView(at.buffer, at.byteOffset).getUint32(0) === RECORD_SYNC) return false;
    }
    return findRecord(fd, Math.min(size, 1024 * 1024), 0, 0, Number.MAX_SAFE_INTEGER) === null;
  }

  /** The seq ranges missing between `meta.first` and `next`, each with what is known of why. */
  /** `bound`: why only an upper bound of the tail is known ("rebooted", or the text of another reason); null when it is exact. */
  private findGaps(scans: Map<Segment, ScanResult>, head: Head | null, last: number, next: number, bound: string | null): Gap[] {
    const gaps: Gap[] = [];
    let expected = this.meta.first;
    let prev: Segment | null = null;
    const name = (s: Segment) => path.basename(s.file);
    const damageText = (s: Segment, d: Damage) => `damaged bytes ${d.start}..${d.end} of segment ${name(s)} (copied to ${this.asidePath(`${name(s)}.${d.start}-${d.end}`)})`;
    for (const seg of this.segments) {
      if (seg.count === 0) continue;
      if (seg.firstSeq > expected) {
        const atStart = scans.get(seg)?.damage.find((d) => d.start === FILE_HEADER);
        const atEnd = prev ? scans.get(prev)?.damage.find((d) => d.after === 0) : undefined;
        const cause = atStart
          ? damageText(seg, atStart)
          : atEnd && prev
            ? damageText(prev, atEnd)
            : prev
              ? `no segment holds them (a segment file between ${name(prev)} and ${name(seg)} is missing)`
              : `no segment holds them (the oldest segment before ${name(seg)} is missing)`;
        gaps.push({ from: expected, to: seg.firstSeq - 1, cause, exact: true });
      }
      for (const g of scans.get(seg)?.gaps ?? []) {
        gaps.push({ from: g.from, to: g.to, cause: g.damage ? damageText(seg, g.damage) : `missing inside segment ${name(seg)}`, exact: true });
      }
      expected = seg.lastSeq + 1;
      prev = seg;
    }
    if (next > last) {
      const newest = this.segments[this.segments.length - 1];
      const tailDamage = newest ? scans.get(newest)?.damage.find((d) => d.after === 0) : undefined;
      let cause: string;
      if (head && newest && head.segment > newest.base) cause = `the newest segment ${String(head.segment).padStart(20, "0")}.log is missing`;
      else if (!newest) cause = "no segment holds them (every segment file is missing)";
      else if (tailDamage) cause = `cut from the end of the log: ${damageText(newest, tailDamage)}`;
      else cause = `missing at the end of the log (segment ${name(newest)} was cut short or is missing)`;
      if (bound === "rebooted") {
        const writes = head?.early ? "messages delivered to subscribers before their fsync (--deliver-after write; none of them was acknowledged to its publisher)" : `writes under --fsync ${head?.policy ?? "interval or never"}`;
        cause += `; the server was not stopped cleanly and the machine restarted since, so ${writes} may not have reached the disk (only an upper bound is known)`;
      } else if (bound !== null) {
        cause += `; the server was not stopped cleanly and ${bound}, so only an upper bound is known (the seq reservation)`;
      }
      gaps.push({ from: last, to: next - 1, cause, exact: bound === null });
    }
    return gaps;
  }

  /** Logs and counts the parts of `gaps` not reported before; returns how many seqs they hold. */
  private reconcile(gaps: Gap[]): number {
    let added = 0;
    for (const g of gaps) {
      for (const [a, b] of uncovered(this.meta.holes, g.from, g.to)) {
        const n = b - a + 1;
        added += n;
        addHole(this.meta.holes, a, b);
        const what = g.exact ? `lost ${n} message${n === 1 ? "" : "s"}` : `up to ${n} message${n === 1 ? "" : "s"} may be lost`;
        log.error(`topic "${this.topic}": ${what}, ${a === b ? `seq ${a}` : `seqs ${a}..${b}`}: ${g.cause}`);
      }
    }
    this.meta.lost += added;
    return added;
  }

  private asidePath(file: string): string {
    return path.join(this.dir, "damaged", file);
  }

  // ---------------------------------------------------------------------------------------
  // Meta: reservation, clean flag, losses

  private writeMetaNow(meta: TopicMeta): void {
    writeMetaSync(path.join(this.dir, "meta"), meta);
    this.metaOnDisk = { reserved: meta.reserved, clean: meta.clean };
    this.durableReserved = Math.max(this.durableReserved, meta.reserved);
  }

  /** Queues a write of the meta as it is when the write starts; resolves once it is durable. */
  private saveMeta(): Promise<void> {
    this.metaBusy++;
    const run = this.metaWrites.then(async () => {
      const meta: TopicMeta = { ...this.meta, holes: this.meta.holes.map((h): [number, number] => [h[0], h[1]]) };
      await writeMetaAsync(path.join(this.dir, "meta"), meta);
      this.metaOnDisk = { reserved: meta.reserved, clean: meta.clean };
      this.durableReserved = Math.max(this.durableReserved, meta.reserved);
    });
    this.metaWrites = run.catch(() => {}).finally(() => void this.metaBusy--);
    return run;
  }

  /** Makes sure every seq below `upTo` is covered by a reservation on disk. */
  private async reserve(upTo: number): Promise<void> {
    for (let i = 0; i < 3 && this.durableReserved < upTo; i++) {
      if (!this.reserving) this.startReservation(upTo);
      await this.reserving;
    }
    if (this.durableReserved < upTo) throw new Error(`topic log ${this.dir}: cannot reserve seqs up to ${upTo}`);
  }

  private startReservation(upTo: number): void {
    this.meta.reserved = Math.max(this.meta.reserved, upTo + RESERVE_BLOCK);
    this.meta.clean = false;
    const p = this.saveMeta().finally(() => {
      if (this.reserving === p) this.reserving = null;
    });
    this.reserving = p;
    p.catch((err) => log.error(`topic "${this.topic}": cannot write the seq reservation: ${(err as Error).message}`));
  }

  // ---------------------------------------------------------------------------------------
  // Appending

  /**
   * Writes the entries' appends in one go, fsyncs per policy; returns the seq of each entry's
   * first message. `waited`: some entries were queued while the previous commit ran.
   * `release()` lets the next commit start before this one returns (below).
   */
  private async commit(entries: PendingAppends[], waited: boolean, release: () => void): Promise<number[]> {
    let count = 0;
    for (const entry of entries) count += entry.data.length;
    // Seqs are handed out only below a reservation on disk: after any loss, none is reused.
    if (this.durableReserved < this.assigned + count) await this.reserve(this.assigned + count);
    const firstSeq = this.assigned;
    // None after a rollback that could not start one (below): this commit tries again.
    if (this.segments.length === 0) this.segments.push(this.createSegment(this.assigned));
    const saved = this.saveTail();
    const touched = new Set<Segment>();
    const written: StoredMessage[] = [];
    let readable = false;
    try {
      this.writeBatch(entries, touched, written);
      this.assigned += count;
      if (this.options.fsync === "always") {
        let readers = false;
        if (this.readableBeforeSync) {
          // Readable now, while the disk works: what a reader gets survives the process being
          // killed (the page cache has it); its publishers are answered once it is synced.
          this.makeReadable(count, written);
          readable = true;
          readers = this.tellWritten();
        }
        // Its file system, asked at the first sync (not at open: a start opens every topic).
        if (this.fileSystem === null) this.fileSystem = fileSystemOf(this.dir);
        const shape = { requests: entries.length, messages: count, files: touched.size, waited, readers };
        const handles = [...touched].map((s) => s.handle);
        const fileSystem = this.fileSystem;
        // One sync of the topic at a time, each after those of the commits before it: answers
        // come in order, and a write-back error (the kernel reports it to one fsync of a file)
        // goes to the commits of the sync that was running, and to those written while it ran
        // (the sync after it, which the kernel may answer 0: `behind` resolves to the error).
        const behind = this.syncBehind;
        if (readers) {
          // Its messages are on their way: the next commit is written (and pushed) while this
          // sync runs, not after it (a slow sync held up every delivery behind it). The commits
          // made while a sync runs share the one sync due after it (their writes are done before
          // it starts): a topic has at most two syncs under way. A commit that joins that sync
          // lets the next one start once the running sync returns (what arrives meanwhile then
          // goes as one commit), or after STALL_MS when the disk stalls: deliveries go on then,
          // STALL_MS apart (a 225 ms fdatasync held every delivery behind it for as long).
          let shared = this.nextSync;
          let running: Promise<unknown> | null = null;
          if (shared) {
            shared.join(shape, handles);
            running = shared.after;
          } else {
            // It starts at the next turn, once the pushes are written to their sockets (in `mq
            // up`, the in-memory link hands them over at the next turn too, before this): the
            // disk's start (a thread, a doorbell the hypervisor traps) then no longer competes
            // for the 2 CPUs with the subscriber waking up to read them (docs/benchmarks.md,
            // "the sync after the pushes").
            const due = new SharedSync(shape, handles, behind);
            due.done = behind.then(async (failedBefore) => {
              await nextTurn();
              if (this.nextSync === due) this.nextSync = null;
              await syncCommit(this, due.shape, [...due.files], fileSystem);
              if (failedBefore) throw failedWhileWritten(failedBefore);
            });
            const behindNext = syncFailure(due.done);
            this.syncBehind = behindNext;
            // Once it has settled, commits written after it start clean.
            void behindNext.then(() => {
              if (this.syncBehind === behindNext) this.syncBehind = NO_SYNC_FAILURE;
            });
            this.nextSync = shared = due;
          }
          if (running) await settledOrAfter(running, STALL_MS);
          release();
          await shared.done;
        } else {
          const failedBefore = await behind;
          const syncing = syncCommit(this, shape, handles, fileSystem);
          if (syncing) await syncing;
          if (failedBefore) throw failedWhileWritten(failedBefore);
        }
      } else if (this.options.fsync === "interval") this.markDirty(touched);
    } catch (err) {
      // Read already: its seqs stay its own (never handed out again); nothing of it is acknowledged.
      if (readable) {
        const what = `${count} message${count === 1 ? "" : "s"} from seq ${firstSeq}`;
        throw Object.assign(new Error(`${(err as Error).message} (the fsync of ${what} failed after they were written: they stay in the log and subscribers may have received them, but they are not known to be on disk)`, { cause: err }), { code: (err as NodeJS.ErrnoException).code });
      }
      // Nothing of this batch is acknowledged: undo it exactly, so the next append starts clean.
      this.assigned = firstSeq;
      this.rollBack(saved);
      throw err;
    }
    if (!readable) this.makeReadable(count, written);
    if (!this.reserving && this.durableReserved - this.assigned < RESERVE_BLOCK / 2) this.startReservation(this.assigned);
    const firsts = new Array<number>(entries.length);
    let seq = firstSeq;
    for (let e = 0; e < entries.length; e++) {
      firsts[e] = seq;
      seq += entries[e]!.data.length;
    }
    return firsts;
  }

  /** The `count` messages just written (`written`) become the newest committed ones: reads and `lastSeq` include them. */
  private makeReadable(count: number, written: StoredMessage[]): void {
    this.committed = this.assigned;
    this.lastStored = this.committed - 1;
    this.stored += count;
    this.writeHead();
    this.cacheTail(written);
  }

  /** Tells the server (`onWritten`) that messages became readable before their sync; whether anyone reads them. */
  private tellWritten(): boolean {
    if (!this.onWritten) return false;
    try {
      return this.onWritten();
    } catch (err) {
      // The server's push failing must not fail a commit: its publishers are answered after the sync.
      log.error(`topic "${this.topic}": pushing the messages just written failed: ${(err as Error).message}`);
      return false;
    }
  }

  /** Records the exact next seq in `head` (no fsync: it is there for a restart after the process died). */
  private writeHead(): void {
    try {
      this.head ??= new HeadFile(path.join(this.dir, "head"), this.options.fsync, this.files, this.readableBeforeSync);
    } catch (err) {
      log.error(`topic "${this.topic}": cannot open its head file: ${(err as Error).message}`);
      return;
    }
    const failed = this.head.write(this.committed, this.segments[this.segments.length - 1]!.base);
    if (failed) log.error(`topic "${this.topic}": cannot write its head file: ${failed}`);
  }

  private saveTail(): SavedTail {
    const s = this.segments[this.segments.length - 1]!;
    return { last: s, size: s.size, count: s.count, firstSeq: s.firstSeq, lastSeq: s.lastSeq, lastPos: s.lastPos, index: s.indexSeq.length, sealed: s.sealed };
  }

  /** Undoes what was written after `saved` was taken (`assigned` is back at the batch's first seq already). */
  private rollBack(saved: SavedTail): void {
    // What reads kept of the cut bytes is not what the seqs will hold once written again.
    for (const seg of this.segments) readAhead.forget(seg);
    this.readHints.forget();
    // By identity, not by count: retention may have deleted older segments while the batch synced.
    while (this.segments.length > 0 && this.segments[this.segments.length - 1]!.base > saved.last.base) {
      const seg = this.segments.pop()!;
      this.dirty.delete(seg);
      seg.handle.close(false);
      // With its checkpoint: the batch may have sealed it, and a later segment may get its name.
      this.removeSegmentFiles(seg);
    }
    if (this.segments[this.segments.length - 1] !== saved.last) {
      // Retention deleted it too (all its messages were acknowledged): appends go on in a new one,
      // made by the next commit if the disk refuses it now (the failed sync may say it will).
      try {
        this.segments.push(this.createSegment(this.assigned));
      } catch (err) {
        log.error(`topic "${this.topic}": cannot start a segment after a failed write: ${(err as Error).message}; the next append tries again`);
      }
      return;
    }
    const seg = saved.last;
    if (seg.sealed && !saved.sealed) {
      seg.sealed = false;
      fs.rmSync(checkpointFile(seg.file), { force: true });
    }
    // Cut even when no record was counted: a failed write may have left part of one.
    try {
      fs.ftruncateSync(seg.handle.fd(), saved.size);
      seg.handle.wrote();
    } catch (err) {
      log.error(`${seg.file}: cannot cut a failed write at ${saved.size}`, err);
    }
    // The zeros ahead went with the cut (the next commit writes new ones); if the cut failed, they are zeros or the failed write's part, both past the log's end.
    Object.assign(seg, { size: saved.size, allocated: saved.size, count: saved.count, firstSeq: saved.firstSeq, lastSeq: saved.lastSeq, lastPos: saved.lastPos });
    seg.indexSeq.length = saved.index;
    seg.indexPos.length = saved.index;
  }

  /** Writes the messages of `entries`, in order, from `this.assigned` on: one write per segment they go to. */
  private writeBatch(entries: PendingAppends[], touched: Set<Segment>, written: StoredMessage[]): void {
    let seq = this.assigned;
    // The next message to write: message k of entries[e].
    let e = 0;
    let k = 0;
    while (e < entries.length) {
      let seg = this.segments[this.segments.length - 1]!;
      if (seg.sealed || (seg.size >= this.options.maxSegmentBytes && seg.count > 0)) {
        if (!seg.sealed) this.seal(seg);
        seg = this.createSegment(seq);
        this.segments.push(seg);
      }
      // Fill the current segment up to its size limit with one write (a new file gets its header in it):
      // the messages up to message endK of entries[endE] (exclusive) go in.
      const header = seg.size === 0 ? FILE_HEADER : 0;
      let bytes = header;
      let endE = e;
      let endK = k;
      let n = 0;
      while (endE < entries.length) {
        const size = recordSizeOf(entries[endE]!, endK);
        if (n > 0 && seg.size + bytes + size > this.options.maxSegmentBytes) break;
        bytes += size;
        n++;
        if (++endK === entries[endE]!.data.length) {
          endE++;
          endK = 0;
        }
      }
      const buf = new Uint8Array(bytes);
      const view = new DataView(buf.buffer);
      if (header > 0) buf.set(fileHeader(seg.base, Date.now()), 0);
      const indexFrom = seg.indexSeq.length;
      let pos = header;
      let lastPos = 0;
      // The buffer position at which the next sparse-index entry is due.
      let indexAt = seg.indexSeq.length === 0 ? -Infinity : lastIndexPos(seg) + INDEX_EVERY_BYTES - seg.size;
      for (let i = 0; i < n; i++, seq++) {
        const entry = entries[e]!;
        const { time, idPrefix } = entry;
        const data = entry.data[k]!;
        const f = entry.fields === undefined ? undefined : entry.fields[k];
        if (pos >= indexAt) {
          seg.indexSeq.push(seq);
          seg.indexPos.push(seg.size + pos);
          indexAt = pos + INDEX_EVERY_BYTES;
        }
        const size = idPrefix ? writeRecordOfRun(buf, view, pos, seq, time, data, idPrefix, entry.idFrom + k, f?.extra) : writeRecord(buf, view, pos, seq, time, data, f?.msgId, f?.extra);
        const stored: StoredMessage = { seq, time, data: buf.subarray(pos + size - data.length, pos + size) };
        if (f !== undefined && f.fields) withExtra(stored, f.fields);
        written.push(stored);
        lastPos = seg.size + pos;
        pos += size;
        if (++k === entry.data.length) {
          e++;
          k = 0;
        }
      }
      let zeros = this.zerosAhead(seg, bytes);
      try {
        seg.handle.wrote(); // before the write: a part of it may be on disk even if it fails
        zeros = writeWithZerosIfRoom(seg.handle.fd(), buf, seg.size, zeros, seg.allocated);
      } catch (err) {
        seg.indexSeq.length = indexFrom;
        seg.indexPos.length = indexFrom;
        throw err;
      }
      if (seg.count === 0) seg.firstSeq = seq - n;
      seg.size += bytes;
      seg.allocated = Math.max(seg.allocated, seg.size + zeros);
      seg.count += n;
      seg.lastSeq = seq - 1;
      seg.lastPos = lastPos;
      touched.add(seg);
    }
  }

  /** Marks a segment as never appended to again and writes its checkpoint. */
  private seal(seg: Segment): void {
    seg.sealed = true;
    this.cutZeros(seg);
    this.writeSegmentCheckpoint(seg);
  }

  /**
   * Zero bytes to write after a write of `bytes` at the log's end in `seg` (zero-tail.ts): under
   * --fsync always, when a small write passes the end of the file, so that the next commits'
   * fdatasyncs change no size. Other policies have no fdatasync per commit to spare.
   */
  private zerosAhead(seg: Segment, bytes: number): number {
    const writeEnd = seg.size + bytes;
    if (this.options.fsync !== "always" || writeEnd <= seg.allocated || bytes > MAX_WRITE_FOR_ZEROS) return 0;
    const end = zeroRegionEnd(writeEnd, this.zeroGrowth, this.options.maxSegmentBytes);
    this.zeroGrowth = nextZeroGrowth(this.zeroGrowth);
    return end - writeEnd;
  }

  /**
   * Cuts the zeros after the log's end in `seg` (a sealed segment has no use for them, and its
   * checkpoint gives the file's size; a cleanly closed log leaves files an older build reads
   * without a warning). Not fsynced here: zeros that come back after a crash are free space.
   */
  private cutZeros(seg: Segment): void {
    if (seg.allocated <= seg.size) return;
    try {
      fs.ftruncateSync(seg.handle.fd(), seg.size);
      seg.allocated = seg.size;
    } catch (err) {
      log.warn(`topic "${this.topic}": cannot cut the zeros after the last record of ${path.basename(seg.file)}: ${(err as Error).message}`);
    }
  }

  private writeSegmentCheckpoint(seg: Segment): void {
    try {
      writeCheckpoint(seg.file, { size: seg.size, base: seg.base, count: seg.count, firstSeq: seg.firstSeq, lastSeq: seg.lastSeq, lastPos: seg.lastPos, indexSeq: seg.indexSeq, indexPos: seg.indexPos, skips: seg.skips });
    } catch (err) {
      // Only the next start pays for it: without a checkpoint the segment is scanned.
      log.warn(`topic "${this.topic}": cannot write the checkpoint of ${path.basename(seg.file)}: ${(err as Error).message}`);
    }
  }

  /** A new, empty segment file: its header is written with its first records. */
  private createSegment(base: number): Segment {
    const file = path.join(this.dir, segmentFileName(base));
    const handle = this.files.openNow(file, { flags: "w+", mode: 0o600, durable: this.options.fsync !== "never" });
    try {
      fsyncDir(this.dir);
    } catch (err) {
      handle.close(false);
      fs.rmSync(file, { force: true });
      throw err;
    }
    return { base, file, handle, size: 0, allocated: 0, count: 0, firstSeq: 0, lastSeq: 0, lastPos: 0, indexSeq: [], indexPos: [], skips: [], sealed: false };
  }

  /** Interval policy: `touched` is fsynced within the interval. */
  private markDirty(touched: Set<Segment>): void {
    for (const s of touched) this.dirty.add(s);
    if (this.intervalTimer || this.closed) return;
    this.intervalTimer = setTimeout(() => {
      this.intervalTimer = null;
      void this.syncIfDirty();
    }, this.options.fsyncIntervalMs);
    this.intervalTimer.unref?.();
  }

  private async syncIfDirty(): Promise<void> {
    const segments = [...this.dirty];
    this.dirty.clear();
    for (const seg of segments) {
      if (!this.segments.includes(seg)) continue; // deleted by retention meanwhile
      try {
        await seg.handle.sync(); // a segment closed since was fsynced when it was closed
      } catch (err) {
        log.error(`${seg.file}: fsync failed: ${(err as Error).message}`);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Tail cache

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
      this.tail.push(copy ? withExtra({ seq: m.seq, time: m.time, data: m.data.slice() }, m) : m);
      this.tailBytes += m.data.length + TAIL_ENTRY_OVERHEAD;
      tailCacheTotal += m.data.length + TAIL_ENTRY_OVERHEAD;
    }
    this.cachedSinceFloor += bytes;
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
    // What every reader has read already goes: held, it is old objects for the garbage
    // collector to walk and pages to grow into (docs/benchmarks.md, "what a fresh `mq up`
    // held on to").
    if (this.readFloor && this.cachedSinceFloor >= FLOOR_STEP_BYTES && upTo < this.tail.length) {
      this.cachedSinceFloor = 0;
      const below = this.readFloor() - this.tail[upTo]!.seq;
      if (below > 0) upTo = Math.min(this.tail.length, upTo + below);
    }
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

  // ---------------------------------------------------------------------------------------
  // Retention

  async trim(before: number, policy: RetentionPolicy, now: number): Promise<number> {
    // The retention point goes to `meta` before the files go; a meta write in flight would
    // race with it, and the next tick comes soon enough.
    if (this.metaBusy > 0) return 0;
    let total = 0;
    for (const seg of this.segments) total += seg.size;
    let victims = 0;
    // Oldest first, never the segment being written, and never one a subscriber still needs.
    while (victims < this.segments.length - 1) {
      const seg = this.segments[victims]!;
      if (seg.count > 0 && seg.lastSeq >= before) break;
      // Its sync has not returned (`--deliver-after write` lets subscribers acknowledge before it): it stays until it has.
      if (seg.handle.pinned) break;
      // One that owes a sync (a failed one, an interval not yet due) gets it now, or stays.
      if (seg.handle.owesSync) {
        try {
          await seg.handle.sync();
        } catch {
          break;
        }
        if (seg.handle.pinned || seg.handle.owesSync) break;
      }
      // By name, not by fd: a cold segment is not opened only to look at its age.
      const old = fs.statSync(seg.file).mtimeMs < now - policy.maxAgeMs;
      if (!old && total <= policy.maxBytes) break;
      total -= seg.size;
      victims++;
    }
    if (victims === 0) return 0;
    const keep = this.segments[victims]!;
    const first = keep.count > 0 ? keep.firstSeq : this.committed;
    // Seqs below `first` are gone on purpose: a start does not take them for lost.
    this.writeMetaNow({ ...this.meta, first, holes: this.meta.holes.filter((h) => h[1] >= first), reserved: Math.max(this.meta.reserved, this.durableReserved) });
    this.meta.first = first;
    this.meta.holes = this.meta.holes.filter((h) => h[1] >= first);
    let removed = 0;
    for (const seg of this.segments.splice(0, victims)) {
      readAhead.forget(seg);
      this.readHints.forget(seg);
      this.dirty.delete(seg);
      seg.handle.close(false);
      this.removeSegmentFiles(seg);
      removed += seg.count;
      log.info(`${seg.file}: deleted by retention (${seg.count} messages, ${seg.size} bytes)`);
    }
    this.stored -= removed;
    fsyncDir(this.dir);
    return removed;
  }

  private removeSegmentFiles(seg: Segment): void {
    fs.rmSync(seg.file, { force: true });
    fs.rmSync(checkpointFile(seg.file), { force: true });
  }

  // ---------------------------------------------------------------------------------------
  // Reading

  async read(from: number, maxCount: number, maxBytes: number): Promise<StoredMessage[]> {
    const start = Math.max(from, this.firstSeq);
    const cached = this.readTail(start, maxCount, maxBytes);
    if (cached) return cached;
    const out: StoredMessage[] = [];
    let seq = start;
    let bytes = 0;
    while (seq < this.committed && out.length < maxCount && (out.length === 0 || bytes < maxBytes)) {
      const seg = this.segmentFor(seq);
      if (!seg) break;
      const got = this.readSegment(seg, seq, maxCount - out.length, maxBytes - bytes, out);
      if (got === 0) {
        // Nothing (more) readable here (damage, or only records not yet committed): go on after it.
        seq = Math.max(seq, seg.lastSeq) + 1;
        continue;
      }
      for (let k = out.length - got; k < out.length; k++) bytes += out[k]!.data.length;
      seq = out[out.length - 1]!.seq + 1;
    }
    return out;
  }

  async seqAtTime(time: number): Promise<number> {
    // The last segment whose first record is older than `time` (binary search over the
    // segments, one record read each); the answer lies in it or at the start of the next.
    const stored = this.segments.filter((s) => s.count > 0);
    let lo = 0;
    let hi = stored.length - 1;
    let from = this.firstSeq;
    let last = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const first = (await this.read(stored[mid]!.firstSeq, 1, 1))[0];
      if (first && first.time < time) {
        from = first.seq;
        last = stored[mid]!.lastSeq;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (last >= 0) {
      // Inside that segment, binary search too (a read of any seq gives the first record at or
      // after it): a scan of a large segment would hold the event loop.
      let low = from + 1;
      let high = Math.min(last, this.committed - 1);
      let found = -1;
      while (low <= high) {
        const mid = Math.floor((low + high) / 2);
        const record = (await this.read(mid, 1, 1))[0];
        if (record && record.seq <= high && record.time >= time) {
          found = record.seq;
          high = mid - 1;
        } else if (record && record.seq <= high) low = record.seq + 1;
        else high = mid - 1;
      }
      if (found >= 0) return found;
      from = last + 1;
    }
    // At most into the first record of the next segment.
    for (let seq = from; seq < this.committed; ) {
      const batch = await this.read(seq, SCAN_BATCH, 1024 * 1024);
      if (batch.length === 0) break;
      for (const m of batch) if (m.time >= time) return m.seq;
      seq = batch[batch.length - 1]!.seq + 1;
    }
    return this.nextSeq;
  }

  /** The first segment holding a record at or after `seq`. */
  private segmentFor(seq: number): Segment | undefined {
    // Records of a segment lie between its base and the next segment's base.
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.base <= seq) lo = mid;
      else hi = mid - 1;
    }
    for (let k = lo; k < this.segments.length; k++) {
      const seg = this.segments[k]!;
      if (seg.count > 0 && seg.lastSeq >= seq) return seg;
    }
    return undefined;
  }

  /** Reads committed records of `seg` from `from` on into `out`; returns how many it added. */
  private readSegment(seg: Segment, from: number, maxCount: number, maxBytes: number, out: StoredMessage[]): number {
    // Where the reader's last read stopped, else the sparse index entry before `from` (read-ahead.ts).
    const hint = this.readHints.at(seg, from);
    const i = hint ? -1 : upperBound(seg.indexSeq, from) - 1;
    let pos = hint ? hint.nextPos : i >= 0 ? seg.indexPos[i]! : FILE_HEADER;
    let prev = hint ? hint.prevSeq : i >= 0 ? seg.indexSeq[i]! - 1 : seg.firstSeq - 1;
    let prevPos = hint ? hint.prevPos : -1;
    /** Just after the record `prev` (0: none read). */
    let nextPos = 0;
    let added = 0;
    let bytes = 0;
    let skip = 0;
    while (skip < seg.skips.length && seg.skips[skip]!.end <= pos) skip++;
    let want = (hint ? 0 : INDEX_EVERY_BYTES) + Math.min(maxBytes, maxCount * 1024) + RECORD_HEADER;
    scan: while (pos < seg.size && added < maxCount && (added === 0 || bytes < maxBytes)) {
      if (skip < seg.skips.length && pos >= seg.skips[skip]!.start) {
        pos = Math.max(pos, seg.skips[skip]!.end); // known damage: jump over it
        skip++;
        continue;
      }
      const limit = skip < seg.skips.length ? seg.skips[skip]!.start : seg.size;
      const chunk = this.bytesAt(seg, pos, limit, want);
      want = Math.min(maxBytes - bytes, (maxCount - added) * 1024) + RECORD_HEADER;
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      let p = 0;
      let damagedAt = -1;
      while (p < chunk.length && added < maxCount && (added === 0 || bytes < maxBytes)) {
        if (p + RECORD_HEADER > chunk.length) {
          if (pos + p + RECORD_HEADER > limit) damagedAt = pos + p;
          break;
        }
        const total = recordTotal(view, p);
        if (total < 0 || pos + p + total > limit) {
          damagedAt = pos + p;
          break;
        }
        let rec: Uint8Array = chunk;
        let rv = view;
        let rp = p;
        if (p + total > chunk.length) {
          if (p > 0) break; // read on from this record
          rec = readAtSync(seg.handle.fd(), total, pos); // one record bigger than the chunk
          rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
          rp = 0;
        }
        const seq = recordSeq(rv, rp);
        if (!recordIntact(rec, rv, rp, total) || seq <= prev) {
          damagedAt = pos + p;
          break;
        }
        if (seq >= this.committed) break scan; // written, not yet acknowledged
        if (seq >= from) {
          const data = recordData(rec, rv, rp, total);
          const m: StoredMessage = { seq, time: recordTime(rv, rp), data };
          // Only records with optional fields (a msgId, headers, an expiry) are looked into.
          if (rv.getUint16(rp + 14) > 0) {
            const extra = readExtraFields(rec, rv, rp);
            if (extra) withExtra(m, extra);
          }
          out.push(m);
          added++;
          bytes += data.length;
        }
        prev = seq;
        prevPos = pos + p;
        p += total;
        nextPos = pos + p;
        if (rec !== chunk) break;
      }
      if (damagedAt >= 0) {
        pos = this.onReadDamage(seg, damagedAt, prev, prevPos);
        skip = 0;
        while (skip < seg.skips.length && seg.skips[skip]!.end <= pos) skip++;
        continue;
      }
      if (p === 0) break;
      pos += p;
    }
    if (nextPos > 0) this.readHints.set(hint, { owner: seg, prevSeq: prev, prevPos, nextPos });
    return added;
  }

  /**
   * Bytes of `seg` from `pos` (below `limit`) holding at least the record there: out of what an
   * earlier read took ahead when that holds it whole, else read now — `want` bytes or
   * READ_AHEAD_BYTES, whichever is more — and kept for the next reads.
   */
  private bytesAt(seg: Segment, pos: number, limit: number, want: number): Uint8Array {
    const kept = readAhead.from(seg, pos);
    if (kept !== undefined && kept.length >= RECORD_HEADER) {
      const total = recordTotal(new DataView(kept.buffer, kept.byteOffset, RECORD_HEADER), 0);
      if (total > 0 && total <= kept.length) return kept.length <= limit - pos ? kept : kept.subarray(0, limit - pos);
    }
    const bytes = readAtSync(seg.handle.fd(), Math.min(READ_CHUNK, limit - pos, Math.max(want, READ_AHEAD_BYTES)), pos);
    readAhead.keep(seg, pos, bytes);
    return bytes;
  }

  /**
   * Damage found while reading (a checkpointed segment is not scanned at start, and a disk
   * can go bad later): resync at the next intact record, copy the damaged bytes aside,
   * report and count the loss once, and make later reads jump over it. Returns the offset
   * to read on from.
   */
  private onReadDamage(seg: Segment, at: number, prev: number, prevPos: number): number {
    const name = path.basename(seg.file);
    const k = this.segments.indexOf(seg);
    const below = k + 1 < this.segments.length ? this.segments[k + 1]!.base : this.assigned;
    const next = findRecord(seg.handle.fd(), seg.size, at + 1, prev, below);
    const end = next ? next.pos : seg.size;
    const aside = this.asidePath(`${name}.${at}-${end}`);
    readAhead.forget(seg);
    this.readHints.forget(seg);
    try {
      copyAside(seg.handle.fd(), at, end, aside);
    } catch (err) {
      log.error(`topic "${this.topic}": cannot copy damaged bytes of ${name} aside: ${(err as Error).message}`);
    }
    seg.skips.push({ start: at, end });
    seg.skips.sort((a, b) => a.start - b.start);
    for (let i = seg.indexPos.length - 1; i >= 0; i--) {
      if (seg.indexPos[i]! >= at && seg.indexPos[i]! < end) {
        seg.indexPos.splice(i, 1);
        seg.indexSeq.splice(i, 1);
      }
    }
    const to = next ? next.seq - 1 : seg.lastSeq;
    let lost = 0;
    if (to > prev) lost = this.reconcile([{ from: prev + 1, to, exact: true, cause: `damaged bytes ${at}..${end} of segment ${name}, found while reading (copied to ${aside})` }]);
    else log.warn(`topic "${this.topic}": damaged bytes ${at}..${end} of segment ${name} hold no message (copied to ${aside})`);
    if (next) {
      // An index entry right after the damage, so reads from there need not walk through it.
      const j = upperBound(seg.indexSeq, next.seq);
      seg.indexSeq.splice(j, 0, next.seq);
      seg.indexPos.splice(j, 0, next.pos);
    }
    seg.count = Math.max(0, seg.count - lost);
    this.stored = Math.max(0, this.stored - lost);
    if (prev < seg.firstSeq) seg.firstSeq = next ? next.seq : 0;
    if (!next) {
      if (prevPos >= 0) {
        seg.lastSeq = prev;
        seg.lastPos = prevPos;
      } else seg.count = 0;
      if (this.lastStored > prev && this.segments.slice(k + 1).every((s) => s.count === 0)) this.lastStored = seg.count > 0 ? seg.lastSeq : prev;
    }
    if (seg.count === 0) Object.assign(seg, { firstSeq: 0, lastSeq: 0, lastPos: 0 });
    if (seg.sealed) this.writeSegmentCheckpoint(seg);
    if (lost > 0) void this.saveMeta().catch((err) => log.error(`topic "${this.topic}": cannot record the loss in its meta file: ${(err as Error).message}`));
    return end;
  }

  /**
   * Waits for appends in flight, fsyncs what is owed and closes the files. A clean close
   * writes `meta` (the exact next seq) when it changed; with `batch`, the caller writes it,
   * together with other topics' (a store closing many topics at once).
   */
  async close(batch?: MetaBatch): Promise<void> {
    if (this.closed) return;
    await this.commits.idle();
    this.closed = true;
    await this.metaWrites;
    this.evictTail(this.tail.length);
    if (this.intervalTimer) clearTimeout(this.intervalTimer);
    this.dirty.clear();
    // What each segment owes (nothing under --fsync never) is fsynced before it is closed,
    // on the thread pool: a store closes many topics at once.
    this.readHints.forget();
    for (const seg of this.segments) {
      readAhead.forget(seg);
      // Not fsynced: a store closing 100,000 topics would pay one fdatasync each for it.
      this.cutZeros(seg);
      try {
        await seg.handle.sync();
      } catch (err) {
        log.error(`${seg.file}: fsync at close failed: ${(err as Error).message}`);
      }
      seg.handle.close(false);
    }
    this.head?.close();
    // A clean close: the next start knows the next seq exactly.
    const disk = this.metaOnDisk;
    if (!(disk?.clean && disk.reserved === this.committed) && (disk !== null || this.committed > 1)) {
      const meta = { ...this.meta, reserved: this.committed, clean: true };
      const written = () => void (this.metaOnDisk = { reserved: meta.reserved, clean: true });
      if (batch) return batch.add(path.join(this.dir, "meta"), meta, written);
      try {
        await writeMetaAsync(path.join(this.dir, "meta"), meta);
        written();
      } catch (err) {
        log.error(`topic "${this.topic}": cannot write its meta file at close: ${(err as Error).message}`);
      }
    }
  }
}

/** Copies the headers and expiry of `from`, those it has, onto `m`. */
function withExtra(m: StoredMessage, from: { headers?: Record<string, string>; expiresAt?: number }): StoredMessage {
  if (from.headers !== undefined) m.headers = from.headers;
  if (from.expiresAt !== undefined) m.expiresAt = from.expiresAt;
  return m;
}

/** One fdatasync, due after the running one, for the commits that joined it before it started: their files, and their shape as one commit's. */
class SharedSync {
  readonly files: Set<PooledFile>;
  done: Promise<unknown> = Promise.resolve();
  constructor(
    readonly shape: CommitShape,
    files: PooledFile[],
    /** The sync it starts after (never rejects; see syncBehind). */
    readonly after: Promise<unknown>,
  ) {
    this.files = new Set(files);
  }

  join(shape: CommitShape, files: PooledFile[]): void {
    this.shape.requests += shape.requests;
    this.shape.messages += shape.messages;
    for (const f of files) this.files.add(f);
    this.shape.files = this.files.size;
  }
}

/** Thrown to the commits written while an earlier sync of theirs failed: the sync after it may be answered 0 by the kernel. */
class FailedWhileWritten extends Error {}

function failedWhileWritten(cause: unknown): Error {
  const message = `an fsync of this topic's log failed while these messages were being written (${(cause as Error).message}): they are not known to be on disk`;
  return Object.assign(new FailedWhileWritten(message, { cause }), { code: (cause as NodeJS.ErrnoException).code });
}

/** What the sync after `sync` is told: its own failure (null when it succeeded, or only passed on an earlier one). */
function syncFailure(sync: Promise<unknown>): Promise<unknown> {
  return sync.then(
    () => null,
    (err: unknown) => (err instanceof FailedWhileWritten ? null : err),
  );
}

/** Resolves once `p` settled, or after `ms`, whichever comes first. */
function settledOrAfter(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    p.then(done, done);
  });
}

/** Resolves at the next turn of the event loop, after the immediates already due (and their microtasks). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A segment's file name: the seq it was created for, 20 digits. */
function segmentFileName(base: number): string {
  return `${String(base).padStart(20, "0")}.log`;
}

/** The seq of an intact record right after the file header, or null. */
function firstRecordSeq(fd: number, size: number): number | null {
  if (size < FILE_HEADER + RECORD_HEADER) return null;
  const head = readAtSync(fd, RECORD_HEADER, FILE_HEADER);
  const total = recordTotal(new DataView(head.buffer, head.byteOffset, head.byteLength), 0);
  if (total < 0 || FILE_HEADER + total > size) return null;
  const rec = readAtSync(fd, total, FILE_HEADER);
  const view = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  return recordIntact(rec, view, 0, total) ? recordSeq(view, 0) : null;
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
