/** A received message as the library hands it to its user. */
import type { Headers } from "../wire/headers.ts";
import { setDeliveredMessageFactory } from "../wire/hot-decode.ts";
import type { Message as WireMessage } from "../wire/messages.ts";

const utf8 = new TextDecoder();

/**
 * One message of a topic: `seq` is its position in the topic (from 1), `time` the server's
 * append time in ms since the epoch, `data` the payload bytes as published.
 */
export class Message implements WireMessage {
  /** Only on the first message after a hole: how many messages of the topic the server lost right before this one (damaged storage). */
  readonly lost?: number;
  /** The headers it was published with; absent when none. */
  readonly headers?: Headers;
  /** Published with a TTL: when it expires, in ms since the epoch (it is never delivered after). */
  readonly expiresAt?: number;

  constructor(
    readonly topic: string,
    readonly seq: number,
    readonly time: number,
    readonly data: Uint8Array,
    lost?: number,
    headers?: Headers,
    expiresAt?: number,
  ) {
    if (lost) this.lost = lost;
    if (headers) this.headers = headers;
    if (expiresAt) this.expiresAt = expiresAt;
  }

  /** The payload decoded as UTF-8 (bytes that are not UTF-8 become U+FFFD). */
  text(): string {
    return utf8.decode(this.data);
  }

  /** The payload parsed as JSON; throws a SyntaxError when it is not JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

// Pushed messages are decoded straight into Messages (lib/wire/hot-decode.ts).
setDeliveredMessageFactory((topic, seq, time, data, lost, headers, expiresAt) => new Message(topic, seq, time, data, lost, headers, expiresAt));
