/**
 * The delivery window of one subscription: how many messages and payload bytes the server
 * may have pushed to it and not yet seen acknowledged. Sized to the link, as TCP and Kafka's
 * fetch sizes are: twice the bandwidth × delay product, measured by the subscription's own
 * acks (the local broker acknowledges once its client did, so a slow consumer reads as a
 * slow link, and its window shrinks).
 *
 * One sample per round trip: a push that finds no sample running notes the time and how many
 * messages have been sent so far; the sample ends when the acks (or give-backs) reach that
 * count. Its length is a round trip (plus queueing); the messages and bytes acknowledged
 * meanwhile over that length are the rate. The shortest recent sample is the round trip
 * without queueing (`minRttMs`): the shortest of the last MIN_RTT_SAMPLES to 2 ×
 * MIN_RTT_SAMPLES samples, so that one sample ended early by an ack already on its way (one
 * the local broker sent before a reconnect) cannot hold the window small for the session. When the window held the subscription back during the
 * sample, the window becomes 2 × rate × minRttMs: doubling while the acks come back as fast
 * as the link allows, settling at twice the link's product, shrinking when acks come back
 * slower (a slow consumer). A sample the window did not limit says nothing of the link and
 * leaves the window as it is. Cost: two counter additions per message, two clock reads per
 * round trip.
 *
 * Bounds: never below MIN_WINDOW_* (the fixed window mq had before, enough on loopback),
 * never above MAX_WINDOW_* (the server's cap per subscription). Within the window, the byte
 * budgets the local broker announced (lib/server/credits.ts) still apply: they bound its
 * memory whatever the window.
 */

export const MIN_WINDOW_MESSAGES = 256;
export const MIN_WINDOW_BYTES = 1024 * 1024;
/** The server's caps per subscription: 65536 × 16 bytes of bookkeeping, and as many payload bytes as a local broker buffers per id by default. */
export const MAX_WINDOW_MESSAGES = 65_536;
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;
/** Room for twice the link's bandwidth × delay: a window that just fills the link stalls at every hiccup. */
const HEADROOM = 2;
/** `minRttMs` is the shortest sample among the last 16 to 32. */
export const MIN_RTT_SAMPLES = 16;

export class DeliveryWindow {
  messages = MIN_WINDOW_MESSAGES;
  bytes = MIN_WINDOW_BYTES;
  /** Shortest recent sample, in ms (Infinity before the first). */
  minRttMs = Infinity;
  /** Shortest of the samples since `samples` was last 0: the next `minRttMs`. */
  private nextMinRttMs = Infinity;
  private samples = 0;
  /** The window held a push back since the sample began. */
  private limited = false;
  /** Messages sent and messages done (acknowledged or given back) this session, and bytes done. */
  private sentCount = 0;
  private doneCount = 0;
  private doneBytes = 0;
  /** The sample running: it ends when `doneCount` reaches `sampleEnd` (0: none running). */
  private sampleEnd = 0;
  private sampleAt = 0;
  private sampleDone = 0;
  private sampleBytes = 0;

  constructor(private readonly now: () => number = performance.now.bind(performance)) {}

  /** A push stopped because the window is full. */
  full(): void {
    this.limited = true;
  }

  /** A push sent `count` messages. */
  sent(count: number): void {
    this.sentCount += count;
    if (this.sampleEnd !== 0 || count === 0) return;
    this.sampleEnd = this.sentCount;
    this.sampleAt = this.now();
    this.sampleDone = this.doneCount;
    this.sampleBytes = this.doneBytes;
    this.limited = false;
  }

  /** `count` messages of `bytes` payload bytes left the window (acknowledged, or given back). */
  done(count: number, bytes: number): void {
    this.doneCount += count;
    this.doneBytes += bytes;
    if (this.sampleEnd === 0 || this.doneCount < this.sampleEnd) return;
    this.sampleEnd = 0;
    this.measured(this.now() - this.sampleAt, this.doneCount - this.sampleDone, this.doneBytes - this.sampleBytes);
  }

  /** A new session (a reconnect, maybe by another route): the link is measured anew. */
  reset(): void {
    this.messages = MIN_WINDOW_MESSAGES;
    this.bytes = MIN_WINDOW_BYTES;
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
    this.messages = resize(this.messages, (HEADROOM * count * this.minRttMs) / rtt, MIN_WINDOW_MESSAGES, MAX_WINDOW_MESSAGES);
    this.bytes = resize(this.bytes, (HEADROOM * bytes * this.minRttMs) / rtt, MIN_WINDOW_BYTES, MAX_WINDOW_BYTES);
  }
}

/** `target` within [min, max], and at most twice `current` (growth one doubling per round trip, as a TCP slow start). */
function resize(current: number, target: number, min: number, max: number): number {
  return Math.round(Math.max(min, Math.min(max, 2 * current, target)));
}
