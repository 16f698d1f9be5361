/**
 * Helpers for corruption tests on real record files (lib/store/record-file.ts): find the
 * records of a copy, flip one bit, write a file of the previous format, capture the log.
 */
import { spyOn } from "bun:test";
import * as fs from "node:fs";
import { FRAME_BYTES, HEADER_BYTES, mirrorOf } from "../../lib/store/record-file.ts";
import { encode } from "../../lib/wire/codec.ts";

/** Offset and total length (frame + body) of each record in one copy, in file order. */
export function recordSpans(file: string): Array<{ offset: number; length: number }> {
  const bytes = fs.readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Array<{ offset: number; length: number }> = [];
  for (let pos = HEADER_BYTES; pos + FRAME_BYTES <= bytes.length; ) {
    const length = FRAME_BYTES + view.getUint32(pos + 4);
    out.push({ offset: pos, length });
    pos += length;
  }
  return out;
}

/** Flips one bit of the byte at `offset` (one bad bit, as a failing sector would give). */
export function flipBit(file: string, offset: number, bit = 0): void {
  const bytes = fs.readFileSync(file);
  if (offset >= bytes.length) throw new RangeError(`${file} has ${bytes.length} bytes, no offset ${offset}`);
  bytes[offset]! ^= 1 << bit;
  fs.writeFileSync(file, bytes);
}

/** Flips a bit inside the body of record `index` (0 = the first) of one copy. */
export function flipBitInRecord(file: string, index: number): void {
  const span = recordSpans(file)[index];
  if (!span) throw new RangeError(`${file} has no record ${index}`);
  flipBit(file, span.offset + FRAME_BYTES, 3);
}

/** Both copies of a record file. */
export function copiesOf(file: string): [string, string] {
  return [file, mirrorOf(file)];
}

/** Copies both copies of a record file (what a crash at this instant would leave). */
export function copyRecordFile(from: string, to: string): void {
  fs.copyFileSync(from, to);
  fs.copyFileSync(mirrorOf(from), mirrorOf(to));
}

/** A file of the previous format (one copy, records `[u32 length][u32 crc32][cbor]` from byte 0). */
export function legacyBytes(records: Array<Record<string, unknown>>): Uint8Array {
  return Buffer.concat(
    records.map((r) => {
      const body = encode(r);
      const out = new Uint8Array(8 + body.length);
      const view = new DataView(out.buffer);
      view.setUint32(0, body.length);
      view.setUint32(4, Bun.hash.crc32(body));
      out.set(body, 8);
      return out;
    }),
  );
}

/** Log lines written while `fn` runs (silenced), as "[level] [tag] message". */
export async function captureLog<T>(fn: () => T | Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const spy = spyOn(process.stderr, "write").mockImplementation(((chunk: unknown) => {
    // `2026-…Z ERROR [store] …` (docs/logging.md) → `[error] [store] …`: the time varies, the rest is checked.
    const plain = (l: string) => l.replace(/^\S+ (ERROR|WARN|INFO|DEBUG|TRACE) +/, (_, lv: string) => `[${lv.toLowerCase()}] `);
    lines.push(...String(chunk).split("\n").filter((l) => l.length > 0).map(plain));
    return true;
  }) as typeof process.stderr.write);
  try {
    const result = await fn();
    return { result, lines };
  } finally {
    spy.mockRestore();
  }
}

/** The lines of one level ("error", "warn", "info"). */
export function level(lines: string[], name: string): string[] {
  return lines.filter((l) => l.startsWith(`[${name}]`));
}
