/**
 * The durable state of a topic log beside its segments, so that seqs are never handed out
 * twice and losses are reported once:
 *
 * - `meta` (JSON line + CRC line, replaced by temp + fsync + rename): the seq reservation
 *   (every seq ever handed out is below `reserved`; the log persists a block of seqs ahead,
 *   so this costs one write per block, not one per publish), whether the log was closed
 *   cleanly (then `reserved` is exactly the next seq), the retention point, and the losses
 *   already reported.
 * - `head` (32 bytes rewritten in place after every commit, never fsynced): the exact next
 *   seq. It survives the death of the process (the page cache keeps it), not a power cut,
 *   hence the boot id beside it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { canSyncFileSystem, fsyncDir, syncFileSystem, writeFileAtomic, writeFileAtomicAsync } from "./fsutil.ts";
import { UNBOUNDED, type OpenFiles, type PooledFile } from "./open-files.ts";
import { getU64, setU64 } from "./segment.ts";
import { Slots } from "./slots.ts";
import type { FsyncPolicy } from "./types.ts";

export interface TopicMeta {
  /** Every seq ever handed out is below this; exactly the next seq when `clean`. */
  reserved: number;
  /** Written by a clean close (or at open): `reserved` is exact. */
  clean: boolean;
  /** Seqs below this were deleted by retention, on purpose. */
  first: number;
  /** Messages lost to damage since the topic was created (each counted once). */
  lost: number;
  /** Seq ranges (inclusive) already reported lost, above `first`, ascending. */
  holes: Array<[number, number]>;
  /**
   * Boot id of the machine when this was written (bootId(); absent in files of older
   * versions): the same at a start means no reboot since, so the page cache kept every write.
   */
  boot?: number;
}

const META_VERSION = 1;

/** `boot`: this boot's id, whatever `meta` says (as read, it names the boot that wrote it). */
export function encodeMeta(meta: TopicMeta, boot = bootId()): string {
  // Older readers ignore the extra key.
  const body = JSON.stringify({ version: META_VERSION, ...meta, boot });
  return `${body}\n${Bun.hash.crc32(body).toString(16).padStart(8, "0")}\n`;
}

/** The meta in `text`, or null when it is not an intact one of this version. */
export function decodeMeta(text: string): TopicMeta | null {
  const m = /^(\{.*\})\n([0-9a-f]{8})\n$/.exec(text);
  if (!m || Bun.hash.crc32(m[1]!) !== Number.parseInt(m[2]!, 16)) return null;
  try {
    const v = JSON.parse(m[1]!);
    const safe = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    if (v.version !== META_VERSION || !safe(v.reserved) || typeof v.clean !== "boolean" || !safe(v.first) || !safe(v.lost) || !Array.isArray(v.holes)) return null;
    const holes: Array<[number, number]> = [];
    for (const h of v.holes) {
      if (!Array.isArray(h) || h.length !== 2 || !safe(h[0]) || !safe(h[1]) || h[0] > h[1]) return null;
      holes.push([h[0], h[1]]);
    }
    const meta: TopicMeta = { reserved: v.reserved, clean: v.clean, first: v.first, lost: v.lost, holes };
    if (safe(v.boot) && v.boot !== 0) meta.boot = v.boot;
    return meta;
  } catch {
    return null;
  }
}

/** Reads `file`: the meta, null when there is none, "damaged" when it is unreadable. */
export function readMeta(file: string): TopicMeta | null | "damaged" {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    return "damaged";
  }
  return decodeMeta(text) ?? "damaged";
}

export function writeMetaSync(file: string, meta: TopicMeta): void {
  writeFileAtomic(file, encodeMeta(meta));
}

/**
 * Meta files written at once by writeMetaAsync, all topics together: each write holds two
 * fds of its own (outside the pool of open files) while it waits for the disk, so a burst
 * of first publishes to thousands of topics must not take thousands of fds.
 */
const metaWrites = new Slots(16);

/** writeMetaSync without blocking the event loop on the fsyncs. */
export function writeMetaAsync(file: string, meta: TopicMeta): Promise<void> {
  return metaWrites.run(() => writeFileAtomicAsync(file, encodeMeta(meta)));
}

/**
 * The meta files of a clean stop, written together: every temp file, one sync of the file
 * system, every rename, one more sync. Two waits for the disk in all, where writeMetaAsync
 * costs two fsyncs per topic (a stop with 100 000 written topics took ~50 s that way). A
 * crash at any point leaves each meta whole, old or new: the temp files are on disk before
 * any is renamed. Without syncfs (not Linux) each file is written as writeMetaAsync does.
 */
export class MetaBatch {
  private readonly entries: Array<{ file: string; meta: TopicMeta; written: () => void }> = [];

  /** `root`: a directory on the file system that holds every file added. */
  constructor(private readonly root: string) {}

  /** `written` is called once `meta` is durable in `file`. */
  add(file: string, meta: TopicMeta, written: () => void): void {
    this.entries.push({ file, meta, written });
  }

  /** Writes them all; returns the files that could not be written, each with its error. */
  async commit(): Promise<Array<{ file: string; error: Error }>> {
    const failed: Array<{ file: string; error: Error }> = [];
    const entries = this.entries.splice(0);
    if (entries.length === 0) return failed;
    if (!canSyncFileSystem()) {
      for (const e of entries) {
        try {
          await writeMetaAsync(e.file, e.meta);
          e.written();
        } catch (err) {
          failed.push({ file: e.file, error: err as Error });
        }
      }
      return failed;
    }
    const staged = entries.filter((e) => {
      try {
        fs.writeFileSync(`${e.file}.tmp`, encodeMeta(e.meta), { mode: 0o600 });
        return true;
      } catch (err) {
        failed.push({ file: e.file, error: err as Error });
        return false;
      }
    });
    syncFileSystem(this.root);
    for (const e of staged) {
      try {
        fs.renameSync(`${e.file}.tmp`, e.file);
      } catch (err) {
        failed.push({ file: e.file, error: err as Error });
      }
    }
    syncFileSystem(this.root);
    for (const e of staged) if (!failed.some((f) => f.file === e.file)) e.written();
    return failed;
  }
}

/** Adds the inclusive range [from, to] to sorted, disjoint `holes` (merging neighbours). */
export function addHole(holes: Array<[number, number]>, from: number, to: number): void {
  holes.push([from, to]);
  holes.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const h of holes) {
    const last = merged[merged.length - 1];
    if (last && h[0] <= last[1] + 1) last[1] = Math.max(last[1], h[1]);
    else merged.push([h[0], h[1]]);
  }
  holes.splice(0, holes.length, ...merged);
}

/** The parts of [from, to] that no range of `holes` covers. */
export function uncovered(holes: Array<[number, number]>, from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = from;
  for (const [a, b] of holes) {
    if (b < at) continue;
    if (a > to) break;
    if (a > at) out.push([at, a - 1]);
    at = Math.max(at, b + 1);
    if (at > to) break;
  }
  if (at <= to) out.push([at, to]);
  return out;
}

// ---------------------------------------------------------------------------------------
// head: 0 u32 magic "MQHD" · 4 u8 version (1; 2 when flag bit 0 is set, so that a binary
// that does not know the flag ignores the file rather than trust it) · 5 u8 fsync policy of
// the writer (0 never, 1 interval, 2 always) · 6 u8 flags (bit 0: messages were readable
// before their fsync, `--deliver-after write`) · 7 u8 reserved · 8 u64 next seq · 16 u64 base of the
// segment being written · 24 u32 boot id (CRC-32 of the kernel's boot_id, 0 unknown) ·
// 28 u32 CRC-32 of bytes 0..27

const HEAD_MAGIC = 0x4d514844; // "MQHD"
const HEAD_SIZE = 32;
const POLICY_CODE: Record<FsyncPolicy, number> = { never: 0, interval: 1, always: 2 };

export interface Head {
  next: number;
  segment: number;
  policy: FsyncPolicy;
  /** The writer made messages readable before their fsync (`--deliver-after write`). */
  early: boolean;
  boot: number;
}

let bootIdCache: number | undefined;

/** A number that changes at every boot of the machine (0 when unknown): the page cache survived when it is unchanged. */
export function bootId(): number {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = Bun.hash.crc32(fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()) || 1;
    } catch {
      bootIdCache = 0;
    }
  }
  return bootIdCache;
}

export function readHead(file: string): Head | null {
  let buf: Uint8Array;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length !== HEAD_SIZE) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = view.getUint8(4);
  if (view.getUint32(0) !== HEAD_MAGIC || (version !== 1 && version !== 2) || Bun.hash.crc32(buf.subarray(0, 28)) !== view.getUint32(28)) return null;
  const policy = (Object.keys(POLICY_CODE) as FsyncPolicy[]).find((k) => POLICY_CODE[k] === view.getUint8(5));
  if (!policy) return null;
  return { next: getU64(view, 8), segment: getU64(view, 16), policy, early: (view.getUint8(6) & 1) === 1, boot: view.getUint32(24) };
}

/** The `head` file, overwritten in place (kept open while its topic is written: see open-files.ts). */
export class HeadFile {
  private readonly buf = new Uint8Array(HEAD_SIZE);
  private readonly view = new DataView(this.buf.buffer);
  private readonly handle: PooledFile;
  private failed = false;

  constructor(
    readonly file: string,
    private readonly policy: FsyncPolicy,
    files: OpenFiles = UNBOUNDED,
    /** Messages become readable before their fsync (`--deliver-after write`). */
    private readonly early = false,
  ) {
    const existed = fs.existsSync(file);
    // Never fsynced, so closing it to make room owes nothing.
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT;
    this.handle = files.openNow(file, { flags, reopenFlags: flags, mode: 0o600, durable: false });
    try {
      if (!existed) fsyncDir(path.dirname(file));
    } catch (err) {
      this.handle.close(false);
      throw err;
    }
  }

  /** Records the exact next seq; returns an error message the first time writing fails. */
  write(next: number, segment: number): string | null {
    const view = this.view;
    view.setUint32(0, HEAD_MAGIC);
    view.setUint8(4, this.early ? 2 : 1);
    view.setUint8(5, POLICY_CODE[this.policy]);
    view.setUint8(6, this.early ? 1 : 0);
    setU64(view, 8, next);
    setU64(view, 16, segment);
    view.setUint32(24, bootId());
    view.setUint32(28, Bun.hash.crc32(this.buf.subarray(0, 28)));
    try {
      fs.writeSync(this.handle.fd(), this.buf, 0, HEAD_SIZE, 0);
      this.failed = false;
      return null;
    } catch (err) {
      if (this.failed) return null;
      this.failed = true;
      return (err as Error).message;
    }
  }

  close(): void {
    this.handle.close(false);
  }
}
