/**
 * The delivery window of one subscription: how many messages and payload bytes the server
 * may have pushed to it and not yet seen acknowledged, sized to the link by the
 * subscription's own acks (lib/wire/link-window.ts). The local broker acknowledges once its
 * client did, so a slow consumer reads as a slow link, and its window shrinks.
 *
 * Bounds: never below MIN_WINDOW_* (the fixed window mq had before, enough on loopback),
 * never above MAX_WINDOW_* (the server's cap per subscription). Within the window, the byte
 * budgets the local broker announced (lib/server/credits.ts) still apply: they bound its
 * memory whatever the window.
 */
import { LinkWindow } from "../wire/link-window.ts";

export { MIN_RTT_SAMPLES } from "../wire/link-window.ts";
export const MIN_WINDOW_MESSAGES = 256;
export const MIN_WINDOW_BYTES = 1024 * 1024;
/** The server's caps per subscription: 65536 × 16 bytes of bookkeeping, and as many payload bytes as a local broker buffers per id by default. */
export const MAX_WINDOW_MESSAGES = 65_536;
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;

export class DeliveryWindow extends LinkWindow {
  constructor(now?: () => number) {
    super({ minItems: MIN_WINDOW_MESSAGES, maxItems: MAX_WINDOW_MESSAGES, minBytes: MIN_WINDOW_BYTES, maxBytes: MAX_WINDOW_BYTES }, now);
  }

  /** The window in messages. */
  get messages(): number {
    return this.items;
  }
}
