/**
 * A window sized to the link, as TCP and Kafka's fetch sizes are: how many items (messages
 * pushed, requests forwarded) and payload bytes one side may have sent and not yet seen
 * answered, twice the bandwidth × delay product measured from the answers themselves. Used
 * for the delivery window of a subscription (lib/server/window.ts) and for the requests a
 * local broker keeps in flight to its server (lib/local/forward-window.ts).
 *
 * One sample per round trip: a send that finds no sample running notes the time and how many
 * items have been sent so far (with `oneByOne`, so does every send until the first answer
 * comes back); the sample ends when the answers reach that count. Its length
 * is a round trip (plus queueing); the items and bytes answered meanwhile over that length
 * are the rate. The shortest recent sample is the round trip without queueing (`minRttMs`):
 * the shortest of the last MIN_RTT_SAMPLES to 2 × MIN_RTT_SAMPLES samples, so that one sample
 * ended early (an answer already on its way before a reconnect) cannot hold the window small
 * for the session. When the window held the sender back during the sample, the window
 * becomes 2 × rate × minRttMs: doubling while answers come back as fast as the link allows,
 * settling at twice the link's product, shrinking when they come back slower (a slow
 * consumer, a slow server). A sample the window did not limit says nothing of the link and
 * leaves the window as it is. Cost: two counter additions per item, two clock reads per
 * round trip.
 */

export interface LinkBounds {
  minItems: number;
  maxItems: number;
  minBytes: number;
  maxBytes: number;
  /**
   * Items go one by one (requests, not pushes of many): every send until the sample's first
   * answer joins the sample, or a sample of the first alone would count one per round trip.
   */
  oneByOne?: boolean;
}

/** Room for twice the link's bandwidth × delay: a window that just fills the link stalls at every hiccup. */
const HEADROOM = 2;
/** `minRttMs` is the shortest sample among the last 16 to 32. */
export const MIN_RTT_SAMPLES = 16;

export class LinkWindow {
  items: number;
  bytes: number;
  /** Shortest recent sample, in ms (Infinity before the first). */
  minRttMs = Infinity;
  /** The largest `items` may grow to now (at most `bounds.maxItems`; a peer may ask for less). */
  maxItems: number;
  /** Shortest of the samples since `samples` was last 0: the next `minRttMs`. */
  private nextMinRttMs = Infinity;
  private samples = 0;
  /** The window held a send back since the sample began. */
  private limited = false;
  /** Items sent and items done (answered, or given back) this session, and bytes done. */
  private sentCount = 0;
  private doneCount = 0;
  private doneBytes = 0;
  /** The sample running: it ends when `doneCount` reaches `sampleEnd` (0: none running). */
  private sampleEnd = 0;
  private sampleAt = 0;
  private sampleDone = 0;
  private sampleBytes = 0;

  constructor(
    readonly bounds: LinkBounds,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    if (!(bounds.minItems >= 1 && bounds.minItems <= bounds.maxItems && bounds.maxItems <= MAX_BOUND && bounds.minBytes >= 1 && bounds.minBytes <= bounds.maxBytes && bounds.maxBytes <= MAX_BOUND)) {
      throw new RangeError(`Cannot size a window within ${bounds.minItems}..${bounds.maxItems} items and ${bounds.minBytes}..${bounds.maxBytes} bytes: each from 1 up to ${MAX_BOUND}`);
    }
    this.items = bounds.minItems;
    this.bytes = bounds.minBytes;
    this.maxItems = bounds.maxItems;
  }

  /** A send waited because the window is full. */
  full(): void {
    this.limited = true;
  }

  /** `count` items were sent. */
  sent(count: number): void {
    this.sentCount += count;
    if (count === 0) return;
    if (this.sampleEnd !== 0) {
      // Sent before any answer of the sample came back: the same round trip, the same sample.
      if (this.bounds.oneByOne && this.doneCount === this.sampleDone) this.sampleEnd = this.sentCount;
      return;
    }
    this.sampleEnd = this.sentCount;
    this.sampleAt = this.now();
    this.sampleDone = this.doneCount;
    this.sampleBytes = this.doneBytes;
    this.limited = false;
  }

  /** `count` items of `bytes` payload bytes left the window (answered, acknowledged, or given back). */
  done(count: number, bytes: number): void {
    this.doneCount += count;
    this.doneBytes += bytes;
    if (this.sampleEnd === 0 || this.doneCount < this.sampleEnd) return;
    this.sampleEnd = 0;
    this.measured(this.now() - this.sampleAt, this.doneCount - this.sampleDone, this.doneBytes - this.sampleBytes);
  }

  /** Halves the window (not below the minimum): a sign of congestion the samples cannot see, such as a request that timed out. */
  halve(): void {
    this.items = int32(Math.min(this.maxItems, Math.max(this.bounds.minItems, Math.floor(this.items / 2))));
    this.bytes = int32(Math.max(this.bounds.minBytes, Math.floor(this.bytes / 2)));
  }

  /** A new session (a reconnect, maybe by another route): the link is measured anew. */
  reset(): void {
    this.items = Math.min(this.bounds.minItems, this.maxItems);
    this.bytes = this.bounds.minBytes;
    this.minRttMs = Infinity;
    this.nextMinRttMs = Infinity;
    this.samples = 0;
    this.limited = false;
    this.sentCount = this.doneCount = this.doneBytes = 0;
    this.sampleEnd = 0;
  }

  private measured(elapsedMs: number, count: number, bytes: number): void {
    // A clock that did not move (sub-ms loopback) still counts as a short round trip.
    const rtt = Math.max(elapsedMs, 0.01);
    if (rtt < this.minRttMs) this.minRttMs = rtt;
    if (rtt < this.nextMinRttMs) this.nextMinRttMs = rtt;
    if (++this.samples === MIN_RTT_SAMPLES) {
      this.minRttMs = this.nextMinRttMs;
      this.nextMinRttMs = Infinity;
      this.samples = 0;
    }
    if (!this.limited) return;
    this.items = resize(this.items, (HEADROOM * count * this.minRttMs) / rtt, Math.min(this.bounds.minItems, this.maxItems), this.maxItems);
    this.bytes = resize(this.bytes, (HEADROOM * bytes * this.minRttMs) / rtt, this.bounds.minBytes, this.bounds.maxBytes);
  }
}

/** `target` within [min, max], and at most twice `current` (growth one doubling per round trip, as a TCP slow start). */
function resize(current: number, target: number, min: number, max: number): number {
  return int32(Math.round(Math.max(min, Math.min(max, 2 * current, target))));
}

/** Bounds of a window: its sizes are kept as 32-bit integers (`int32`). */
const MAX_BOUND = 2 ** 31 - 1;

/**
 * `n` (a whole number of at most MAX_BOUND) as a 32-bit integer value. The JIT's code for
 * `Math.round` and `Math.floor` returns a double even for a whole number: a window stored so
 * was an int before the JIT compiled its resize and a double after, and the code compiled for
 * ints that reads it (a push's room, its reservation) was thrown away (docs/benchmarks.md).
 */
function int32(n: number): number {
  return n | 0;
}
