/**
 * An append-only file of small checksummed CBOR records: `[u32 length][u32 crc32][cbor]`.
 * Used for state that changes by events (subscriber index, client registry, local id table).
 * Opening replays every intact record and cuts a torn tail; `rewrite` compacts the file to
 * a snapshot with temp + fsync + rename, so a crash at any instant leaves the old or the new.
 */
import * as fs from "node:fs";
import { logger } from "../log.ts";
import { decodeMap, encode } from "../wire/codec.ts";
import { fsyncAsync, fsyncDir, readAtSync, writeAllSync, writeFileAtomic } from "./fsutil.ts";
import { GroupCommit } from "./group-commit.ts";
import * as path from "node:path";

const log = logger("store");
const HEADER = 8;
/** Records are small maps; anything claiming more is damage, not data. */
const MAX_RECORD_BYTES = 1024 * 1024;

export type Record_ = Record<string, unknown>;

export class RecordFile {
  private fd: number;
  private size: number;
  private readonly commits = new GroupCommit((batch: Array<{ framed: Uint8Array | null; durable: boolean }>) => this.commit(batch));

  private constructor(
    readonly file: string,
    fd: number,
    size: number,
  ) {
    this.fd = fd;
    this.size = size;
  }

  /** Opens (creating if absent) and replays every intact record through `apply`, in order. */
  static open(file: string, apply: (record: Record_) => void): RecordFile {
    const existed = fs.existsSync(file);
    const fd = fs.openSync(file, existed ? "r+" : "w+", 0o600);
    if (!existed) fsyncDir(path.dirname(file));
    const bytes = readAtSync(fd, fs.fstatSync(fd).size, 0);
    const good = replay(bytes, apply);
    if (good < bytes.length) {
      log.warn(`${file}: dropped a torn or corrupt tail of ${bytes.length - good} bytes at offset ${good}`);
      fs.ftruncateSync(fd, good);
      fs.fsyncSync(fd);
    }
    return new RecordFile(file, fd, good);
  }

  /** Bytes on disk, to decide when to compact. */
  get bytes(): number {
    return this.size;
  }

  /**
   * Appends a record; records appended in one tick share one write, and the durable ones
   * share one fsync. The promise resolves when written (and fsynced if `durable`).
   */
  append(record: Record_, durable: boolean): Promise<void> {
    return this.commits.add({ framed: frameRecord(record), durable });
  }

  /** Writes what is batched now and fsyncs. */
  sync(): Promise<void> {
    return this.commits.add({ framed: null, durable: true });
  }

  private async commit(batch: Array<{ framed: Uint8Array | null; durable: boolean }>): Promise<void[]> {
    const framed = batch.flatMap((b) => (b.framed ? [b.framed] : []));
    if (framed.length > 0) {
      const buf = Buffer.concat(framed);
      writeAllSync(this.fd, buf, this.size);
      this.size += buf.length;
    }
    if (batch.some((b) => b.durable)) await fsyncAsync(this.fd);
    return [];
  }

  /**
   * Replaces the whole file with a snapshot, crash-safely. `snapshot` is called once the
   * pending appends are on disk, and the file is swapped in the same tick, so no append
   * can fall between the snapshot and the swap.
   */
  async rewrite(snapshot: () => Record_[]): Promise<void> {
    while (this.commits.busy) await this.commits.idle();
    const buf = Buffer.concat(snapshot().map(frameRecord));
    writeFileAtomic(this.file, buf);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.file, "r+");
    this.size = buf.length;
  }

  async close(): Promise<void> {
    await this.sync();
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}

function frameRecord(record: Record_): Uint8Array {
  const body = encode(record);
  const out = new Uint8Array(HEADER + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, Bun.hash.crc32(body));
  out.set(body, HEADER);
  return out;
}

/** Applies each intact record; returns the length of the intact prefix. */
function replay(bytes: Uint8Array, apply: (record: Record_) => void): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos + HEADER <= bytes.length) {
    const length = view.getUint32(pos);
    if (length > MAX_RECORD_BYTES || pos + HEADER + length > bytes.length) break;
    const body = bytes.subarray(pos + HEADER, pos + HEADER + length);
    if (Bun.hash.crc32(body) !== view.getUint32(pos + 4)) break;
    let record: Record_;
    try {
      record = decodeMap(body);
    } catch {
      break;
    }
    if (Object.keys(record).length > 0) apply(record);
    pos += HEADER + length;
  }
  return pos;
}
