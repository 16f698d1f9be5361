/**
 * A set of ids kept as sorted, disjoint, inclusive ranges: the ids whose records an id
 * table lost. Small in practice (usually empty), and compact even when whole runs of ids
 * were lost.
 */
export class IdRanges {
  /** [lo, hi] pairs, sorted, disjoint and not adjacent. */
  private ranges: Array<[number, number]> = [];

  /** From `[lo, hi, lo, hi, …]` as written in records and frames; malformed pairs are skipped. */
  static fromFlat(flat: unknown): IdRanges {
    const set = new IdRanges();
    set.addFlat(flat);
    return set;
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** How many ids. */
  get count(): number {
    let n = 0;
    for (const [lo, hi] of this.ranges) n += hi - lo + 1;
    return n;
  }

  has(id: number): boolean {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [a, b] = this.ranges[mid]!;
      if (id < a) hi = mid - 1;
      else if (id > b) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** Adds the ids `lo..hi` (inclusive). */
  add(lo: number, hi = lo): void {
    if (!(Number.isSafeInteger(lo) && Number.isSafeInteger(hi) && lo >= 0 && lo <= hi)) return;
    const last = this.ranges[this.ranges.length - 1];
    if (!last || lo > last[1] + 1) {
      this.ranges.push([lo, hi]); // in order, as when read back from toFlat: no merging needed
      return;
    }
    const out: Array<[number, number]> = [];
    let placed = false;
    for (const r of this.ranges) {
      if (r[1] + 1 < lo) out.push(r);
      else if (hi + 1 < r[0]) {
        if (!placed) out.push([lo, hi]), (placed = true);
        out.push(r);
      } else {
        lo = Math.min(lo, r[0]);
        hi = Math.max(hi, r[1]);
      }
    }
    if (!placed) out.push([lo, hi]);
    this.ranges = out;
  }

  addFlat(flat: unknown): void {
    if (!Array.isArray(flat)) return;
    for (let i = 0; i + 1 < flat.length; i += 2) this.add(flat[i] as number, flat[i + 1] as number);
  }

  /** `[lo, hi, lo, hi, …]`. */
  toFlat(): number[] {
    return this.ranges.flat();
  }

  /** Records of at most `perRecord` ranges each, `{[key]: flat}`, for snapshots. */
  toRecords(key: string, perRecord = 4096): Array<Record<string, number[]>> {
    const out: Array<Record<string, number[]>> = [];
    for (let i = 0; i < this.ranges.length; i += perRecord) out.push({ [key]: this.ranges.slice(i, i + perRecord).flat() });
    return out;
  }

  /** "1-3, 7" (at most `max` ranges, then "…"). */
  toString(max = 20): string {
    const shown = this.ranges.slice(0, max).map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`));
    return shown.join(", ") + (this.ranges.length > max ? `, … (${this.ranges.length} ranges)` : "");
  }

  /**
   * The ids in `from..below-1` that are not in `taken` (which need not be sorted): what is
   * left of a range of ids once the accounted-for ones are removed.
   */
  static gaps(from: number, below: number, taken: Iterable<number>): IdRanges {
    const sorted = [...taken].filter((id) => id >= from && id < below).sort((a, b) => a - b);
    const set = new IdRanges();
    let next = from;
    for (const id of sorted) {
      if (id > next) set.ranges.push([next, id - 1]);
      next = Math.max(next, id + 1);
    }
    if (next < below) set.ranges.push([next, below - 1]);
    return set;
  }
}
