/**
 * The delivery window of one subscription: how many messages and payload bytes the server
 * may have pushed to it and not yet seen acknowledged, sized to the link by the
 * subscription's own acks (lib/wire/link-window.ts). The local broker acknowledges once its
 * client did, so a slow consumer reads as a slow link, and its window shrinks.
 *
 * Bounds: never below MIN_WINDOW_* (a queue-group member: MIN_MEMBER_WINDOW_MESSAGES), never
 * above MAX_WINDOW_* (the server's cap per subscription). Within the window, the byte
 * budgets the local broker announced (lib/server/credits.ts) still apply: they bound its
 * memory whatever the window.
 */
import { LinkWindow } from "../wire/link-window.ts";

export { MIN_RTT_SAMPLES } from "../wire/link-window.ts";
/**
 * A subscription's window is at least 1,024 messages: more than a consumer takes in one batch
 * (the CLI's and the library's recv ask up to 1,000). With 256 (before), a recv loop got at
 * most 256 messages per round trip (recv → ack → server → push) and the window did not grow,
 * its samples lengthened by the consumer's own turns (docs/benchmarks.md, "--fsync never 1→1:
 * the turns of a round trip"); and the window of each id whose consumer acknowledges batch by
 * batch filled in every batch, so its acks drove its pushes: the ids of one local broker read
 * at seqs of their own and shared no frame. Above a batch, a publish pumps them together at
 * one seq and they ride one read and one frame ("fan-out: the window floor"). 2,048 (two
 * batches) measured no better ("the window floor at the merge").
 */
export const MIN_WINDOW_MESSAGES = 1024;
/** A queue-group member's floor: the fixed window of before, so a slow member holds back no more of the group's backlog than it did. */
export const MIN_MEMBER_WINDOW_MESSAGES = 256;
export const MIN_WINDOW_BYTES = 1024 * 1024;
/** The server's caps per subscription: 65536 × 16 bytes of bookkeeping, and as many payload bytes as a local broker buffers per id by default. */
export const MAX_WINDOW_MESSAGES = 65_536;
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;

export class DeliveryWindow extends LinkWindow {
  constructor(minMessages = MIN_WINDOW_MESSAGES, now?: () => number) {
    super({ minItems: minMessages, maxItems: MAX_WINDOW_MESSAGES, minBytes: MIN_WINDOW_BYTES, maxBytes: MAX_WINDOW_BYTES }, now);
  }

  /** The window in messages. */
  get messages(): number {
    return this.items;
  }
}
