/**
 * The local broker's latency histograms, for /metrics. Both count from the server's append
 * time that each message carries (`time`, ms since the epoch on the server's clock; clocks of
 * two hosts may differ, a negative span counts as 0):
 * - end to end: append → handed to a client by `recv` (`mq_local_end_to_end_seconds`);
 * - publish to ack: append → acknowledged by the client (`mq_local_publish_to_ack_seconds`).
 * One clock read per batch, one bucket search per run of messages with the same time.
 */
import { Histogram } from "../histogram.ts";
import type { Message } from "../wire/messages.ts";

export class LocalLatency {
  readonly endToEnd = new Histogram();
  readonly publishToAck = new Histogram();

  delivered(messages: readonly Message[]): void {
    observeAll(this.endToEnd, messages);
  }

  acked(messages: readonly Message[]): void {
    observeAll(this.publishToAck, messages);
  }
}

function observeAll(h: Histogram, messages: readonly Message[]): void {
  const now = Date.now();
  // Messages appended in one batch share their time: a run of them is one bucket search.
  for (let i = 0; i < messages.length; ) {
    const time = messages[i]!.time;
    let j = i + 1;
    while (j < messages.length && messages[j]!.time === time) j++;
    h.observe((now - time) / 1000, j - i);
    i = j;
  }
}
