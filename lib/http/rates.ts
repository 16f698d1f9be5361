/**
 * Publish rate per topic over the last few seconds, for /api/topics: each topic's
 * `published` counter is sampled by a timer (never per message), and the rate is the
 * difference between the newest and the oldest sample kept, over their time apart. The timer
 * runs only while someone reads rates (`wake`), and stops RATES_IDLE_MS after the last read:
 * with many topics a sample walks them all, which nobody should pay for when nobody looks.
 */

/** Sampled every second; the rate spans up to the last 5 s. */
export const RATE_SAMPLE_MS = 1000;
const SAMPLES_KEPT = 6;
/** The sampling stops this long after the last read of a rate. */
export const RATES_IDLE_MS = 60_000;

type TopicCounters = Iterable<{ name: string; counts: { published: number } }>;

interface Sample {
  at: number;
  published: Map<string, number>;
}

export class Rates {
  private readonly samples: Sample[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastRead = 0;

  /** `source`: the topics to sample (the server's `topicCounters`). */
  constructor(private readonly source: () => TopicCounters = () => []) {}

  /** A rate is about to be read: sampling starts now if it was stopped (the first answer is 0). */
  wake(): void {
    this.lastRead = Date.now();
    if (this.timer) return;
    this.sample(this.lastRead, this.source());
    this.timer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastRead > RATES_IDLE_MS) return this.stop();
      this.sample(now, this.source());
    }, RATE_SAMPLE_MS);
    this.timer.unref?.();
  }

  /** Stops sampling and forgets the samples (a later wake starts afresh). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.samples.length = 0;
  }

  /** Records every topic's published total at `at` (ms). */
  sample(at: number, topics: TopicCounters): void {
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
