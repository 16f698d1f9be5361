/**
 * The table of operations: one entry per request op, saying its request schema, the fields
 * of its `ok` reply, which hops serve it, and how its `id` is translated on the local hop.
 * The request types (messages.ts), the runtime schemas the codec validates against, the
 * dispatch maps of the server and the local broker, and the capabilities announced in the
 * hello are all derived from it: a new op is one entry here plus a handler per hop.
 */
import type { Headers } from "./headers.ts";
import type { From, Message } from "./messages.ts";

/** Field types the validator knows (checkField); a trailing `?` marks a field optional. */
export type FieldType = "uint" | "string" | "bytes" | "topics" | "from" | "times" | "payloads" | "payloads0" | "bool" | "msgid" | "msgids" | "idprefix" | "headers" | "headerslist" | "ttl" | "seqs" | "deliveries" | "ids";
export type Schema = Readonly<Record<string, FieldType | `${FieldType}?`>>;

/** The TypeScript type of a value that passes checkField for each field type. */
interface FieldTypes {
  uint: number;
  string: string;
  bytes: Uint8Array;
  topics: string[];
  from: From;
  times: number[];
  payloads: Uint8Array[];
  payloads0: Uint8Array[];
  bool: boolean;
  msgid: string;
  msgids: string[];
  idprefix: string;
  headers: Headers;
  headerslist: Headers[];
  ttl: number;
  seqs: number[];
  deliveries: Message[];
  ids: number[];
}

type Flat<T> = { [K in keyof T]: T[K] };
type RequiredKeys<S> = { [K in keyof S]: S[K] extends `${string}?` ? never : K }[keyof S];
type OptionalKeys<S> = Exclude<keyof S, RequiredKeys<S>>;
type FieldOf<T> = T extends `${infer F extends FieldType}?` ? FieldTypes[F] : T extends FieldType ? FieldTypes[T] : never;
/** The frame type a schema describes: `op` plus its required and optional fields. */
export type FrameOf<Op extends string, S> = Flat<{ op: Op } & { -readonly [K in RequiredKeys<S>]: FieldOf<S[K]> } & { -readonly [K in OptionalKeys<S>]?: FieldOf<S[K]> }>;

/**
 * How the `id` field of a request is translated when the local broker forwards it:
 * `none`: the op has no id; `global`: the client's local id becomes its global id (the
 * server answers UNKNOWN_ID for a global id it no longer knows, and the local id is then
 * marked gone); `local-only`: the op is served by the local broker and never forwarded.
 */
export type IdTranslation = "none" | "global" | "local-only";

interface OpSpec {
  readonly request: Schema;
  /** Fields of the `ok` reply (documentation and the capability tests; replies are not schema-checked). */
  readonly reply: readonly string[];
  /** Served by the local broker to clients (client hop) / by the server to local brokers (server hop). */
  readonly client: boolean;
  readonly server: boolean;
  readonly id: IdTranslation;
}

export const ops = {
  /**
   * Server hop: `broker` is the local broker's identity (public), `secret` the credential the
   * server binds to it at first contact (docs/security.md), `token` the shared `--token-file`;
   * `bufferBytes` / `bufferBytesPerId` are its budgets for deliveries it holds (whole broker /
   * per id, counted as `deliveryCost`); absent: no budget beyond the per-subscription window.
   * `caps`: the ops the sender serves (an array of op names; see `capabilities`).
   */
  hello: {
    request: { rid: "uint", version: "uint", broker: "string?", secret: "string?", token: "string?", bufferBytes: "uint?", bufferBytesPerId: "uint?", caps: "topics?" },
    reply: ["version", "maxMessageBytes", "maxInFlight", "lost", "caps"],
    client: true,
    server: true,
    id: "none",
  },
  create: { request: { rid: "uint" }, reply: ["id"], client: true, server: true, id: "none" },
  /**
   * `msgId`: the publisher's key for this message (1 to MAX_MSG_ID_BYTES bytes of UTF-8). A key
   * the topic already stored within the server's dedupe window is not stored again: the reply
   * has the original `seq` and `duplicate: true`.
   * `delayMs` (from the server's clock) or `at` (ms since the epoch), not both: a delayed
   * message, kept in the server's schedule and appended when due; the reply is
   * `{topic, scheduled: true, due, subscribers, created}` with no seq (docs/semantics.md).
   * `headers`: string keys to string values stored and delivered with the message (headers.ts).
   * `ttl`: ms; the message expires that long after its append and is never delivered after.
   * `after`: the msgId of the publish just before this one on the topic, still unanswered
   * when this was sent; the message is stored only if that one is stored (or being stored
   * ahead of it), else UNAVAILABLE and nothing stored (lib/server/pub-order.ts). Not with
   * `delayMs` / `at`.
   */
  pub: {
    request: { rid: "uint", id: "uint", topic: "string", data: "bytes", msgId: "msgid?", headers: "headers?", ttl: "ttl?", delayMs: "uint?", at: "uint?", after: "msgid?" },
    reply: ["topic", "seq", "subscribers", "created", "duplicate", "scheduled", "due"],
    client: true,
    server: true,
    id: "global",
  },
  /**
   * Several messages for one topic in one request (the client library batches publishes made
   * together). The new ones get consecutive seqs; the reply has `seqs`. All are stored or none.
   * `msgIds`: one key per payload (as `pub`'s `msgId`). Or, for a run of keys that differ only
   * by a number (what the library sends), `idPrefix` + `idFrom`: payload i has the key
   * `${idPrefix}${idFrom + i}`, the same key as that string sent in `msgIds`. The reply's
   * `duplicates` lists the indexes of the payloads that were already stored (their `seqs`
   * are the original ones). `delayMs` / `at`: as `pub`, for every payload (one due time).
   * `headers`: one map per payload (`{}` for a payload without); `ttl` applies to every payload.
   * `after`: as `pub`'s, for the whole request.
   */
  pubs: {
    request: { rid: "uint", id: "uint", topic: "string", payloads: "payloads", msgIds: "msgids?", idPrefix: "idprefix?", idFrom: "uint?", headers: "headerslist?", ttl: "ttl?", delayMs: "uint?", at: "uint?", after: "msgid?" },
    reply: ["topic", "seqs", "subscribers", "created", "duplicates", "scheduled", "due"],
    client: true,
    server: true,
    id: "global",
  },
  /**
   * `topics`: topic names or patterns (`*`: one token, `>`: one or more trailing tokens).
   * `since` (ms since the epoch): start each topic at its first message appended at or after
   * it; not with `from`. A reply entry of a pattern has `pattern: true` and `matched`.
   * `group`: join the queue group of that name on each topic (each message goes to one member);
   * `maxDeliver`: deliveries of a message before it goes to the dead-letter topic `deadLetter`
   * (default `<topic>.dlq`). Either makes acknowledgements per message (explicit).
   */
  sub: { request: { rid: "uint", id: "uint", topics: "topics", from: "from?", since: "uint?", group: "string?", maxDeliver: "uint?", deadLetter: "string?" }, reply: ["topics"], client: true, server: true, id: "global" },
  /** A reply entry's `dropped`: the topics whose subscription ended (no other filter of the id matches them). */
  unsub: { request: { rid: "uint", id: "uint", topics: "topics" }, reply: ["topics"], client: true, server: true, id: "global" },
  /** Client hop only: up to `max` pending messages, waiting up to `wait` ms for the first. */
  recv: { request: { rid: "uint", id: "uint", max: "uint", wait: "uint" }, reply: ["messages", "tag", "more"], client: true, server: false, id: "local-only" },
  /**
   * Client hop: `tag` from a recv reply, the messages have reached the user; with `count`, only
   * the first `count` of them did, and the rest go back to the front of the id's buffer.
   * Server hop (no rid): every message of `topic` up to `seq` reached the client (cumulative);
   * or, for an explicit subscription (its `msgs` carry `explicit`), exactly the seqs `seqs`.
   * The two are different acks: the local broker serves the first and sends the second itself.
   */
  ack: { request: { rid: "uint?", id: "uint", tag: "uint?", count: "uint?", topic: "string?", seq: "uint?", seqs: "seqs?" }, reply: [], client: true, server: true, id: "local-only" },
  /**
   * Client hop: the messages of delivery `tag` were not processed: they go back for
   * redelivery (explicit subscriptions: to the server, which counts the delivery; cumulative
   * ones: to the front of the id's buffer). Server hop (no rid): the seqs `seqs` of `topic`
   * go back to the subscription (or its group) for redelivery.
   */
  nak: { request: { rid: "uint?", id: "uint", tag: "uint?", topic: "string?", seqs: "seqs?" }, reply: [], client: true, server: true, id: "local-only" },
  destroy: { request: { rid: "uint", id: "uint" }, reply: [], client: true, server: true, id: "global" },
  /**
   * Server hop only, no rid (no answer), sent by the local broker right before an `unsub` or
   * `destroy`: the seqs `seqs` of the explicit subscription of `id` to `topic` are still in its
   * buffer, never handed to a client. Should the subscription end with them in flight, they go
   * back to the group without counting a delivery (toward --max-deliver). Sent only to a
   * server that announces it in `caps`; without it, they count (docs/semantics.md).
   */
  buffered: { request: { id: "uint", topic: "string", seqs: "seqs" }, reply: [], client: false, server: true, id: "local-only" },
  /**
   * Server hop only, no rid (no answer): the local broker's reply to a `drain` push (below):
   * its clients acknowledged what they held (or it stopped waiting), and it hands out nothing
   * more until the session ends.
   */
  drained: { request: {}, reply: [], client: false, server: true, id: "none" },
  topics: { request: { rid: "uint" }, reply: ["topics"], client: true, server: true, id: "none" },
  /**
   * Client hop only: push delivery (docs/protocol.md, "Push delivery"). From the `ok` on, the
   * local broker pushes `delivery` frames of the id's messages to this connection as they
   * arrive, never more than `credits` messages (and `bytes` payload bytes, when given; one
   * message may go beyond when none is unacknowledged) unacknowledged at once.
   */
  follow: { request: { rid: "uint", id: "uint", credits: "uint", bytes: "uint?" }, reply: [], client: true, server: false, id: "local-only" },
  /**
   * Client hop only, usually without rid (no answer): the first `acked` messages pushed by
   * the follow of `id` and not yet acknowledged reached the user (cumulative, in push order),
   * and the client may take `credits` more messages and `bytes` more bytes.
   */
  credit: { request: { rid: "uint?", id: "uint", acked: "uint?", credits: "uint?", bytes: "uint?" }, reply: [], client: true, server: false, id: "local-only" },
  /** Client hop only: ends the follow of `id`; what it pushed and was not acknowledged goes back to the id's buffer. */
  unfollow: { request: { rid: "uint", id: "uint" }, reply: [], client: true, server: false, id: "local-only" },
  /** The local broker answers with its own counters beside the server's. */
  stats: { request: { rid: "uint" }, reply: ["server", "local", "serverError"], client: true, server: true, id: "local-only" },
} as const satisfies Record<string, OpSpec>;

export type Op = keyof typeof ops;
/** The request frame of `op`, derived from its schema. */
export type RequestOf<K extends Op> = FrameOf<K, (typeof ops)[K]["request"]>;
/** Ops each hop serves. */
export type ClientOp = { [K in Op]: (typeof ops)[K]["client"] extends true ? K : never }[Op];
export type ServerOp = { [K in Op]: (typeof ops)[K]["server"] extends true ? K : never }[Op];

export const opNames = Object.keys(ops) as Op[];

/**
 * What a peer announces in `caps` of its hello (request and reply): the ops it serves on
 * that hop, `hello` left out (every peer serves it). A peer that announces no `caps` is
 * older than the table; it is assumed to serve what it served then, and refuses what it
 * does not know with UNKNOWN_OP itself.
 */
export function capabilities(hop: "client" | "server"): string[] {
  return opNames.filter((op) => op !== "hello" && ops[op][hop]);
}

/**
 * Announced by a local broker in the `caps` of its hello to the server, beside the ops: it
 * takes `msgs` frames with `ids` (one frame for several of its ids). A server pushes such
 * frames only to a local broker that announced it; to others, one frame per id.
 */
export const MSGS_IDS_CAP = "msgs.ids";

/**
 * Announced by a local broker in the `caps` of its hello to the server: it takes the `drain`
 * push. A server stopping cleanly sends `drain` to such brokers and waits (a moment) for
 * their `drained`: acknowledgements of messages in their clients' hands reach it before the
 * session ends, instead of those messages going back to their group and coming again.
 */
export const DRAIN_CAP = "drain";
