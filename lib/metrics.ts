/**
 * The metrics registry: every number `mq stats` shows is declared here once, with its kind,
 * unit and help text. The server and the local broker keep their counters as plain objects
 * made by `defineCounters` (incremented directly: `counters.published += n`, nothing on the
 * hot path), and build their `stats` answer typed by these declarations; /metrics renders
 * them by these declarations (PromText.section, lib/http/prometheus.ts).
 *
 * No dependency on the server or the local broker: the CLI and the client read it too.
 */

/**
 * counter: only goes up (since the daemon started); gauge: a value now; info: a text value
 * (rendered as a `…_info` gauge of 1 with the text as a label).
 */
export type MetricKind = "counter" | "gauge" | "info";

export interface Metric<V = unknown> {
  kind: MetricKind;
  /** What the number counts: `messages`, `bytes`, `seconds`, …; empty for a plain number. */
  unit: string;
  help: string;
  /** The JSON type of its value in a stats answer (`optional`: absent in some configurations). */
  json: "number" | "number|null" | "optional number" | "boolean" | "string" | "entries";
  /** Labelled: the value is a list of `{label…, [field]: number}` (one series per entry). */
  labels?: readonly string[];
  /** The entries' number field (labelled metrics only). */
  field?: string;
  /** Phantom: the type of the value in a stats answer. */
  readonly _value?: V;
}

export const counter = (unit: string, help: string): Metric<number> => ({ kind: "counter", unit, help, json: "number" });
export const gauge = (unit: string, help: string): Metric<number> => ({ kind: "gauge", unit, help, json: "number" });
/** A gauge that may be unknown (null: it could not be read now). */
export const gaugeOrNull = (unit: string, help: string): Metric<number | null> => ({ kind: "gauge", unit, help, json: "number|null" });
/** A gauge only some configurations have (absent from the answer otherwise). */
export const optionalGauge = (unit: string, help: string): Metric<number | undefined> => ({ kind: "gauge", unit, help, json: "optional number" });
/** A counter only some configurations have (absent from the answer otherwise). */
export const optionalCounter = (unit: string, help: string): Metric<number | undefined> => ({ kind: "counter", unit, help, json: "optional number" });
/** A yes/no gauge (1/0 when rendered). */
export const flag = (help: string): Metric<boolean> => ({ kind: "gauge", unit: "", help, json: "boolean" });
export const info = (help: string): Metric<string> => ({ kind: "info", unit: "", help, json: "string" });

/** A counter per combination of labels: in stats a list of entries `E`, e.g. `{topic, dropped}` (labels `topic`, field `dropped`). */
export function labelledCounter<E extends Record<string, unknown>>(labels: readonly (keyof E & string)[], field: keyof E & string, unit: string, help: string): Metric<E[]> {
  return { kind: "counter", unit, help, json: "entries", labels, field };
}

export type Metrics = Record<string, Metric>;

/** The typed stats answer of a set of declarations. */
export type Sample<M extends Metrics> = { -readonly [K in keyof M as undefined extends ValueOf<M[K]> ? never : K]: ValueOf<M[K]> } & {
  -readonly [K in keyof M as undefined extends ValueOf<M[K]> ? K : never]?: Exclude<ValueOf<M[K]>, undefined>;
};
type ValueOf<T> = T extends Metric<infer V> ? V : never;

/**
 * The counters object a daemon increments directly (`counters.published += n`): one field per
 * declared counter, at 0, in declaration order (so that spreading it into a stats answer keeps
 * that order).
 */
export function defineCounters<C extends Record<string, Metric<number>>>(declared: C): { -readonly [K in keyof C]: number } {
  const out = {} as Record<string, number>;
  for (const [name, m] of Object.entries(declared)) {
    if (m.kind !== "counter" || m.labels) throw new Error(`metrics: ${name} is not declared as a plain counter`);
    out[name] = 0;
  }
  return out as { -readonly [K in keyof C]: number };
}

// -----------------------------------------------------------------------------------------
// Declarations

/** The server's counters (`MqServer.counters`): add one here, then increment it in place. */
export const SERVER_COUNTERS = {
  published: counter("messages", "Messages stored."),
  duplicates: counter("messages", "Publishes answered from the dedupe window (nothing stored)."),
  delivered: counter("messages", "Messages pushed to local brokers (a re-send after a reconnect counts again)."),
  fanout_shared: counter("messages", "Of `delivered`, those sent to an id in a frame sent for another id of the same local broker too (read and encoded once for both)."),
  acked: counter("messages", "Messages acknowledged by local brokers."),
  accepted: counter("connections", "Connections accepted."),
  rejected: counter("connections", "Connections refused (--max-connections)."),
  dead_lettered: counter("messages", "Messages moved to a dead-letter topic after --max-deliver deliveries without an ack."),
  dead_letters_dropped: counter("messages", "Dead letters that reached --max-deliver again: dropped, not dead-lettered a second time."),
  expired: counter("messages", "Messages skipped at delivery because their TTL ran out (never delivered)."),
  pattern_skipped: counter("subscriptions", "New topics a pattern matched that its id was not subscribed to, as it was at --max-subscriptions-per-id."),
} as const satisfies Metrics;

/** `server` in `mq stats`, in the order shown. */
export const SERVER_METRICS = {
  uptime_s: gauge("seconds", "Seconds since the server started."),
  topics: gauge("topics", "Topics that exist."),
  max_topics: gauge("topics", "Most topics allowed (--max-topics)."),
  open_files: optionalGauge("files", "Topic files open now (file store only)."),
  max_open_files: optionalGauge("files", "Most topic files kept open at once (file store only)."),
  tail_cache_bytes: optionalGauge("bytes", "Newest messages held in memory for subscriptions that have yet to read them (file store only): payload + 64 B each, at most 8 MiB a topic, 64 MiB in all."),
  ids: gauge("ids", "Client ids that exist."),
  sessions: gauge("sessions", "Local brokers connected and past their hello."),
  connections: gauge("connections", "TCP connections open."),
  delivery_window_max: gauge("messages", "Largest delivery window of any subscription or queue-group member now: grown with its link's bandwidth × round trip, at least 1024 (a queue-group member's 256; docs/architecture.md)."),
  ...SERVER_COUNTERS,
  dedupe_keys: gauge("entries", "Entries in the dedupe window."),
  dedupe_evicted: counter("ids", "Message ids forgotten before the end of the dedupe window (--dedupe-max-keys reached)."),
  scheduled: gauge("messages", "Delayed messages pending (--delay / --at), waiting for their due time."),
  scheduled_bytes: gauge("bytes", "Payload bytes of the delayed messages pending (at most --max-scheduled-bytes)."),
  scheduled_delivered: counter("messages", "Delayed messages appended to their topic since the start (not those the dedupe window dropped)."),
  lost: gauge("messages", "Messages lost to damaged storage, all topics (kept across restarts)."),
  store_events: optionalCounter("events", "Events of other servers sharing the store (postgres only): hints to re-read what they changed."),
  store_refreshes: optionalCounter("reads", "Topic extents re-read after other servers' appends (postgres only): the appends of one topic in one turn of the event loop cost one."),
  retention_dropped: labelledCounter<{ global_id: number; id?: number; topic: string; dropped: number }>(
    ["global_id", "id", "topic"],
    "dropped",
    "messages",
    "Messages deleted by the hard retention limit (--retention-limit hard) before the server pushed them to the subscriber's local broker, per subscriber (global id, topic; id: the local id, added by the local broker that owns it).",
  ),
  rss_bytes: gaugeOrNull("bytes", "Resident set size of the server process (null when it cannot be read)."),
} as const satisfies Metrics;

/** The local broker's counters (`LocalBroker.counters`): add one here, then increment it in place. */
export const LOCAL_COUNTERS = {
  received: counter("messages", "Messages received from the server (duplicates not counted)."),
  delivered: counter("messages", "Messages handed to clients."),
  pushed: counter("messages", "Messages of those pushed to clients that follow an id (push delivery), not asked for by a recv."),
  duplicates: counter("messages", "Messages the server sent again that this broker already had."),
  reused: counter("messages", "Pushed messages found made already for an earlier push (mostly another id's, in a frame of its own): held and encoded once for all."),
  forwarded: counter("requests", "Requests forwarded to the server."),
  reconnects: counter("reconnects", "Connections to the server lost and made again."),
  failovers: counter("failovers", "Connections made to another server of the --server list than the one last connected to."),
  expired: counter("messages", "Buffered messages dropped at recv because their TTL ran out (never delivered)."),
} as const satisfies Metrics;

/** `local` in `mq stats`, in the order shown. */
export const LOCAL_METRICS = {
  identity: info("The local broker's identity (its name at the server)."),
  server: info("The server address it is connected to (or, while away, the one it tries now)."),
  connected: flag("The connection to the server is up."),
  ids: gauge("ids", "Client ids of this host."),
  clients: gauge("clients", "Client connections open."),
  pending: gauge("messages", "Messages held for clients, not yet acknowledged."),
  buffered_bytes: gauge("bytes", "Payload bytes held for clients, all ids."),
  buffered_bytes_max_id: gauge("bytes", "Payload bytes held for the id that holds the most."),
  buffer_bytes: gauge("bytes", "Budget of held bytes, all ids (--buffer-bytes)."),
  buffer_bytes_per_id: gauge("bytes", "Budget of held bytes per id (--buffer-bytes-per-id)."),
  forward_window: gauge("requests", "Requests this broker may have forwarded to the server and unanswered now: grown with the link's request rate × round trip, 256 to 4096 (and at most half the server's --max-inflight)."),
  forward_window_bytes: gauge("bytes", "Payload bytes of publishes it may have forwarded and unanswered now: 4 MiB to 64 MiB, grown the same way."),
  forwarding: gauge("requests", "Requests forwarded to the server and not answered yet (or waiting for the server)."),
  ...LOCAL_COUNTERS,
  rss_bytes: gauge("bytes", "Resident set size of the local broker process."),
} as const satisfies Metrics;

export type ServerStats = Sample<typeof SERVER_METRICS>;
export type LocalStats = Sample<typeof LOCAL_METRICS>;
export type RetentionDrop = ServerStats["retention_dropped"][number];
