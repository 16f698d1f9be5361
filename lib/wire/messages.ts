/**
 * Every frame on both hops (client ↔ local over the Unix socket, local ↔ server over TCP)
 * is one CBOR map with an `op`. Requests carry `rid`, chosen by the sender; replies echo it.
 * Deliveries (`msgs`) and acknowledgements to the server (`ack` without rid) carry none.
 * The field `id` is the local id on the client hop and the global id on the server hop.
 */
import { headersProblem, headersSize, type Headers } from "./headers.ts";
import { capabilities, DRAIN_CAP, MSGS_IDS_CAP, ops, type FieldType, type Op, type RequestOf, type Schema } from "./ops.ts";

export const PROTOCOL_VERSION = 1;

/** Where a new subscription starts: the oldest stored message, the next one published, or a seq (inclusive). */
export type From = "earliest" | "latest" | number;

// The request types are derived from the table of operations (ops.ts), which documents them.
export type HelloRequest = RequestOf<"hello">;
export type CreateRequest = RequestOf<"create">;
export type PubRequest = RequestOf<"pub">;
export type PubsRequest = RequestOf<"pubs">;
export type SubRequest = RequestOf<"sub">;
export type UnsubRequest = RequestOf<"unsub">;
export type RecvRequest = RequestOf<"recv">;
export type AckRequest = RequestOf<"ack">;
export type NakRequest = RequestOf<"nak">;
export type DestroyRequest = RequestOf<"destroy">;
export type BufferedRequest = RequestOf<"buffered">;
export type TopicsRequest = RequestOf<"topics">;
export type StatsRequest = RequestOf<"stats">;
export type FollowRequest = RequestOf<"follow">;
export type CreditRequest = RequestOf<"credit">;
export type UnfollowRequest = RequestOf<"unfollow">;

export type Request = { [K in Op]: RequestOf<K> }[Op];

/** A request as a caller writes it: the connection assigns the `rid`. */
export type Outgoing = Request extends infer R ? (R extends Request ? Omit<R, "rid"> : never) : never;

/**
 * Server → local push of consecutive stored messages of one topic for one subscriber:
 * message i has seq `seq + i`, append time `times[i]` and payload `payloads[i]`.
 * One frame per push batch keeps the per-message cost to two array elements.
 * `lost`: the server lost this many messages right before `seq` (damaged storage); the
 * subscriber will never get them.
 * `headers` (only when some message of the frame has headers): one map per payload, `{}` for
 * none. `expires` (only when some message has a TTL): one expiry per payload, in ms since the
 * epoch, 0 for none.
 * `ids` (only to a local broker that announced MSGS_IDS_CAP): the frame is also for these
 * global ids, besides `id`, each with the same messages, `more` and `lost`: the server sends a
 * message once per local broker, not once per subscribed id.
 */
export interface MsgsFrame { op: "msgs"; id: number; topic: string; seq: number; times: number[]; payloads: Uint8Array[]; more?: boolean; lost?: number; headers?: Headers[]; expires?: number[]; explicit?: boolean; ids?: number[] }
// `explicit`: the subscription acknowledges per message (a queue group, or --max-deliver): the
// local broker acks (and naks) exactly the seqs it was sent, with `seqs`.
// An empty `msgs` (no payloads, `more: true`) only says: the window is full and the log holds more.

/**
 * What one delivered message counts against the local broker's buffer budgets: its payload
 * plus an estimate of what holding it costs beyond the payload (objects, queue slots), so
 * that many tiny messages are bounded too. Server and local broker count alike.
 */
export const MESSAGE_OVERHEAD_BYTES = 128;
/** The bytes of a delivered message that `deliveryCost` counts: its payload, and its headers when it has some (up to 16 KiB each). */
export function messageBytes(m: { data: Uint8Array; headers?: Headers }): number {
  return m.headers === undefined ? m.data.length : m.data.length + headersSize(m.headers);
}
export function deliveryCost(payloadBytes: number): number {
  return payloadBytes + MESSAGE_OVERHEAD_BYTES;
}

/** Most messages one `msgs` frame may carry. */
export const MAX_MSGS_PER_FRAME = 1024;
/**
 * Local → client push of the follow of `id` (client hop): `messages` as in a recv reply, in
 * the id's order. With `code` (and `message`) the follow ended: the id is gone (destroyed,
 * or no longer known to the server); nothing more comes.
 */
export interface DeliveryFrame { op: "delivery"; id: number; messages: Message[]; code?: string; message?: string }
/** Most ids one `msgs` frame may be for besides its `id` (its `ids`). */
export const MAX_IDS_PER_FRAME = 1024;
export interface OkFrame { op: "ok"; rid: number; [field: string]: unknown }
/** `unsent`: the request reached no server (MqError.unsent); absent from older brokers. */
export interface ErrorFrame { op: "error"; rid?: number; code: string; message: string; unsent?: boolean }
/**
 * Heartbeat, server hop, either direction, no rid: a `ping` is answered with a `pong`. Any
 * bytes received count as a sign of life, so a busy connection carries no pings.
 */
export interface PingFrame { op: "ping" }
export interface PongFrame { op: "pong" }
/** Server → local broker, no answer: the server is stopping cleanly (ops.ts, DRAIN_CAP); the local broker answers `drained`. */
export interface DrainFrame { op: "drain" }
export type Frame = Request | MsgsFrame | DeliveryFrame | DrainFrame | OkFrame | ErrorFrame | PingFrame | PongFrame;

/**
 * A message as handed to the user. `time` is the server's append time in ms since the epoch.
 * `lost` (only when non-zero): the server lost this many messages of the topic right before
 * this one (damaged storage); they will never come. `headers` (only when the message has some):
 * as published. `expiresAt` (only with a TTL): when it expires, in ms since the epoch.
 */
export interface Message { topic: string; seq: number; time: number; data: Uint8Array; lost?: number; headers?: Headers; expiresAt?: number }

/**
 * `duplicate` (only when true): the message's `msgId` was stored before; `seq` is the original one and nothing was stored.
 * `scheduled` (only when true): a delayed publish, kept by the server until `due` (ms since the epoch); `seq` is 0 (none yet).
 */
export interface PubResult { topic: string; seq: number; subscribers: number; created: boolean; duplicate?: true; scheduled?: true; due?: number }
/** `lost` (only when non-zero): messages the server lost to damaged storage in this topic. */
export interface TopicInfo { topic: string; subscribers: number; messages: number; lost?: number }

/** One schema per frame type a peer may send us (the requests of the table, then the pushes); anything not listed is junk. */
export const schemas: Record<string, Schema> = {
  ...Object.fromEntries(Object.entries(ops).map(([op, spec]) => [op, spec.request])),
  msgs: { id: "uint", topic: "string", seq: "uint", times: "times", payloads: "payloads0", more: "bool?", lost: "uint?", headers: "headerslist?", expires: "times?", explicit: "bool?", ids: "ids?" },
  delivery: { id: "uint", messages: "deliveries", code: "string?", message: "string?" },
  /** Server → local broker: the server is stopping (ops.ts, DRAIN_CAP). */
  drain: {},
  ping: {},
  pong: {},
};

export { capabilities, DRAIN_CAP, MSGS_IDS_CAP };

/** Longest publisher message id, in bytes of UTF-8. */
export const MAX_MSG_ID_BYTES = 256;

/** True for a message id of 1 to MAX_MSG_ID_BYTES bytes of UTF-8. */
/** Message ids starting with NUL are the server's own (delayed messages' delivery keys): refused from clients. */
export const RESERVED_MSG_ID_START = "\0";

export function isMsgId(value: unknown): value is string {
  // Up to 3 UTF-8 bytes per UTF-16 unit: the byte count is needed only for long strings.
  // Well-formed: a lone surrogate is sent as U+FFFD, so two ids that differ only there would be one (the second message dropped as a duplicate).
  return typeof value === "string" && value.length > 0 && value[0] !== "\0" && value.isWellFormed() && (value.length * 3 <= MAX_MSG_ID_BYTES || Buffer.byteLength(value) <= MAX_MSG_ID_BYTES);
}

/** Longest `idPrefix` of a `pubs`: room is left for the number after it. */
export const MAX_ID_PREFIX_BYTES = 200;

/** True for an `idPrefix`: 1 to MAX_ID_PREFIX_BYTES bytes of UTF-8 ending with ":". */
export function isIdPrefix(value: unknown): value is string {
  return typeof value === "string" && value.endsWith(":") && value[0] !== "\0" && (value.length * 3 <= MAX_ID_PREFIX_BYTES || Buffer.byteLength(value) <= MAX_ID_PREFIX_BYTES);
}

/**
 * The cross-field rules of a `pubs`' ids, which the schema cannot say: `msgIds` has one key
 * per payload; `idPrefix` and `idFrom` come together, not with `msgIds`, and the last number
 * is a safe integer. Returns the problem, or null.
 */
export function pubsIdsProblem(frame: { payloads: unknown[]; msgIds?: string[]; idPrefix?: string; idFrom?: number }): string | null {
  if (frame.msgIds !== undefined && frame.msgIds.length !== frame.payloads.length) return `pubs: ${frame.msgIds.length} msgIds for ${frame.payloads.length} payloads; give one per payload`;
  if ((frame.idPrefix === undefined) !== (frame.idFrom === undefined)) return 'pubs: fields "idPrefix" and "idFrom" go together';
  if (frame.idPrefix !== undefined && frame.msgIds !== undefined) return 'pubs: give "msgIds" or "idPrefix" and "idFrom", not both';
  if (frame.idFrom !== undefined && frame.idFrom > Number.MAX_SAFE_INTEGER - (frame.payloads.length - 1)) return 'pubs: field "idFrom" is too big for the number of payloads';
  return null;
}

/** Most topics one sub/unsub request may name. */
export const MAX_TOPICS_PER_REQUEST = 1024;

/** Returns the reason `value` does not fit `type`, or null when it does. */
export function checkField(type: FieldType, value: unknown): string | null {
  switch (type) {
    case "uint":
      return Number.isSafeInteger(value) && (value as number) >= 0 ? null : "a non-negative integer";
    case "string":
      return typeof value === "string" ? null : "a string";
    case "bytes":
      return value instanceof Uint8Array ? null : "a byte string";
    case "topics":
      return Array.isArray(value) && value.length > 0 && value.length <= MAX_TOPICS_PER_REQUEST && value.every((t) => typeof t === "string")
        ? null
        : `an array of 1 to ${MAX_TOPICS_PER_REQUEST} strings`;
    case "bool":
      return typeof value === "boolean" ? null : "true or false";
    case "times":
      return Array.isArray(value) && value.length <= MAX_MSGS_PER_FRAME && value.every((v) => Number.isSafeInteger(v) && v >= 0)
        ? null
        : `an array of up to ${MAX_MSGS_PER_FRAME} non-negative integers`;
    case "payloads":
    case "payloads0": {
      const min = type === "payloads" ? 1 : 0;
      return Array.isArray(value) && value.length >= min && value.length <= MAX_MSGS_PER_FRAME && value.every((v) => v instanceof Uint8Array)
        ? null
        : `an array of ${min} to ${MAX_MSGS_PER_FRAME} byte strings`;
    }
    case "msgid":
      return isMsgId(value) ? null : `a string of 1 to ${MAX_MSG_ID_BYTES} bytes, not starting with NUL (reserved)`;
    case "msgids":
      return Array.isArray(value) && value.length >= 1 && value.length <= MAX_MSGS_PER_FRAME && value.every(isMsgId)
        ? null
        : `an array of 1 to ${MAX_MSGS_PER_FRAME} strings of 1 to ${MAX_MSG_ID_BYTES} bytes, not starting with NUL (reserved)`;
    case "seqs":
      return Array.isArray(value) && value.length >= 1 && value.length <= MAX_MSGS_PER_FRAME && value.every((v) => Number.isSafeInteger(v) && v >= 1)
        ? null
        : `an array of 1 to ${MAX_MSGS_PER_FRAME} seqs (integers >= 1)`;
    case "ids":
      return Array.isArray(value) && value.length >= 1 && value.length <= MAX_IDS_PER_FRAME && value.every((v) => Number.isSafeInteger(v) && v >= 0)
        ? null
        : `an array of 1 to ${MAX_IDS_PER_FRAME} ids (non-negative integers)`;
    case "idprefix":
      return isIdPrefix(value) ? null : `a string of 1 to ${MAX_ID_PREFIX_BYTES} bytes ending with ":", not starting with NUL (reserved)`;
    case "headers":
      return headersProblem(value);
    case "headerslist": {
      if (!Array.isArray(value) || value.length > MAX_MSGS_PER_FRAME) return `an array of up to ${MAX_MSGS_PER_FRAME} header maps`;
      for (const h of value) {
        const problem = headersProblem(h);
        if (problem) return `an array of header maps, each ${problem}`;
      }
      return null;
    }
    case "deliveries":
      // As a recv reply's messages, which are not checked either: only their count and shape.
      return Array.isArray(value) && value.length <= MAX_MSGS_PER_FRAME && value.every((m) => m !== null && typeof m === "object" && m.data instanceof Uint8Array)
        ? null
        : `an array of up to ${MAX_MSGS_PER_FRAME} messages`;
    case "ttl":
      return Number.isSafeInteger(value) && (value as number) >= 1 ? null : "a number of ms >= 1";
    case "from":
      return value === "earliest" || value === "latest" || (Number.isSafeInteger(value) && (value as number) >= 1)
        ? null
        : '"earliest", "latest" or a seq >= 1';
  }
}
