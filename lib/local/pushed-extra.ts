/** The headers and expiries of a `msgs` push, onto the messages the local broker buffers. */
import { plainMessage } from "../wire/hot-frames.ts";
import type { Message, MsgsFrame } from "../wire/messages.ts";

/** Why the `headers` / `expires` of a push do not fit its payloads, or null. */
export function pushedExtraProblem(frame: MsgsFrame): string | null {
  const n = frame.payloads.length;
  if (frame.headers && frame.headers.length !== n) return `msgs: ${frame.headers.length} header maps for ${n} payloads`;
  if (frame.expires && frame.expires.length !== n) return `msgs: ${frame.expires.length} expiries for ${n} payloads`;
  return null;
}

/**
 * Message `i` of push `frame`: `{ topic, seq, time, data }` in this order (what encodeOnce's
 * plain layout writes, lib/wire/hot-frames.ts; marked plain when that is all it has), then `lost` from the frame when `withLost`
 * (the first message, which the inbox may change), then its headers and expiry if any.
 */
export function pushedMessage(frame: MsgsFrame, i: number, withLost: boolean): Message {
  // Its four keys stay: the inbox changes only a `lost` the message has.
  if (!withLost && !frame.headers && !frame.expires) return plainMessage(frame.topic, frame.seq + i, frame.times[i]!, frame.payloads[i]!);
  const msg: Message = { topic: frame.topic, seq: frame.seq + i, time: frame.times[i]!, data: frame.payloads[i]! };
  if (withLost) msg.lost = frame.lost; // kept with the message, for its recv
  if (frame.headers || frame.expires) addPushedExtra(msg, frame, i);
  return msg;
}

/** Gives message `i` of the push its headers (an empty map: none) and expiry (0: none). */
export function addPushedExtra(msg: Message, frame: MsgsFrame, i: number): void {
  const headers = frame.headers?.[i];
  if (headers !== undefined && Object.keys(headers).length > 0) msg.headers = headers;
  const expiresAt = frame.expires?.[i];
  if (expiresAt) msg.expiresAt = expiresAt;
}
