/**
 * The TypeScript client: talks to the local broker over its Unix socket. The CLI is built
 * on it. Ids are local ids; errors are MqError with a stable `code`. The package entry is
 * `index.ts`; docs/library.md is the guide.
 *
 *     await using mq = await connect();
 *     const id = await mq.create();
 *     await mq.subscribe(id, ["orders"]);
 *     await mq.publish(id, "orders", '{"total": 12}');
 *     for await (const m of mq.messages(id)) console.log(m.topic, m.seq, m.json());
 */
import type { Socket } from "bun";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { DEFAULT_LOCAL_LIMITS, defaultSocketPath, MAX_DELAY_MS, MAX_SOCKET_PATH_BYTES, maxFrameBytes } from "../config.ts";
import { Code, MqError } from "../errors.ts";
import type { LocalStats, ServerStats } from "../metrics.ts";
import { Connection, type ConnectionHandler } from "../wire/connection.ts";
import { isMsgId, MAX_ID_PREFIX_BYTES, MAX_MSG_ID_BYTES, PROTOCOL_VERSION, type From, type Message as WireMessage, type PubResult, type Outgoing, type TopicInfo } from "../wire/messages.ts";
import { Message } from "./message.ts";
import { hasHeaders, headersProblem, headersSize } from "../wire/headers.ts";
import { bytesOfItem, EncodedArray, type HeldItem, ItemBlocks } from "../wire/hot-frames.ts";
import { checkOption, DEFAULT_FOLLOW_CREDITS, endFollows, Follow, MAX_FOLLOW_CREDITS, routeDelivery, type FollowBatch, type FollowOptions } from "./follow.ts";

export type { FollowBatch, FollowOptions };

export type { From, PubResult, TopicInfo };

/**
 * One filter of a subscribe. A topic: `from`, the seq its subscription starts at (or is at,
 * when it existed). A pattern: `pattern: true` and `matched`, the topics it matches now
 * with theirs; topics created later are matched from their first message.
 */
export interface SubResult {
  topic: string;
  from?: number;
  /** The topic's next seq when the subscription was made: `from` past it waits for messages not published yet. */
  next?: number;
  created: boolean;
  pattern?: true;
  /** Each topic the pattern matches now: its subscription's `from`, and the topic's `next` as above. */
  matched?: Array<{ topic: string; from: number; next?: number }>;
}

export interface ConnectOptions {
  /** Unix socket of the local broker; default `$MQ_SOCKET`, else the default path. */
  socket?: string;
  /**
   * The producer id (1-199 bytes): publishes without a `msgId` of their own get
   * `<producer>:<n>`, n = 1, 2, … per topic in call order, so that the server stores a
   * publish sent again (a retry) once. Default: 11 random characters, new for each client.
   * Give one only to send the same stream again (a re-run after a crash, publishing the same
   * messages to the same topic in the same order): a new stream under a producer id used
   * within the server's dedupe window is taken for duplicates. `false`: no automatic message
   * ids, and no retries of publishes without one.
   */
  producer?: string | false;
  /**
   * How long a publish that failed with UNAVAILABLE (the local broker or the server lost) is
   * sent again, in ms from its first failure; 0: never. Default 30 000. Only publishes with
   * a message id are retried.
   */
  retryMs?: number;
}

/** Options of one publish. */
export interface PublishOptions {
  /**
   * The message's id, 1–256 bytes of UTF-8: the server stores a message whose id its topic
   * already stored within its dedupe window (`mq server --dedupe-window`) only once, and
   * answers with the original seq and `duplicate: true`. Default: `<producer>:<n>`.
   */
  msgId?: string;
  /**
   * Delayed delivery: the server keeps the message and appends it to the topic this many ms
   * after it accepted it (its clock decides), or at `at` (ms since the epoch; in the past:
   * at once). Not both. The result then has `scheduled: true`, `due`, and `seq` 0 (the
   * message has no seq until it is appended). A delayed publish goes alone in its request.
   */
  delayMs?: number;
  at?: number;
  /**
   * Stored and delivered with the message (`message.headers`): keys of 1–128 bytes without
   * "=", control characters or spaces at either end; string values; at most 64 headers and
   * 16 KiB in all.
   */
  headers?: Record<string, string>;
  /** Time to live in ms (an integer >= 1): the message expires that long after the server stores it and is never delivered after. */
  ttlMs?: number;
}

/** A batch from `recv`: the messages, and the ack that tells the broker they reached the user. */
export interface Received {
  messages: Message[];
  /**
   * Acknowledges the batch; until then a crash of this process gives them to the next recv.
   * With `count`, only the first `count` messages reached the user: the rest go back to the
   * front of the id's queue, for the next recv. Call it once per batch.
   */
  ack(count?: number): Promise<void>;
  /**
   * The batch was not processed: its messages go back for redelivery. Those of an explicit
   * subscription (a queue group, or `maxDeliver`) go back to the server, which counts the
   * delivery (and may give them to another member of the group); the others go back to the
   * front of the id's queue. Call it instead of `ack`.
   */
  nak(): Promise<void>;
  /** More messages are pending: held by the local broker, or on the server beyond the credit window (they come after `ack`). */
  more: boolean;
  /**
   * Empty, and the local broker is not connected to its server now: messages published since
   * it lost the server have not reached it (they are kept there and come after it reconnects).
   */
  away: boolean;
}

const encoder = new TextEncoder();
/** The ops of push delivery (lib/client/follow.ts): newer than the `caps` of the hello. */
const PUSH_OPS = new Set(["follow", "credit", "unfollow"]);
const ANSWER_TIMEOUT_MS = 15_000;
/** A batch of publishes stays well inside the frame limit and the server's `msgs` bound. */
const MAX_BATCH_MESSAGES = 1024;
const MAX_BATCH_BYTES = 256 * 1024;
export const DEFAULT_RETRY_MS = 30_000;
/** Pause before sending a failed batch again: doubles from the first to the last, with jitter. */
const RETRY_FIRST_MS = 100;
/** A reconnect that failed is not tried again sooner than this: a caller's retry loop without a pause of its own does not spin. */
const RECONNECT_PAUSE_MS = 100;
const RETRY_MAX_MS = 1000;
/**
 * Batches in flight per topic: at most 16 × 1024 messages or 16 × 256 KiB, enough for a
 * 100 ms round trip at ~160,000 msgs/s of 128 B from one client.
 */
export const MAX_LANE_BATCHES = 16;

/** A publish waiting for its answer. */
interface Publish extends HeldItem {
  id: number;
  // From HeldItem: where its payload was copied at the call (the client's `payloads`), held until the publish is answered.
  /** The id given by the caller, or the `n` of `<producer>:<n>`; neither without a producer. */
  msgId: string | undefined;
  n: number;
  /** Delayed delivery (`PublishOptions.delayMs` / `at`): sent alone, as `pub`. */
  when?: { delayMs?: number; at?: number };
  /** Headers (undefined: none) and TTL in ms (0: none); a batch holds publishes of one TTL. */
  headers: Record<string, string> | undefined;
  ttl: number;
  resolve(r: PubResult): void;
  reject(err: unknown): void;
}

/**
 * The publishes of one topic, in call order. Up to MAX_LANE_BATCHES batches with message
 * ids are in flight at once, each sent with `after`, the last id of the batch before it
 * still unanswered: the server stores a batch only when that one is stored, so a batch that
 * failed is never overtaken (it and those after it are sent again, in order). A batch
 * without ids (`producer: false`) or delayed goes alone. Results are handed out in call order.
 */
interface Lane {
  topic: string;
  queue: Publish[];
  /** Index of the first publish of `queue` not yet sent. */
  head: number;
  /** Batches sent and not handed out yet, oldest first; `outcome` once answered (or failed for good). */
  sent: SentBatch[];
  /** Set by a publish that failed for good: every later publish to the topic fails with it, until `resume`. */
  failed: MqError | null;
  scheduled: boolean;
  /** The topic's entry of `MqClient.numbered` (one map lookup per publish, not three). */
  numbered: { n: number };
  /** Batches being sent again (the link is down): publishes wait, their payloads out of the shared blocks. */
  retrying: number;
}

interface SentBatch {
  batch: Publish[];
  outcome?: { reply: Record<string, unknown> } | { error: MqError };
  /** Settles when `outcome` is set: true when stored. */
  answered: Promise<boolean>;
  /** Set once its frame was written (it may be stored whatever its answer); a batch that waited for a reconnect that failed, or in the connection's queue (maxOutstanding) until it closed, never was. */
  written?: boolean;
}

/** A connection to the local broker at `socketPath`, its hello done; `caps`: the ops it serves (null: it did not say, an older one). */
async function open(socketPath: string): Promise<{ conn: Connection; maxMessageBytes: number; caps: Set<string> | null }> {
  const handler: ConnectionHandler = {
    // The one push on the client hop: deliveries of a follow.
    frame: (conn, frame) => void (frame.op === "delivery" && routeDelivery(conn, frame)),
    closed: (conn, reason) => endFollows(conn, new MqError(Code.Unavailable, `connection to ${conn.label} closed (${reason})`)),
  };
  let socket: Socket<Connection>;
  try {
    socket = await Bun.connect<Connection>({
      unix: socketPath,
      socket: {
        open: (s) => {
          s.data = new Connection(s, handler, { maxFrameBytes: maxFrameBytes(1024 * 1024 * 1024), label: `local broker at ${socketPath}` });
        },
        data: (s, chunk) => s.data?.onData(chunk),
        drain: (s) => s.data?.onDrain(),
        close: (s) => s.data?.onClose(),
        error: () => {},
      },
    });
  } catch (err) {
    throw new MqError(Code.Unavailable, whyNoBroker(socketPath, err), { cause: err });
  }
  const conn = socket.data;
  try {
    const hello = await conn.request({ op: "hello", version: PROTOCOL_VERSION }, ANSWER_TIMEOUT_MS);
    const caps = Array.isArray(hello.caps) ? new Set(hello.caps.filter((op): op is string => typeof op === "string")) : null;
    // What the local broker serves at once on a connection; more wait in the connection (one that does not say: the default).
    conn.maxOutstanding = Number.isSafeInteger(hello.maxInFlight) && (hello.maxInFlight as number) > 0 ? (hello.maxInFlight as number) : DEFAULT_LOCAL_LIMITS.maxInFlight;
    return { conn, maxMessageBytes: typeof hello.maxMessageBytes === "number" ? hello.maxMessageBytes : 0, caps };
  } catch (err) {
    conn.close();
    throw err;
  }
}

/** Why nothing answered at `socketPath`: missing, not a socket (a file, a directory), a socket nobody listens on, or a busy one. */
function whyNoBroker(socketPath: string, err: unknown): string {
  const start = "start one with `mq local` or `mq up`";
  const give = "give the socket of a running one (--socket, MQ_SOCKET)";
  const code = (err as NodeJS.ErrnoException)?.code;
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) return `the socket path ${socketPath} is ${bytes} bytes, and a Unix socket path may hold ${MAX_SOCKET_PATH_BYTES}: no local broker can listen there; give a shorter one (--socket, MQ_SOCKET)`;
  if (code === "EACCES") return `no permission to connect to the local broker's socket ${socketPath}: run as a user who may (the broker's user or group), or give another socket (--socket, MQ_SOCKET)`;
  let kind: string | null = null;
  try {
    const st = statSync(socketPath);
    kind = st.isSocket() ? "socket" : st.isDirectory() ? "a directory" : st.isFile() ? "a regular file" : st.isFIFO() ? "a FIFO" : "a device";
  } catch {
    // Missing (or not to be looked at): the usual case below.
  }
  if (kind === null || code === "ENOENT") return `no local broker at ${socketPath}: ${start}, or ${give}`;
  if (kind !== "socket") return `${socketPath} is ${kind}, not the socket of a local broker: give its socket (--socket, MQ_SOCKET), or ${start}`;
  if (code === "EAGAIN" || code === "EWOULDBLOCK") return `the local broker at ${socketPath} is not taking connections now (its queue of new connections is full): try again, or see its log`;
  return `no local broker listening at ${socketPath}, the socket of one that stopped? (${code ?? "refused"}): ${start}, or ${give}`;
}

export class MqClient {
  private readonly lanes = new Map<string, Lane>();
  /** Lanes whose publishes wait for the event loop to turn (a call sends them first, to keep the order of requests). */
  private readonly scheduled = new Set<Lane>();
  /** A batch fits in one frame: the server's frame limit is its message limit + 64 KiB. */
  private maxBatchBytes = 0;
  private maxBytes = 0;
  private reconnecting: Promise<Connection> | null = null;
  /** When the last reconnect failed, by performance.now() (0: it did not). */
  private reconnectFailedAt = 0;
  private closedByUser = false;
  /** Publishes numbered so far per topic (the `n` of `<producer>:<n>`); kept for the client's life, so no id is given twice. */
  private readonly numbered = new Map<string, { n: number }>();
  /** The prefix of automatic message ids; null: none. */
  readonly producer: string | null;
  private readonly retryMs: number;
  /** Several batches per topic in flight, chained by `after`; off once the local broker or server refuses the field (an older one). */
  private chaining = true;
  /** Where publishes copy their payloads: a batch's are then next to each other, one copy into its frame. */
  private readonly payloads = new ItemBlocks();

  private constructor(
    private conn: Connection,
    maxMessageBytes: number,
    /** The ops the local broker serves, from its hello (null: it did not say). */
    private caps: Set<string> | null,
    private readonly socketPath: string,
    options: ConnectOptions,
  ) {
    this.setMaxMessageBytes(maxMessageBytes);
    this.producer = options.producer === false ? null : (options.producer ?? randomBytes(8).toString("base64url"));
    this.retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  }

  /** Largest message the server accepts, learned from the hello. */
  get maxMessageBytes(): number {
    return this.maxBytes;
  }

  private setMaxMessageBytes(maxMessageBytes: number): void {
    this.maxBytes = maxMessageBytes;
    // Room for the request's other fields within maxFrameBytes(maxMessageBytes) = limit + 64 KiB.
    this.maxBatchBytes = maxMessageBytes > 0 ? Math.min(MAX_BATCH_BYTES, maxMessageBytes + 60 * 1024) : 60 * 1024;
  }

  /** Connects to the local broker; UNAVAILABLE (with the path) when none is listening. */
  static async connect(options: ConnectOptions = {}): Promise<MqClient> {
    if (options.producer !== undefined && options.producer !== false && !(typeof options.producer === "string" && options.producer.length > 0 && options.producer[0] !== "\0" && options.producer.isWellFormed() && Buffer.byteLength(options.producer) < MAX_ID_PREFIX_BYTES)) {
      throw new RangeError(`Cannot use producer id ${JSON.stringify(options.producer)}: it must be a string of 1 to ${MAX_ID_PREFIX_BYTES - 1} bytes not starting with NUL (reserved for the server), or false`);
    }
    if (options.retryMs !== undefined && !(Number.isFinite(options.retryMs) && options.retryMs >= 0)) {
      throw new RangeError(`Cannot retry publishes for ${options.retryMs} ms: retryMs must be a number >= 0`);
    }
    // An empty MQ_SOCKET is unset (as shells treat an empty variable), not the path "".
    const socketPath = options.socket ?? (process.env.MQ_SOCKET || defaultSocketPath());
    const { conn, maxMessageBytes, caps } = await open(socketPath);
    return new MqClient(conn, maxMessageBytes, caps, socketPath, options);
  }

  /** The connection, made again (once, for every caller) when the local broker was lost. */
  private connection(): Promise<Connection> {
    if (this.closedByUser) return Promise.reject(new MqError(Code.Unavailable, "the client is closed"));
    if (!this.conn.closed) return Promise.resolve(this.conn);
    // Monotonic, and at most the pause: a wall clock set back must not hold reconnects for the size of the step.
    const wait = Math.min(RECONNECT_PAUSE_MS, this.reconnectFailedAt + RECONNECT_PAUSE_MS - performance.now());
    this.reconnecting ??= (wait > 0 ? Bun.sleep(wait).then(() => this.closedByUser ? Promise.reject(new MqError(Code.Unavailable, "the client is closed")) : open(this.socketPath)) : open(this.socketPath)).then(
      ({ conn, maxMessageBytes, caps }) => {
        this.reconnecting = null;
        this.reconnectFailedAt = 0;
        if (this.closedByUser) {
          conn.close();
          throw new MqError(Code.Unavailable, "the client is closed");
        }
        this.conn = conn;
        this.caps = caps;
        this.setMaxMessageBytes(maxMessageBytes);
        return conn;
      },
      (err) => {
        this.reconnecting = null;
        this.reconnectFailedAt = performance.now();
        throw err;
      },
    );
    return this.reconnecting;
  }

  /**
   * One request. The local broker answers within seconds even when the server is away;
   * the timeout only guards against a local broker that accepts and then hangs.
   */
  private async call(frame: Outgoing, timeoutMs = ANSWER_TIMEOUT_MS, conn?: Connection): Promise<Record<string, unknown>> {
    // Publishes made before this call and not sent yet go first: requests keep the order they were made in.
    if (this.scheduled.size > 0) this.sendScheduled();
    return (conn ?? (this.conn.closed || this.closedByUser ? await this.connection() : this.conn)).request(frame, timeoutMs);
  }

  /** A new client id (the local id on this host). */
  async create(): Promise<number> {
    return (await this.call({ op: "create" })).id as number;
  }

  /**
   * Appends `data` to `topic` durably; the topic is created if it does not exist.
   *
   * Publishes made together (before the event loop turns) to the same id and topic travel
   * as one `pubs` request, like a Kafka producer's batch: each still resolves with its own
   * seq, in call order. Per topic, up to MAX_LANE_BATCHES batches are in flight, each
   * stored by the server only behind the one before it (`after`); one that fails with
   * UNAVAILABLE is sent again (same message ids) for up to `retryMs`, and those after it
   * wait for it. A publish that fails for good makes every later publish to its topic fail
   * too, until `resume(topic)`: what is stored of a topic is always a prefix of what was
   * published to it (docs/library.md, "Exactly once in the log").
   */
  publish(id: number, topic: string, data: Uint8Array | string, options: PublishOptions = NO_OPTIONS): Promise<PubResult> {
    if (this.closedByUser) return Promise.reject(new MqError(Code.Unavailable, "the client is closed"));
    if (options.msgId !== undefined && !isMsgId(options.msgId)) {
      return Promise.reject(new RangeError(`Cannot publish with msgId ${JSON.stringify(String(options.msgId).slice(0, 40))}: it must be a string of 1 to ${MAX_MSG_ID_BYTES} bytes of UTF-8 (no lone surrogate), not starting with NUL (reserved for the server)`));
    }
    const when = delayOf(options);
    if (typeof when === "string") return Promise.reject(new RangeError(when));
    if (options.headers !== undefined) {
      const problem = headersProblem(options.headers);
      if (problem) return Promise.reject(new RangeError(`Cannot publish with these headers: they must be ${problem}`));
    }
    if (options.ttlMs !== undefined && !(Number.isSafeInteger(options.ttlMs) && options.ttlMs >= 1)) {
      return Promise.reject(new RangeError(`Cannot publish with ttlMs ${String(options.ttlMs)}: it must be an integer number of ms >= 1`));
    }
    if (typeof data !== "string" && !isUint8Array(data)) {
      // Anything else (a number, an ArrayBuffer, another typed array) would be stored as the wrong bytes, or none.
      return Promise.reject(new TypeError(`Cannot publish ${kindOf(data)}: data must be a string or a Uint8Array (a Buffer is one; wrap an ArrayBuffer as new Uint8Array(buffer))`));
    }
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    // Checked here too: a message far above the limit would otherwise be cut off by the frame limit.
    if (this.maxBytes > 0 && bytes.length > this.maxBytes) {
      return Promise.reject(new MqError(Code.MessageTooLarge, `message of ${bytes.length} bytes is above the server's limit of ${this.maxBytes}`));
    }
    let lane = this.lanes.get(topic);
    if (!lane) this.lanes.set(topic, (lane = { topic, queue: [], head: 0, sent: [], failed: null, scheduled: false, numbered: this.numberedOf(topic), retrying: 0 }));
    if (lane.failed) return Promise.reject(notSent(topic, lane.failed));
    let n = 0;
    if (options.msgId === undefined && this.producer !== null) n = ++lane.numbered.n;
    const headers = hasHeaders(options.headers) ? { ...options.headers } : undefined;
    const queued: Publish = { id, block: NO_BYTES, start: 0, end: 0, blockOf: null, msgId: options.msgId, n, headers, ttl: options.ttlMs ?? 0, resolve: unsettled, reject: unsettled };
    // A copy: the batch goes out later, and the caller may reuse its buffer at once.
    this.payloads.bytes(bytes, queued, lane.retrying > 0);
    if (when) queued.when = when;
    settling = queued;
    const promise = new Promise<PubResult>(takeSettlers);
    lane.queue.push(queued);
    if (!lane.scheduled && lane.sent.length < MAX_LANE_BATCHES) {
      lane.scheduled = true;
      this.scheduled.add(lane);
      if (this.scheduled.size === 1) setImmediate(() => this.sendScheduled());
    }
    return promise;
  }

  private numberedOf(topic: string): { n: number } {
    let numbered = this.numbered.get(topic);
    if (!numbered) this.numbered.set(topic, (numbered = { n: 0 }));
    return numbered;
  }

  /**
   * After a publish to `topic` failed for good, later publishes to it fail too (nothing is
   * stored out of order); this lets them through again. Publishes that failed stay failed:
   * publish them again (with the same `msgId`, they are stored once) if they must go.
   */
  resume(topic: string): void {
    // A failed lane sends nothing more; what it still has in flight is chained behind the
    // failed batch, and was sent before anything of the new lane.
    if (this.lanes.get(topic)?.failed) this.lanes.delete(topic);
  }

  private sendScheduled(): void {
    for (const lane of this.scheduled) {
      lane.scheduled = false;
      this.fill(lane);
    }
    this.scheduled.clear();
  }

  /**
   * Sends the lane's next batches while it has room in flight. A batch goes with `after`
   * (the last id of the batch before it, unanswered yet) so that the server stores it only
   * behind that one; a batch that cannot be chained so goes alone.
   */
  private fill(lane: Lane): void {
    while (lane.head < lane.queue.length && !lane.failed && lane.sent.length < MAX_LANE_BATCHES) {
      const before = lane.sent.at(-1);
      const previous = before?.batch;
      const chained = this.chaining && chainable(lane.queue[lane.head]!);
      if (previous && !(chained && chainable(previous[0]!))) break;
      const batch = this.nextBatch(lane);
      const { promise: answered, resolve: answer } = Promise.withResolvers<boolean>();
      const entry: SentBatch = { batch, answered };
      lane.sent.push(entry);
      const last = previous?.at(-1);
      this.sendBatch(lane, entry, last && this.msgIdOf(last), before?.answered).then(
        (reply) => void (entry.outcome = { reply }),
        (err) => void (entry.outcome = { error: err instanceof MqError ? err : new MqError(Code.Internal, `publish failed: ${(err as Error).message}`, { cause: err }) }),
      ).then(() => {
        answer("reply" in entry.outcome!);
        this.settle(lane);
      });
      if (!chained) break;
    }
    if (lane.head > 1024 && lane.head * 2 > lane.queue.length) {
      lane.queue = lane.queue.slice(lane.head);
      lane.head = 0;
    }
  }

  /** Hands out the answers of the lane's batches in call order, as far as they came; then sends more. */
  private settle(lane: Lane): void {
    while (lane.sent[0]?.outcome) {
      const { batch, outcome, written } = lane.sent.shift() as SentBatch & Pick<Required<SentBatch>, "outcome">;
      // Answered for good: the batch is not sent again, its payloads' bytes may be written over.
      for (const p of batch) this.payloads.release(p);
      if ("error" in outcome) {
        if (lane.failed) {
          // Written, and failed on its own (the server refused it for being ahead of the failed one,
          // or the connection closed before its answer: then it may be stored): its own error, not "not sent".
          // Never written (it waited for a reconnect that failed): "not sent".
          const behind = written ? failedBehind(lane.topic, outcome.error, lane.failed) : notSent(lane.topic, lane.failed, outcome.error);
          for (const p of batch) p.reject(behind);
          continue;
        }
        // Failed for good: this batch, and every publish behind it not sent yet.
        lane.failed = outcome.error;
        for (const p of batch) p.reject(outcome.error);
        const rest = lane.queue.slice(lane.head);
        lane.queue = [];
        lane.head = 0;
        for (const p of rest) {
          this.payloads.release(p);
          p.reject(notSent(lane.topic, outcome.error));
        }
        continue;
      }
      // Stored (even behind a failed one: its answer says so, exactly).
      resolveBatch(lane.topic, batch, outcome.reply);
    }
    this.fill(lane);
    if (lane.sent.length === 0 && lane.head >= lane.queue.length) {
      lane.queue = [];
      lane.head = 0;
      if (!lane.failed && this.lanes.get(lane.topic) === lane) this.lanes.delete(lane.topic);
    }
  }

  /** The id a publish is sent with. */
  private msgIdOf(p: Publish): string | undefined {
    return p.msgId ?? (p.n > 0 ? `${this.producer}:${p.n}` : undefined);
  }

  /** The next publishes of the lane that go as one request: the same id, within the batch bounds. */
  private nextBatch(lane: Lane): Publish[] {
    const first = lane.queue[lane.head]!;
    let end = lane.head + 1;
    let bytes = first.end - first.start + (first.headers ? headersSize(first.headers) : 0);
    while (!first.when && end < lane.queue.length && end - lane.head < MAX_BATCH_MESSAGES) {
      const p = lane.queue[end]!;
      // One kind of id per request: given ones, or a run of the producer's (consecutive per topic).
      if (p.when || p.id !== first.id || (p.msgId === undefined) !== (first.msgId === undefined) || (p.n > 0) !== (first.n > 0) || (p.n > 0 && p.n !== first.n + (end - lane.head))) break;
      // One TTL per request.
      if (p.ttl !== first.ttl) break;
      const size = p.end - p.start + (p.headers ? headersSize(p.headers) : 0);
      if (bytes + size > this.maxBatchBytes) break;
      bytes += size;
      end++;
    }
    const batch = lane.queue.slice(lane.head, end);
    lane.head = end;
    return batch;
  }

  /**
   * One batch, sent again after UNAVAILABLE (reconnecting as needed) while `retryMs` allows,
   * every publish has an id and no earlier batch of the lane failed for good. `after`: the id
   * the server must have stored before this batch; `behind`: the answer of the batch that
   * holds it. After a failure this batch waits for that answer and goes again at once when
   * it was stored (it was most likely refused for being ahead of it), not on a timer of its
   * own: after a cut the batches go again one behind the other, without a pause each.
   */
  private async sendBatch(lane: Lane, entry: SentBatch, after: string | undefined, behind: Promise<boolean> | undefined): Promise<Record<string, unknown>> {
    const { batch } = entry;
    const topic = lane.topic;
    const { id } = batch[0]!;
    const first = batch[0]!;
    let frame: Outgoing;
    if (batch.length === 1) {
      frame = { op: "pub", id, topic, data: bytesOfItem(first) };
      if (first.msgId !== undefined || first.n > 0) frame.msgId = first.msgId ?? `${this.producer}:${first.n}`;
      if (first.when?.delayMs !== undefined) frame.delayMs = first.when.delayMs;
      if (first.when?.at !== undefined) frame.at = first.when.at;
      if (first.headers) frame.headers = first.headers;
      if (first.ttl > 0) frame.ttl = first.ttl;
    } else {
      // The payloads as written at the calls: runs of them copied whole, not one at a time.
      frame = { op: "pubs", id, topic, payloads: new EncodedArray(batch) as unknown as Uint8Array[] }; // an array of byte strings on the wire
      // Only a batch with some headers carries the list: a plain batch costs nothing more.
      if (batch.some((p) => p.headers)) frame.headers = batch.map((p) => p.headers ?? {});
      if (first.ttl > 0) frame.ttl = first.ttl;
      // The producer's ids go as a run (prefix and first number): no string per message.
      if (first.msgId !== undefined) frame.msgIds = batch.map((p) => p.msgId!);
      else if (first.n > 0) Object.assign(frame, { idPrefix: `${this.producer}:`, idFrom: first.n });
    }
    if (after !== undefined) frame.after = after;
    const retry = (first.msgId !== undefined || first.n > 0) && this.retryMs > 0;
    let deadline = 0;
    let retrying = false;
    let pause = RETRY_FIRST_MS;
    // Some attempt may have reached a server (written, and not told `unsent`): it may be stored.
    let reached = false;
    try {
      for (;;) {
        let wrote = false;
        try {
          // On a live connection the frame is queued at once (close() relies on that).
          const conn = this.conn.closed || this.closedByUser ? await this.connection() : this.conn;
          // A retry does not wait much beyond the deadline for an answer.
          const r = await conn.request(frame, deadline === 0 ? ANSWER_TIMEOUT_MS : Math.max(1000, Math.min(ANSWER_TIMEOUT_MS, deadline - Date.now())), () => void (entry.written = wrote = true));
          return frame.op === "pub" ? { ...r, seqs: [r.seq as number], ...(r.duplicate === true ? { duplicates: [0] } : {}) } : r;
        } catch (err) {
          if (wrote && !(err instanceof MqError && err.unsent)) reached = true;
          // A local broker or server older than `after` refuses the field: nothing was stored; send without it, one batch at a time from now on.
          if (frame.after !== undefined && err instanceof MqError && err.code === Code.BadRequest && err.message.includes('unexpected field "after"')) {
            this.chaining = false;
            delete frame.after;
            // Not ahead of the batch before it: sent again once that one is stored.
            if (behind && !(await behind)) throw err;
            behind = undefined;
            continue;
          }
          if (!(retry && err instanceof MqError && err.code === Code.Unavailable) || this.closedByUser || lane.failed) throw err;
          const now = Date.now();
          if (deadline === 0) {
            // Held for up to retryMs: this batch and the topic's publishes behind it keep their
            // payloads apart, not the shared blocks that other topics' publishes go on filling.
            deadline = now + this.retryMs;
            lane.retrying++;
            retrying = true;
            this.payloads.detach(batch);
            this.payloads.detach(lane.queue.slice(lane.head));
            if (frame.op === "pub") frame.data = bytesOfItem(first);
          }
          if (now >= deadline) throw err;
          if (behind) {
            // Once: later failures are the link's, and back off as any.
            const stored = await behind;
            behind = undefined;
            if (!stored) throw err;
            continue;
          }
          await Bun.sleep(Math.min(pause / 2 + Math.random() * (pause / 2), deadline - now));
          pause = Math.min(pause * 2, RETRY_MAX_MS);
        }
      }
    } catch (err) {
      // `unsent` covers all the attempts: the last one may say so while an earlier one reached the server.
      if (err instanceof MqError && err.unsent === reached) throw new MqError(err.code, err.message, { cause: err.cause, unsent: !reached });
      throw err;
    } finally {
      if (retrying) lane.retrying--;
    }
  }

  /**
   * Subscribes `id` to `topics`; `from` applies to new subscriptions (default "latest").
   * `group`: joins the queue group of that name on each topic: each message goes to one
   * member. `maxDeliver`: a message delivered that many times without an ack goes to the
   * dead-letter topic `deadLetter` (default `<topic>.dlq`). Either makes acks per message.
   */
  async subscribe(id: number, topics: string[], options: { from?: From; since?: number; group?: string; maxDeliver?: number; deadLetter?: string } = {}): Promise<SubResult[]> {
    const frame: Extract<Outgoing, { op: "sub" }> = { op: "sub", id, topics };
    if (options.from !== undefined) frame.from = options.from;
    if (options.since !== undefined) frame.since = options.since;
    if (options.group !== undefined) frame.group = options.group;
    if (options.maxDeliver !== undefined) frame.maxDeliver = options.maxDeliver;
    if (options.deadLetter !== undefined) frame.deadLetter = options.deadLetter;
    return (await this.call(frame)).topics as SubResult[];
  }

  /**
   * Unsubscribes `id` from `topics` (names or patterns); `unsubscribed` is false for one it was
   * not subscribed to; `dropped`: the topics whose subscription ended (none for a topic a
   * pattern of the id still matches).
   */
  async unsubscribe(id: number, topics: string[]): Promise<Array<{ topic: string; unsubscribed: boolean; dropped?: string[] }>> {
    return (await this.call({ op: "unsub", id, topics })).topics as Array<{ topic: string; unsubscribed: boolean; dropped?: string[] }>;
  }

  /**
   * Up to `max` pending messages of `id`, waiting up to `waitMs` for the first one.
   * An empty batch means none came in time. Call `ack()` once they reached the user.
   */
  async recv(id: number, options: { max?: number; waitMs?: number } = {}): Promise<Received> {
    checkOption("recv", "max", options.max, 1, 1000, "messages");
    const wait = Math.max(0, Math.floor(options.waitMs ?? 0));
    // The ack goes on the connection the batch came on: another one does not know its tag.
    // A live one is taken without an await: an ack made just before goes out in the same write.
    const conn = this.conn.closed || this.closedByUser ? await this.connection() : this.conn;
    const r = await this.call({ op: "recv", id, max: options.max ?? 1, wait }, wait + ANSWER_TIMEOUT_MS, conn);
    const wire = (r.messages as Array<WireMessage | Message> | undefined) ?? [];
    for (let i = 0; i < wire.length; i++) {
      const m = wire[i]!;
      // Decoded straight into Messages (lib/wire/hot-decode.ts) unless cbor-x decoded the reply.
      if (!(m instanceof Message)) wire[i] = new Message(m.topic, m.seq, m.time, m.data, m.lost, m.headers, m.expiresAt);
    }
    const messages = wire as Message[];
    const tag = r.tag as number | undefined;
    return {
      messages,
      more: r.more === true,
      away: r.away === true,
      ack: async (count?: number) => {
        if (count !== undefined && !(Number.isSafeInteger(count) && count >= 0 && count <= messages.length)) {
          throw new RangeError(`Cannot acknowledge ${count} messages of a batch of ${messages.length}: count must be an integer from 0 to ${messages.length}`);
        }
        if (tag === undefined) return;
        // Without count, the whole batch (and the frame stays as it was before count existed).
        await this.call(count === undefined || count === messages.length ? { op: "ack", id, tag } : { op: "ack", id, tag, count }, ANSWER_TIMEOUT_MS, conn);
      },
      nak: async () => {
        if (tag === undefined) return;
        await this.call({ op: "nak", id, tag }, ANSWER_TIMEOUT_MS, conn);
      },
    };
  }

  /**
   * True when the local broker serves `op`: it announced it in its hello. One that announces
   * nothing is older than the announcements, and than push delivery: it serves the others.
   */
  serves(op: string): boolean {
    return this.caps?.has(op) ?? !PUSH_OPS.has(op);
  }

  /**
   * Push delivery of `id`: the local broker pushes its messages to this client as they arrive,
   * at most `credits` messages (and `bytes`) ahead of the acknowledgements; take them with
   * `next()`, acknowledge each batch, `close()` when done (what was not acknowledged goes
   * back for the next reader). UNKNOWN_OP from a local broker that does not serve it (see
   * `serves("follow")`). One follow per id and client at a time.
   */
  async follow(id: number, options: FollowOptions = {}): Promise<{ id: number; next: Follow["next"]; close(): Promise<void> }> {
    if (!this.serves("follow")) throw new MqError(Code.UnknownOp, `the local broker at ${this.socketPath} does not serve push delivery (follow); upgrade it, or use recv`);
    const f = await Follow.start(await this.connection(), id, options, ANSWER_TIMEOUT_MS);
    return { id, next: (o) => f.next(o), close: () => f.close(ANSWER_TIMEOUT_MS) };
  }

  /**
   * Every message of `id` as it arrives, until the loop breaks or the connection closes.
   * A batch is acknowledged when the loop asks for the message after its last one. Leaving
   * the loop (`break`, `return`, or a throw in its body) acknowledges the messages it was
   * given and puts the rest of the batch back, so the next read gets them next, in order.
   * The local broker pushes the messages (`follow`), up to `credits` (default 1000, or twice `batch`) ahead of
   * the loop; one that does not serve push delivery is asked batch by batch (`recv`).
   */
  async *messages(id: number, options: { batch?: number; credits?: number; bytes?: number } = {}): AsyncGenerator<Message, void, undefined> {
    // A loop begun after the local broker went away connects again, as every call does (one
    // running then ends with its connection); after close() it fails as every call does.
    checkOption("read messages", "batch", options.batch, 1, MAX_FOLLOW_CREDITS, "messages a batch");
    if (this.conn.closed || this.closedByUser) await this.connection();
    if (!this.serves("follow")) return yield* this.recvLoop(id, options.batch === undefined ? undefined : Math.min(options.batch, 1000));
    const batch = options.batch ?? 100;
    // Twice the batch at least: the broker pushes the next batch while the loop works on one.
    const followOptions: FollowOptions = { credits: options.credits ?? Math.min(MAX_FOLLOW_CREDITS, Math.max(DEFAULT_FOLLOW_CREDITS, 2 * batch)) };
    if (options.bytes !== undefined) followOptions.bytes = options.bytes;
    const follow = await this.follow(id, followOptions);
    try {
      for (;;) {
        const got = await follow.next({ max: batch });
        // handOut's loop, written out here: a `yield*` would pass each message through a second generator.
        let given = 0;
        let finished = false;
        try {
          for (const m of got.messages) {
            given++; // counted before the yield: a loop that leaves now has seen m
            yield m;
          }
          finished = true;
        } finally {
          // On a closed connection the ack cannot go out, and need not: the broker gives back all it had not acknowledged.
          if (!finished) await got.ack(given).catch((err: unknown) => {
            if (!(err instanceof MqError && err.code === Code.Unavailable)) throw err;
          });
        }
        await got.ack();
      }
    } finally {
      await follow.close();
    }
  }

  /** `messages()` batch by batch, for a local broker without push delivery: a recv and an ack per batch. */
  private async *recvLoop(id: number, batch = 100): AsyncGenerator<Message, void, undefined> {
    while (!this.conn.closed) {
      const got = await this.recv(id, { max: batch, waitMs: 30_000 });
      // On a closed connection the ack cannot go out, and need not: the broker puts back all it had not acknowledged.
      yield* handOut(got, () => this.conn.closed);
    }
  }

  async destroy(id: number): Promise<void> {
    await this.call({ op: "destroy", id });
  }

  async topics(): Promise<TopicInfo[]> {
    return (await this.call({ op: "topics" })).topics as TopicInfo[];
  }

  /**
   * Typed by the declarations in lib/metrics.ts (an older server may lack some fields).
   * `server` is absent when the local broker cannot reach the server: its own part still comes.
   */
  async stats(): Promise<{ local: LocalStats; server?: ServerStats; serverError?: { code: string; message: string } }> {
    const r = await this.call({ op: "stats" });
    if (r.server) return { local: r.local as LocalStats, server: r.server as ServerStats };
    // Why the server part is missing (a local broker older than this field does not say).
    const e = r.serverError as { code?: unknown; message?: unknown } | undefined;
    return typeof e?.code === "string" && typeof e.message === "string" ? { local: r.local as LocalStats, serverError: { code: e.code, message: e.message } } : { local: r.local as LocalStats };
  }

  /**
   * Closes the connection; publishes not yet answered fail with UNAVAILABLE (those sent may
   * have been stored). Publishes made just before are sent first, as far as their topic's
   * batches in flight allow.
   */
  close(): void {
    if (this.closedByUser) return;
    this.sendScheduled();
    this.closedByUser = true;
    const closed = new MqError(Code.Unavailable, "the client was closed before the publish was sent");
    for (const lane of this.lanes.values()) {
      for (const p of lane.queue.slice(lane.head)) {
        this.payloads.release(p);
        p.reject(closed);
      }
      lane.queue.length = lane.head;
    }
    this.conn.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The options of a publish given none: one shared object, not a new one per call. */
const NO_OPTIONS: PublishOptions = Object.freeze({});

/** A publish's payload until it is copied (`ItemBlocks.bytes`). */
const NO_BYTES = new Uint8Array(0);

/**
 * The publish whose promise is being made: `new Promise(takeSettlers)` hands its resolve and
 * reject to it. One executor for all publishes, instead of a closure (or withResolvers'
 * result object) per publish; the executor runs at once, inside the constructor.
 */
let settling: Publish | null = null;
function takeSettlers(resolve: (r: PubResult) => void, reject: (err: unknown) => void): void {
  settling!.resolve = resolve;
  settling!.reject = reject;
  settling = null;
}
function unsettled(): void {}

/** A publish that can go in flight behind another: it has an id to chain by, and is not delayed. */
function chainable(p: Publish): boolean {
  return (p.msgId !== undefined || p.n > 0) && !p.when;
}

/** Resolves the publishes of a batch with the server's answer: one seq each, in order. */
function resolveBatch(topic: string, batch: Publish[], reply: Record<string, unknown>): void {
  const subscribers = reply.subscribers as number;
  if (reply.scheduled === true) {
    const r: PubResult = { topic, seq: 0, subscribers, created: reply.created === true, scheduled: true, due: reply.due as number };
    if (reply.duplicate === true) r.duplicate = true;
    batch[0]!.resolve(r);
    return;
  }
  const seqs = reply.seqs as number[];
  const listed = reply.duplicates as number[] | undefined;
  const duplicates = listed && listed.length > 0 ? new Set(listed) : null;
  // The topic was created by the first message of the batch.
  for (let i = 0; i < batch.length; i++) {
    const r: PubResult = { topic, seq: seqs[i]!, subscribers, created: i === 0 && reply.created === true };
    if (duplicates?.has(i)) r.duplicate = true;
    batch[i]!.resolve(r);
  }
}

/** A Uint8Array, also one made in another realm (a vm context, a worker's transfer): instanceof misses those. */
function isUint8Array(data: unknown): data is Uint8Array {
  return data instanceof Uint8Array || (ArrayBuffer.isView(data) && Object.prototype.toString.call(data) === "[object Uint8Array]");
}

/** "a number", "an ArrayBuffer", "null": what the user passed, for an error message. */
function kindOf(data: unknown): string {
  if (data === null) return "null";
  let kind: string = typeof data;
  try {
    if (kind === "object") kind = (data as object).constructor?.name ?? "object";
  } catch {
    // A proxy or a getter that throws: "object" says enough.
  }
  return `${/^[aeiouAEIOU]/.test(kind) ? "an" : "a"} ${kind}`;
}

/**
 * A batch that was written and failed after an earlier one of its topic had: its own error (it
 * was sent: stored or not, as its error says), never "not sent". Batches in flight when the
 * connection closed share one error object.
 */
function failedBehind(topic: string, own: MqError, first: MqError): MqError {
  const earlier = own === first ? `it was sent to topic "${topic}" and failed with the batches before it` : `an earlier publish to topic "${topic}" failed too (${first.code}: ${first.message})`;
  return new MqError(own.code, `${own.message}; ${earlier}; call resume("${topic}") to publish to it again`);
}

/** A publish never written because an earlier one to its topic failed for good; `own`: its own error, when it had one. */
function notSent(topic: string, first: MqError, own: MqError = first): MqError {
  const its = own === first ? "" : `${own.message}; `;
  return new MqError(own.code, `not sent: ${its}an earlier publish to topic "${topic}" failed (${first.code}: ${first.message}); call resume("${topic}") to publish to it again`, { unsent: true });
}

/**
 * Connects to the local broker at `options.socket`, else `$MQ_SOCKET`, else the default
 * socket path; fails with MqError UNAVAILABLE when none is listening. Same as `MqClient.connect`.
 */
export function connect(options: ConnectOptions = {}): Promise<MqClient> {
  return MqClient.connect(options);
}

/** The delay of a publish (undefined: none), or what is wrong with it. */
function delayOf(options: PublishOptions): { delayMs?: number; at?: number } | undefined | string {
  const { delayMs, at } = options;
  if (delayMs === undefined && at === undefined) return undefined;
  if (delayMs !== undefined && at !== undefined) return "Cannot publish with both delayMs and at: give one";
  for (const [name, value] of [["delayMs", delayMs], ["at", at]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) return `Cannot publish with ${name} ${String(value)}: it must be an integer >= 0 (ms${name === "at" ? " since the epoch" : ""})`;
  }
  // The server's bound, known here: refused before sending, not after, where it would stop the topic's later publishes too.
  if ((delayMs ?? at! - Date.now()) > MAX_DELAY_MS) return `Cannot publish with ${delayMs !== undefined ? `delayMs ${delayMs}` : `at ${at}`}: more than ${MAX_DELAY_MS / 86_400_000} days ahead; delayed messages wait at most that long`;
  return delayMs !== undefined ? { delayMs } : { at: at! };
}

/**
 * Yields one batch's messages, then acknowledges the batch. A loop that leaves early
 * acknowledges what it saw, and the rest come again first; an ack error for which
 * `connectionGone` says true is ignored (the broker gives the unacknowledged back).
 */
async function* handOut(got: Pick<Received, "messages" | "ack">, connectionGone: (err: unknown) => boolean): AsyncGenerator<Message, void, undefined> {
  let given = 0;
  let finished = false;
  try {
    for (const m of got.messages) {
      given++; // counted before the yield: a loop that leaves now has seen m
      yield m;
    }
    finished = true;
  } finally {
    if (!finished) {
      await got.ack(given).catch((err: unknown) => {
        if (!connectionGone(err)) throw err;
      });
    }
  }
  await got.ack();
}
