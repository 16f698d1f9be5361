/**
 * The message ids of a publish batch given as a run (`pubs` with `idPrefix` and `idFrom`:
 * ids `prefix + from`, `prefix + (from + 1)`, …; lib/server/dedupe.ts), stored without a
 * string per message: the prefix is turned into UTF-8 once per batch and each record gets
 * it followed by its number's decimal digits, written straight into the record. The bytes
 * are exactly those of the id as a string (docs/storage.md: the record format is unchanged).
 */

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
