/**
 * The message ids of a publish batch given as a run (`pubs` with `idPrefix` and `idFrom`:
 * ids `prefix + from`, `prefix + (from + 1)`, …; lib/server/dedupe.ts), stored without a
 * string per message: the prefix is turned into UTF-8 once per batch and each record gets
 * it followed by its number's decimal digits, written straight into the record. The bytes
 * are exactly those of the id as a string (docs/storage.md: the record format is unchanged).
 */

import type { MsgIdRecord, MsgIdRun } from "./types.ts";

/** Ids `prefix + from` … of a batch, one per message in order. */
export interface IdRun {
  prefix: string;
  from: number;
}

const utf8 = new TextEncoder();

export function prefixBytes(run: IdRun): Uint8Array {
  return utf8.encode(run.prefix);
}

/** The id of message `i` of the run as a string (for stores that keep strings). */
export function idAt(run: IdRun, i: number): string {
  return `${run.prefix}${run.from + i}`;
}

/** How many decimal digits `n` (a safe integer >= 0) is written with. Comparisons, not divisions: it runs once per stored record. */
export function digitCount(n: number): number {
  let digits = 1;
  for (let bound = 10; n >= bound && digits < 16; bound *= 10) digits++;
  return digits;
}

/**
 * Writes `prefix` then the decimal digits of `n` at `pos` of `buf`; returns the bytes written.
 * `digits` is digitCount(n) when the caller has it already. Short prefixes are copied byte by
 * byte (cheaper than a native `set` for a few bytes), and numbers below 2^31 take integer math.
 */
export function writeRunId(buf: Uint8Array, pos: number, prefix: Uint8Array, n: number, digits = digitCount(n)): number {
  const prefixLength = prefix.length;
  if (prefixLength <= 32) for (let i = 0; i < prefixLength; i++) buf[pos + i] = prefix[i]!;
  else buf.set(prefix, pos);
  let q = pos + prefixLength + digits;
  while (n >= 0x80000000) {
    const rest = Math.floor(n / 10);
    buf[--q] = 48 + (n - rest * 10);
    n = rest;
  }
  do {
    const rest = (n / 10) | 0;
    buf[--q] = 48 + (n - rest * 10);
    n = rest;
  } while (n > 0);
  return prefixLength + digits;
}

/**
 * Where the number of a run id `P` + n starts in its UTF-8 bytes (the length of `P`, which ends
 * with ':'), and n; null when the id is not of that form. The same rules as `splitMsgId`
 * on the string: 1 to 16 digits after the last ':', no
 * leading zero but "0" itself, a safe integer. ':' is one byte in UTF-8 and never part of
 * another character's bytes, so the last ':' byte is the string's last ':'.
 */
export function runIdNumber(id: Uint8Array): { prefixLength: number; n: number } | null {
  const colon = id.lastIndexOf(58);
  const digits = id.length - colon - 1;
  if (colon < 0 || digits < 1 || digits > 16 || (digits > 1 && id[colon + 1] === 48)) return null;
  let n = 0;
  for (let i = colon + 1; i < id.length; i++) {
    const d = id[i]! - 48;
    if (d < 0 || d > 9) return null;
    n = n * 10 + d;
  }
  return Number.isSafeInteger(n) ? { prefixLength: colon + 1, n } : null;
}

/**
 * `P:n` split at its last ":" when what follows is a decimal number as it would be written
 * (no sign, no leading zero, at most 2^53 - 1); null for any other id.
 */
export function splitMsgId(key: string): { prefix: string; n: number } | null {
  const colon = key.lastIndexOf(":");
  const digits = key.length - colon - 1;
  if (colon < 0 || digits < 1 || digits > 16 || (digits > 1 && key.charCodeAt(colon + 1) === 48)) return null;
  let n = 0;
  for (let i = colon + 1; i < key.length; i++) {
    const d = key.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return null;
    n = n * 10 + d;
  }
  return Number.isSafeInteger(n) ? { prefix: key.slice(0, colon + 1), n } : null;
}

/** The ids of `run` one by one (a run of `count` > 1 has the id `P` + n: the others are P + (n + 1) …, at seq + 1 …). */
export function expandMsgIdRuns(runs: readonly MsgIdRun[]): MsgIdRecord[] {
  const out: MsgIdRecord[] = [];
  for (const r of runs) {
    if (r.count === 1) {
      out.push({ msgId: r.msgId, seq: r.seq, time: r.time });
      continue;
    }
    const { prefix, n } = splitMsgId(r.msgId)!;
    for (let i = 0; i < r.count; i++) out.push({ msgId: `${prefix}${n + i}`, seq: r.seq + i, time: r.time });
  }
  return out;
}

/** `run` without its first `drop` ids (0 < drop < run.count). */
export function dropFromRun(run: MsgIdRun, drop: number): MsgIdRun {
  const { prefix, n } = splitMsgId(run.msgId)!;
  return { msgId: `${prefix}${n + drop}`, seq: run.seq + drop, time: run.time, count: run.count - drop };
}
