/**
 * Helpers for tests that damage topic logs on disk: where each record is, read with a
 * parser of the tests' own (so a bug in lib/store/segment.ts cannot hide itself), and
 * records in the old format 1 for conversion fixtures.
 */
import { afterEach, beforeEach, expect, spyOn } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { FileTopicLog } from "../../lib/store/topic-log.ts";
import { payload } from "./topic-log.contract.ts";

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

/**
 * Per test: a fresh directory (`dir`, removed after it with its `-crash` copy), the logs the
 * test opened (closed after it; push them to `opened`), and what the store wrote to stderr.
 */
export function logDirPerTest(prefix: string): { dir: string; opened: FileTopicLog[]; stderr: string } {
  const fx = { dir: "", opened: [] as FileTopicLog[], stderr: "" };
  let stderrSpy: ReturnType<typeof spyOn>;
  beforeEach(() => {
    fx.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    fx.opened = [];
    fx.stderr = "";
    stderrSpy = spyOn(process.stderr, "write").mockImplementation(((chunk: string | Uint8Array) => {
      fx.stderr += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      return true;
    }) as typeof process.stderr.write);
  });
  afterEach(async () => {
    stderrSpy.mockRestore();
    for (const l of fx.opened.reverse()) await l.close().catch(() => {});
    for (const d of [fx.dir, `${fx.dir}-crash`]) fs.rmSync(d, { recursive: true, force: true });
  });
  return fx;
}

/** The payload of `seq`: sizes vary so that record offsets are irregular. */
export function body(seq: number): Uint8Array {
  return payload(20 + ((seq * 37) % 61), seq);
}

/** Appends from..to one at a time (time = 1000 + seq): one commit each; the log stays open. */
export async function append(log: FileTopicLog, from: number, to: number): Promise<void> {
  for (let seq = from; seq <= to; seq++) expect(await log.append(body(seq), 1000 + seq)).toBe(seq);
}
