/**
 * The delivery window of one subscription: how many messages and payload bytes the server
 * may have pushed to it and not yet seen acknowledged, sized to the link by the
 * subscription's own acks (lib/wire/link-window.ts). The local broker acknowledges once its
 * client did, so a slow consumer reads as a slow link, and its window shrinks.
 *
 * Bounds: never below MIN_SUBSCRIPTION_WINDOW_MESSAGES (a queue-group member:
 * MIN_WINDOW_MESSAGES, the fixed window mq had before) and MIN_WINDOW_BYTES, never above
 * MAX_WINDOW_* (the server's cap per subscription). Within the window, the byte
 * budgets the local broker announced (lib/server/credits.ts) still apply: they bound its
 * memory whatever the window.
 */
import { LinkWindow } from "../wire/link-window.ts";

export { MIN_RTT_SAMPLES } from "../wire/link-window.ts";
export const MIN_WINDOW_MESSAGES = 256;
/**
 * A plain subscription's floor in messages (a queue-group member keeps MIN_WINDOW_MESSAGES:
 * the members' turns share one backlog). A recv loop takes up to 1,000 messages a reply (the
 * local broker's MAX_RECV_BATCH): with room for two, one batch is in the client's hands and
 * the next is pushed meanwhile, ready at its next recv. At 256 a recv loop got at most 256
 * messages per round trip (recv → ack → server → push), and the window stayed there, sized
 * by acks that the consumer's own turns delay (docs/benchmarks.md, "--fsync never 1→1: the
 * turns of a round trip"). The byte floor and the local broker's budgets still bound it.
 */
export const MIN_SUBSCRIPTION_WINDOW_MESSAGES = 2048;
export const MIN_WINDOW_BYTES = 1024 * 1024;
/** The server's caps per subscription: 65536 × 16 bytes of bookkeeping, and as many payload bytes as a local broker buffers per id by default. */
export const MAX_WINDOW_MESSAGES = 65_536;
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;

export class DeliveryWindow extends LinkWindow {
  constructor(now?: () => number, minMessages = MIN_WINDOW_MESSAGES) {
    super({ minItems: minMessages, maxItems: MAX_WINDOW_MESSAGES, minBytes: MIN_WINDOW_BYTES, maxBytes: MAX_WINDOW_BYTES }, now);
  }

  /** The window in messages. */
  get messages(): number {
    return this.items;
  }
}
