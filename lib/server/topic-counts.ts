/**
 * Per-topic counters since the server started (for /metrics and the HTTP API): plain fields
 * incremented in place on the paths that already count the server's totals.
 */
export class TopicCounts {
  /** Messages stored (duplicates not counted) and their payload bytes. */
  published = 0;
  publishedBytes = 0;
  /** Messages pushed to local brokers (a re-send after a reconnect counts again). */
  delivered = 0;
  /** Messages acknowledged by local brokers. */
  acked = 0;

  /** Counts the payloads stored: all of `payloads`, or those at `indexes`. */
  stored(payloads: readonly Uint8Array[], indexes?: readonly number[]): void {
    if (indexes) {
      for (const i of indexes) this.publishedBytes += payloads[i]!.length;
      this.published += indexes.length;
      return;
    }
    for (const p of payloads) this.publishedBytes += p.length;
    this.published += payloads.length;
  }
}
