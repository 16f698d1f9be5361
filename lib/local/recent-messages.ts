/**
 * The messages this local broker was pushed lately, by topic and seq, so that the same message
 * pushed again for another id is held as one object whose CBOR is written once.
 *
 * The server sends a message once for all the ids of a broker that read it together (`ids` on
 * `msgs`), but ids whose consumers acknowledge at their own pace read apart, and then each
 * gets the message in a frame of its own (with 8 ids in recv loops, ~90 % of deliveries). Each
 * such push made its own objects, and each id's recv replies and `delivery` frames encoded
 * every message again. Now a push finds the object made for an earlier id's push (same topic,
 * seq, time and payload bytes) and uses it; the first time a message is found again, its CBOR
 * is written once (`encodeOnce`) for the deliveries of all the ids that hold it.
 *
 * Bounded: a fixed table of RECENT_SLOTS messages (a topic's consecutive seqs fill consecutive
 * slots), only payloads up to ENCODE_ONCE_MAX_BYTES, and no push with headers or expiries
 * (kept per push as before). A payload is a view of the bytes it came in (a socket read, or
 * the server's write buffer inside `mq up`), which it keeps alive: the table counts each such
 * buffer once when it starts holding messages of it, takes no more messages once that reaches
 * RECENT_PINNED_MAX_BYTES, and is emptied when nothing was pushed for 10 s (`tick`), so an
 * idle broker keeps nothing alive through it. A message in the table is never changed (as every
 * buffered one).
 */
import { encodeOnce, ENCODE_ONCE_MAX_BYTES, encodeOncePlain, isEncodedOnce, type PlainMessage } from "../wire/hot-frames.ts";
import type { Message, MsgsFrame } from "../wire/messages.ts";
import { pushedMessage } from "./pushed-extra.ts";

/**
 * Slots of the table (a power of 2): the seqs the ids of one topic may lie apart and still share.
 * 1,024, a subscription's smallest window: the server's shared frames (`ids`) carry most of a
 * fan-out now, and 16,384 kept that many message objects, and the server's write buffers they
 * are views of, alive in every `mq up` (docs/benchmarks.md, "what a fresh `mq up` held on to").
 */
export const RECENT_SLOTS = 1024;
/** About the most bytes the table keeps alive: the buffers its messages' payloads are views of. */
export const RECENT_PINNED_MAX_BYTES = 32 * 1024 * 1024;
/** Ticks (seconds) without a push after which the table is emptied. */
export const RECENT_IDLE_TICKS = 10;

export class RecentMessages {
  private readonly slots = new Array<Message | undefined>(RECENT_SLOTS);
  /** The bytes charged for each slot's message: its buffer's size when it was the first message tabled from that buffer, else 0. */
  private readonly charged = new Float64Array(RECENT_SLOTS);
  /** The sum of `charged`. */
  private pinned = 0;
  /** The buffer of the message tabled last (those after it from the same buffer cost nothing more). */
  private lastBuffer: ArrayBufferLike | null = null;
  private pushedSinceTick = false;
  private idleTicks = 0;
  private lastTopic = "";
  private lastHash = 0;
  /** `counters.reused` counts the messages taken from the table instead of made anew (the local broker's counter). */
  constructor(private readonly counters: { reused: number }) {}

  /**
   * The messages of push `frame`, one per payload: those pushed before for another id as the
   * same objects. Messages shared now are encoded once: those found again (when not encoded
   * yet), and all of a frame for several ids (`ids`). The first message of a frame with
   * `lost` is made, not shared: each id gets its own copy of it (local.ts `pushedTo`).
   */
  messagesOf(frame: MsgsFrame): Message[] {
    const n = frame.payloads.length;
    const messages = new Array<Message>(n);
    if (frame.headers || frame.expires) {
      for (let i = 0; i < n; i++) messages[i] = pushedMessage(frame, i, false);
      if (frame.ids) encodeOnce(frame.lost ? messages.slice(1) : messages);
      return messages;
    }
    this.pushedSinceTick = true;
    const topic = frame.topic;
    const hash = this.hashOf(topic);
    const slots = this.slots;
    let toEncode: Message[] | undefined;
    for (let i = 0; i < n; i++) {
      const data = frame.payloads[i]!;
      if (data.length > ENCODE_ONCE_MAX_BYTES) {
        messages[i] = pushedMessage(frame, i, false);
        continue;
      }
      const seq = frame.seq + i;
      const slot = (hash + seq) & (RECENT_SLOTS - 1);
      const found = slots[slot];
      if (found !== undefined && found.seq === seq && found.time === frame.times[i] && found.topic === topic && sameBytes(found.data, data)) {
        messages[i] = found;
        this.counters.reused++;
        if (!isEncodedOnce(found)) (toEncode ??= []).push(found);
        continue;
      }
      const made = pushedMessage(frame, i, false);
      messages[i] = made;
      const buffer = data.buffer;
      const charge = buffer === this.lastBuffer ? 0 : buffer.byteLength;
      if (this.pinned - this.charged[slot]! + charge <= RECENT_PINNED_MAX_BYTES) {
        this.pinned += charge - this.charged[slot]!;
        this.charged[slot] = charge;
        slots[slot] = made;
        this.lastBuffer = buffer;
      }
      if (frame.ids && !(i === 0 && frame.lost)) (toEncode ??= []).push(made);
    }
    // Without headers, expiries or `lost`, pushedMessage made each as a PlainMessage.
    if (toEncode) encodeOncePlain(toEncode as PlainMessage[]);
    return messages;
  }

  /** Called every second: after RECENT_IDLE_TICKS of them without pushes the table is emptied, keeping nothing alive. */
  tick(): void {
    if (this.pushedSinceTick) this.idleTicks = 0;
    else if (++this.idleTicks >= RECENT_IDLE_TICKS && this.lastBuffer !== null) {
      this.slots.fill(undefined);
      this.charged.fill(0);
      this.pinned = 0;
      this.lastBuffer = null;
    }
    this.pushedSinceTick = false;
  }

  /** A string hash of the topic, remembered for the next push of the same topic. */
  private hashOf(topic: string): number {
    if (topic === this.lastTopic) return this.lastHash;
    let hash = 0;
    for (let i = 0; i < topic.length; i++) hash = (Math.imul(hash, 31) + topic.charCodeAt(i)) | 0;
    this.lastTopic = topic;
    this.lastHash = hash;
    return hash;
  }
}

/** The same bytes: the same view (the link inside `mq up` passes the server's own), or equal contents. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a === b || (a.length === b.length && Buffer.compare(a, b) === 0);
}
