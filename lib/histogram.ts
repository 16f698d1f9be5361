/**
 * A latency histogram cheap enough for the hot path: fixed bucket bounds in seconds, a
 * count per bucket and a sum, no allocation per observation. Rendered as a Prometheus
 * histogram by lib/http/prometheus.ts.
 *
 * No dependency: the store (fsync time), the server and the local broker all record into one.
 */

/** Upper bounds in seconds: 100 µs to 60 s, about ×2.5 apart (a latency spans many orders). */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Histogram {
  /** counts[i]: observations ≤ bounds[i] and above bounds[i-1]; the last: above every bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records `times` observations (one by default) of `seconds` (a negative one, from clocks of two hosts, counts as 0). */
  observe(seconds: number, times = 1): void {
    const v = seconds > 0 ? seconds : 0;
    const b = this.bounds;
    // A linear scan of under 20 bounds, most observations stopping early: cheaper than a log.
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]! += times;
    this.sum += v * times;
    this.count += times;
  }

  /** Cumulative counts per bound, then +Inf (what Prometheus `_bucket` series show). */
  cumulative(): number[] {
    const out: number[] = [];
    let total = 0;
    for (const c of this.counts) out.push((total += c));
    return out;
  }
}
