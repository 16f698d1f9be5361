/**
 * What a subscription pushed and has not seen acknowledged yet, for its cumulative acks: the
 * batches it was sent, oldest first, each as its push read it — the seqs and the running sums
 * of their sizes — and shared by every id that rode that push (lib/server/topic.ts). So a batch
 * costs each rider one entry, not a copy of its seqs and sizes: with 8 ids sharing every frame,
 * those copies were a tenth of `mq up`'s CPU (docs/benchmarks.md, "fan-out: the window floor").
 */

/** A batch as pushed: `seqs` ascending, `sums[i]` the bytes of messages 0…i−1 (one more entry than `seqs`). Never changed. */
export interface PushedBatch {
  readonly seqs: readonly number[];
  readonly sums: readonly number[];
}

/** The batch of `seqs` whose messages have the sizes `sizes` (as the budgets count them). */
export function pushedBatch(seqs: number[], sizes: readonly number[]): PushedBatch {
  const sums = new Array<number>(sizes.length + 1);
  let sum = 0;
  sums[0] = 0;
  for (let i = 0; i < sizes.length; i++) sums[i + 1] = sum += sizes[i]!;
  return { seqs, sums };
}

export class InFlight {
  /** Messages and their bytes in flight. */
  count = 0;
  bytes = 0;
  /** The bytes of the messages the last `takeBelow` took out. */
  takenBytes = 0;
  private batches: PushedBatch[] = [];
  /** The oldest batch with messages in flight, and its first message in flight. */
  private first = 0;
  private from = 0;

  add(batch: PushedBatch): void {
    const n = batch.seqs.length;
    if (n === 0) return;
    this.batches.push(batch);
    this.count += n;
    this.bytes += batch.sums[n]!;
  }

  /** Takes out every message in flight below seq `cursor`; returns how many (their bytes: `takenBytes`). */
  takeBelow(cursor: number): number {
    let count = 0;
    let bytes = 0;
    while (this.first < this.batches.length) {
      const { seqs, sums } = this.batches[this.first]!;
      const n = seqs.length;
      // The first message at or past `cursor` (binary search: acks mostly cover whole batches).
      let lo = this.from;
      if (seqs[n - 1]! < cursor) lo = n;
      else {
        let hi = n - 1;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (seqs[mid]! < cursor) lo = mid + 1;
          else hi = mid;
        }
      }
      count += lo - this.from;
      bytes += sums[lo]! - sums[this.from]!;
      if (lo < n) {
        this.from = lo;
        break;
      }
      this.first++;
      this.from = 0;
    }
    if (this.first > 64 && this.first * 2 > this.batches.length) {
      this.batches = this.batches.slice(this.first);
      this.first = 0;
    }
    this.count -= count;
    this.bytes -= bytes;
    this.takenBytes = bytes;
    return count;
  }

  clear(): void {
    this.batches = [];
    this.first = this.from = 0;
    this.count = this.bytes = 0;
  }
}
