/**
 * How many requests, and how many payload bytes, the local broker keeps forwarded to the
 * server and unanswered (all its clients share one server connection). Sized to the link
 * as the server's delivery windows are (lib/wire/link-window.ts): twice the request rate ×
 * the shortest recent round trip of a request, measured from the answers. Near the server
 * the window stays small; 20 ms away it grows until the link is full; when the server
 * answers slower than before (it is busy, its disk is slow) it shrinks, and a request that
 * timed out halves it. Bounds: MIN_FORWARD_* to MAX_FORWARD_*, requests also at most half
 * the `maxInFlight` the server announced in its hello (requests that timed out here may
 * still count there). Memory is bounded by bytes: what waits beyond the window waits in the
 * client's request, not in the server connection's buffers.
 *
 * Only publishes are measured (their payload is what fills a link); other requests are
 * counted in flight and bounded, and leave the samples alone, so that a `stats` answered in
 * 0.1 ms beside publishes that wait for an fsync does not pass for the round trip.
 */
import type { Outgoing } from "../wire/messages.ts";
import { LinkWindow } from "../wire/link-window.ts";

export const MIN_FORWARD_REQUESTS = 256;
export const MAX_FORWARD_REQUESTS = 4096;
export const MIN_FORWARD_BYTES = 4 * 1024 * 1024;
export const MAX_FORWARD_BYTES = 64 * 1024 * 1024;

export class ForwardWindow {
  readonly link: LinkWindow;
  /** Requests and payload bytes in flight now (admitted, not answered). */
  requests = 0;
  bytes = 0;
  /** Counts connections: an answer of an earlier one does not end a sample of this one. */
  private session = 0;

  constructor(now?: () => number) {
    this.link = new LinkWindow({ minItems: MIN_FORWARD_REQUESTS, maxItems: MAX_FORWARD_REQUESTS, minBytes: MIN_FORWARD_BYTES, maxBytes: MAX_FORWARD_BYTES, oneByOne: true }, now);
  }

  /** The window in requests, and in bytes. */
  get maxRequests(): number {
    return this.link.items;
  }

  get maxBytes(): number {
    return this.link.bytes;
  }

  /** A new server connection whose hello announced `maxInFlight` (undefined: it did not say): measured anew. */
  connected(maxInFlight: number | undefined): void {
    this.link.maxItems = maxInFlight === undefined ? MAX_FORWARD_REQUESTS : Math.max(1, Math.min(MAX_FORWARD_REQUESTS, Math.floor(maxInFlight / 2)));
    this.link.reset();
    this.session++;
  }

  /** True when a request of `bytes` payload bytes may go now. One always may when none is in flight: a message bigger than the byte window still goes. */
  fits(bytes: number): boolean {
    return this.requests === 0 || (this.requests < this.link.items && this.bytes + bytes <= this.link.bytes);
  }

  /** A request waited for room: the window limits, so the next sample may grow it. */
  full(): void {
    this.link.full();
  }

  /** Admits a request of `bytes`; `release` it when it is done, whatever became of it. */
  take(bytes: number): void {
    this.requests++;
    this.bytes += bytes;
  }

  release(bytes: number): void {
    this.requests--;
    this.bytes -= bytes;
  }

  /** A publish of `bytes` goes on the wire now; returns what `answered` needs. */
  sent(): number {
    this.link.sent(1);
    return this.session;
  }

  /** The publish sent in `session` was answered (or failed). */
  answered(session: number, bytes: number): void {
    if (session === this.session) this.link.done(1, bytes);
  }

  /** A request got no answer in time: the server or the link is congested. */
  timedOut(): void {
    this.link.halve();
  }
}

/** Payload bytes of a request: what it costs in flight (its other fields are small). */
export function payloadBytes(frame: Outgoing): number {
  if (frame.op === "pub") return frame.data.length;
  // A sub or unsub of 1,024 topics of 200-byte names is 200 KB: counted, so that many at once wait here.
  if (frame.op === "sub" || frame.op === "unsub") {
    let bytes = 0;
    for (const t of frame.topics) bytes += t.length;
    return bytes;
  }
  if (frame.op !== "pubs") return 0;
  let bytes = 0;
  for (const p of frame.payloads) bytes += p.length;
  return bytes;
}
