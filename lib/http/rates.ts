/**
 * Publish rate per topic over the last few seconds, for /api/topics: each topic's
 * `published` counter is sampled by a timer (never per message), and the rate is the
 * difference between the newest and the oldest sample kept, over their time apart.
 */

/** Sampled every second; the rate spans up to the last 5 s. */
export const RATE_SAMPLE_MS = 1000;
const SAMPLES_KEPT = 6;

interface Sample {
  at: number;
  published: Map<string, number>;
}

export class Rates {
  private readonly samples: Sample[] = [];

  /** Records every topic's published total at `at` (ms). */
  sample(at: number, topics: Iterable<{ name: string; counts: { published: number } }>): void {
    const published = new Map<string, number>();
    for (const t of topics) published.set(t.name, t.counts.published);
    this.samples.push({ at, published });
    if (this.samples.length > SAMPLES_KEPT) this.samples.shift();
  }

  /** Messages per second published to `topic` over the samples kept; 0 until two samples exist. */
  rate(topic: string): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    const now = last.published.get(topic) ?? 0;
    // A topic that appeared since the first sample counts from 0 (it was created then).
    const before = first.published.get(topic) ?? 0;
    return Math.max(0, Math.round(((now - before) * 1000 * 100) / (last.at - first.at)) / 100);
  }
}
