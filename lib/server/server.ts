/**
 * The broker: owns client ids, topics, subscriptions and messages; pushes each stored
 * message to the local broker that owns each subscriber, within a window of credits, and
 * moves the subscriber's cursor when that local broker acknowledges.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import * as path from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { errorText, logger, SaidOnce } from "../log.ts";
import { DEFAULT_HEARTBEAT_MISSED, DEFAULT_HEARTBEAT_MS, DEFAULT_HELLO_TIMEOUT_MS, DEFAULT_SERVER_LIMITS, maxFrameBytes } from "../config.ts";
import { Code, MqError, toMqError } from "../errors.ts";
import { openStorage } from "../store/backend.ts";
import { postgresLocation } from "../store/pg/url.ts";
import { appendAll, appendAllOnce, indexesBesides } from "../store/append-all.ts";
import { errnoCode } from "../store/fsutil.ts";
import { defineCounters, SERVER_COUNTERS, type ServerStats } from "../metrics.ts";
import type { BrokerCredentials, ClientRegistry, DeliverAfter, FsyncPolicy, MsgIdRecord, Storage, StoreKind, TopicStore } from "../store/types.ts";
import { CloseReason, Connection, type ConnectionHandler, type SocketLike } from "../wire/connection.ts";
import { socketBytes } from "../wire/frame.ts";
import { pubsHeadersProblem, type Headers } from "../wire/headers.ts";
import { appendFields, pubExtra, type PubExtra } from "./pub-fields.ts";
import { capabilities, DRAIN_CAP, MSGS_IDS_CAP, PROTOCOL_VERSION, pubsIdsProblem, type AckRequest, type BufferedRequest, type NakRequest, type Frame, type From, type HelloRequest, type TopicInfo } from "../wire/messages.ts";
import type { RequestOf, ServerOp } from "../wire/ops.ts";
import { checkPattern, checkTopic, isPattern } from "../wire/topic.ts";
import { patternStart } from "./pattern-start.ts";
import { Consumers } from "./consumer.ts";
import { filterMatches } from "./subjects.ts";
import { Credits } from "./credits.ts";
import { checkAfter, storedOrPending } from "./pub-order.ts";
import { DEFAULT_DEDUPE, DedupeWindow, splitMsgId, type DedupeOptions, type Pending, type Runs } from "./dedupe.ts";
import { DEAD_TOPIC_HEADER, deadLetterMessage, isDeadLetter } from "./dead-letter.ts";
import { checkExplicit, consumerFields, GroupMember, Groups, isExplicit, releaseMembers, sameKindProblem, type ExplicitOptions, type Group } from "./group.ts";
import { RetentionDrops, trimTopic, type ServerRetention } from "./retention.ts";
import { dueTime, MAX_SCHEDULED_BYTES, Scheduler, type ScheduledFields } from "./scheduler.ts";
import { Subscription, Topic } from "./topic.ts";
import { MIN_WINDOW_MESSAGES } from "./window.ts";
import { buildView, type ServerView } from "./view.ts";
import { Cluster, type ClusterHost } from "./cluster.ts";

/** How far ahead of this clock a sub `since` may be (clocks of hosts differ a little). */
const SINCE_FUTURE_SLACK_MS = 60_000;

const log = logger("server");

export interface ServerOptions {
  hostname: string;
  port: number;
  dataDir: string;
  defaultTopics: string[];
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** `--fsync always`, a file store: push a message once written (default) or once synced (lib/store/types.ts, DeliverAfter). */
  deliverAfter?: DeliverAfter;
  maxMessageBytes: number;
  maxSegmentBytes?: number;
  /** Old segments go once every subscriber is past them (unless `limit` is hard) and they are older / the log is bigger than this. */
  retention?: ServerRetention;
  helloTimeoutMs?: number;
  /** Ping a silent local broker after this many ms (0: no heartbeat); DEFAULT_HEARTBEAT_MS. */
  heartbeatMs?: number;
  /** Close a local broker's session after this many silent intervals in a row; DEFAULT_HEARTBEAT_MISSED. */
  heartbeatMissed?: number;
  /** Shared secret the local brokers must present in their hello. */
  token?: string;
  tls?: { cert: string; key: string };
  /** Deduplication of publishes by message id: the window and its bound; DEFAULT_DEDUPE. */
  dedupe?: Partial<DedupeOptions>;
  /** Limits against greedy or hostile peers (docs/security.md); defaults in DEFAULT_SERVER_LIMITS (lib/config.ts). */
  limits?: Partial<ServerLimits>;
  /** Storage backend (lib/store/backend.ts): `file` (under `dataDir`, the default), `memory` (nothing kept across a restart) or `postgres` (at `storeUrl`). */
  store?: StoreKind;
  /** The database of `store: "postgres"`: postgres://USER[:PASSWORD]@HOST:PORT/DB. */
  storeUrl?: string;
  /** Most topic files the file store keeps open at once (default: half the open-file limit, `defaultMaxOpenFiles`). */
  maxOpenFiles?: number;
}

export interface ServerLimits {
  maxConnections: number;
  maxSubscriptionsPerId: number;
  maxIdsPerBroker: number;
  /** A frame must arrive whole within this many ms once it has started. */
  frameTimeoutMs: number;
  /** Requests served at once per connection (one connection carries a whole host). */
  maxInFlight: number;
  /** Topics in all: a `pub` or `sub` that would create one more is refused. */
  maxTopics: number;
  /** Delayed messages pending, and their payload bytes (0: no limit); a delayed publish past either is refused. */
  maxScheduled: number;
  maxScheduledBytes: number;
}

/** One connected local broker. */
/** A clean stop waits this long at most for the local brokers' `drained` (theirs wait 1 s for their clients). */
const DRAIN_WAIT_MS = 1500;

interface Session {
  broker: string;
  conn: Connection;
  /** Where it connected from, `host:port`, for log lines and refusals. */
  address: string;
  /** Its byte budgets (from the hello) and what is in flight against them. */
  credits: Credits;
  /** When the hello was answered (ms since the epoch), for the HTTP API. */
  connectedAt: number;
  /** It announced MSGS_IDS_CAP: one `msgs` frame serves several of its ids. */
  sharesPushes: boolean;
  /** It announced DRAIN_CAP: a clean stop sends it `drain` and waits for its `drained`. */
  drains: boolean;
  /** Settled by its `drained` (set when the stop sent `drain`). */
  drained?: PromiseWithResolvers<void>;
}

/** A topic a pattern matches now: where its subscription starts (`from`) and its next seq. */
type PatternMatch = { topic: string; from: number; next: number };

/** The answer to `pubs` (and, turned into one `seq`, to `pub`): `duplicates` only when some were. */
interface PubsReply {
  topic: string;
  seqs: number[];
  subscribers: number;
  created: boolean;
  duplicates?: number[];
}

/** No index stored through another server (shared, never changed: no array per publish). */
const NONE_ELSEWHERE: number[] = [];

/** The message ids of a publish: one per payload, or a run `prefix + from`, `prefix + (from + 1)`, …. */
type PubIds = { keys: string[]; prefix?: undefined } | { prefix: string; from: number; keys?: undefined };

/** The message id of payload `i`. */
function idOf(ids: PubIds, i: number): string {
  return ids.prefix !== undefined ? `${ids.prefix}${ids.from + i}` : ids.keys[i]!;
}

/** How often lazily written cursor moves reach the subscriber index files. */
const CURSOR_WRITE_MS = 100;

export class MqServer {
  private listener: TCPSocketListener<Connection> | null = null;
  private readonly topics = new Map<string, Topic>();
  /** Topics each client id is subscribed to. */
  private readonly subscriptionsOf = new Map<number, Map<string, Subscription>>();
  private readonly sessions = new Map<string, Session>();
  /** Per peer host: the reason of its last failed TLS handshake, logged once (below; at most 1,024 hosts remembered). */
  private readonly tlsFailures = new SaidOnce(1024);
  private readonly creating = new Map<string, number>();
  /** Topics being opened or created now, so that two requests for a new topic create it once and count it once. */
  private readonly openingTopics = new Map<string, Promise<{ topic: Topic; created: boolean } | null>>();
  private readonly connections = new Set<Connection>();
  private cursorTimer: ReturnType<typeof setInterval> | null = null;
  /** Topics with acknowledged cursor moves not yet handed to their index (written by `cursorTimer`). */
  private readonly cursorsMoved = new Set<Topic>();
  private stallTimer: ReturnType<typeof setInterval> | null = null;
  private retentionTimer: ReturnType<typeof setInterval> | null = null;
  /** A retention pass is running (a slow store may take longer than the timer's period). */
  private trimming = false;
  private dedupeTimer: ReturnType<typeof setInterval> | null = null;
  private readonly limits: ServerLimits;
  private readonly dedupe: DedupeWindow;
  private lastEvictionWarning = 0;
  /** Message ids read back from the logs at start (for its log line). */
  private rebuiltIds = 0;
  private inFlight = 0;
  private stopping: Promise<void> | null = null;
  private readonly tokenDigest: Buffer | null;
  /** Hellos in progress per broker identity: one at a time, so two of them never race for the session. */
  private readonly admitting = new Map<string, Promise<void>>();
  /** Connections whose hello is being admitted: frames pipelined behind it wait for it. */
  private readonly pendingHellos = new WeakMap<Connection, Promise<void>>();
  /** `host:port` of each connection, for refusals that name where a broker is connected from. */
  private readonly addresses = new WeakMap<Connection, string>();
  private readonly heartbeatMs: number;
  private readonly heartbeatMissed: number;
  /** Declared (name, unit, help) in SERVER_COUNTERS, lib/metrics.ts. */
  readonly counters = defineCounters(SERVER_COUNTERS);
  /** Messages the hard retention limit deleted before their subscriber acknowledged them. */
  private readonly retentionDrops = new RetentionDrops();
  /** Queue groups and explicitly acknowledged subscriptions (lib/server/group.ts). */
  private readonly groups: Groups;
  private readonly startedAt = Date.now();
  /** Delayed messages (`pub` with `delayMs` / `at`); set in `open`. */
  private scheduler!: Scheduler;
  private readonly registry: ClientRegistry;
  private readonly credentials: BrokerCredentials;
  private readonly store: TopicStore;
  /** What each id asked for (exact topics and patterns), matched against new topics. */
  private readonly consumers: Consumers;
  /** Ids whose pattern missed a new topic at --max-subscriptions-per-id (warned once each). */
  private readonly limitWarned = new Set<number>();
  /** Set when other servers share the store (postgres): keeps this server in step with them (lib/server/cluster.ts). */
  private cluster: Cluster | null = null;

  private constructor(
    private readonly options: ServerOptions,
    private readonly storage: Storage,
  ) {
    this.registry = storage.clients;
    this.credentials = storage.credentials;
    this.store = storage.topics;
    this.consumers = new Consumers(storage.consumers);
    this.tokenDigest = options.token ? digest(options.token) : null;
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.heartbeatMissed = options.heartbeatMissed ?? DEFAULT_HEARTBEAT_MISSED;
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.groups = new Groups(storage.groups, { pump: (member) => this.pump(member), deadLetter: (group, seq, deliveries) => this.deadLetter(group, seq, deliveries) }, storage.groupClaims);
    const dedupe = { ...DEFAULT_DEDUPE, ...options.dedupe };
    this.dedupe = new DedupeWindow(dedupe.windowMs, dedupe.maxKeys, (count, windowMs) => {
      const now = Date.now();
      if (now - this.lastEvictionWarning < 60_000) return;
      this.lastEvictionWarning = now;
      log.warn(`dedupe window: ${count} message ids forgotten before the end of their ${formatMs(windowMs)} (--dedupe-max-keys ${this.dedupe.maxKeys} reached; ${this.dedupe.evicted} in all, logged at most once a minute): a publish sent again later than that may be stored twice`);
    });
  }

  /** Opens the storage (a file store: locks the data directory and recovers every log) and starts listening. */
  static async start(options: ServerOptions): Promise<MqServer> {
    const storage = await openStorage({
      kind: options.store ?? "file",
      dataDir: options.dataDir,
      ...(options.storeUrl !== undefined ? { url: options.storeUrl } : {}),
      fsync: options.fsync,
      fsyncIntervalMs: options.fsyncIntervalMs,
      ...(options.deliverAfter !== undefined ? { deliverAfter: options.deliverAfter } : {}),
      ...(options.maxSegmentBytes !== undefined ? { maxSegmentBytes: options.maxSegmentBytes } : {}),
      ...(options.maxOpenFiles !== undefined ? { maxOpenFiles: options.maxOpenFiles } : {}),
      owner: "mq server",
    });
    try {
      return await MqServer.open(options, storage);
    } catch (err) {
      // A failed start (port in use, unreadable data) closes what it opened and leaves the directory free.
      await storage.close().catch(() => {});
      throw err;
    }
  }

  private static async open(options: ServerOptions, storage: Storage): Promise<MqServer> {
    const server = new MqServer(options, storage);
    if (storage.shared) server.cluster = new Cluster(storage.shared, server.clusterHost());
    const store = storage.topics;
    for (const name of await store.topics()) await server.topic(name, false);
    for (const member of await server.groups.load(server.topics, (id) => server.registry.owner(id) !== undefined)) server.addSubscription(member);
    await server.loadConsumers();
    if (server.dedupe.enabled) {
      server.dedupe.sort();
      server.dedupe.expire(Date.now());
      if (server.rebuiltIds > 0) log.info(`dedupe window: ${plural(server.rebuiltIds, "message id")} of the last ${formatMs(server.dedupe.windowMs)} read back from the topic logs (${plural(server.dedupe.size, "entry", "entries")})`);
      server.dedupeTimer = setInterval(() => server.dedupe.expire(Date.now()), 1000);
    }
    for (const name of options.defaultTopics) {
      checkTopic(name);
      await server.topic(name, true);
    }
    server.scheduler = new Scheduler(storage.schedule, {
      append: (name, payloads, msgIds, fields) => server.appendScheduled(name, payloads, msgIds, fields),
      storedIds: async (name, since) => {
        const topic = server.topics.get(name);
        return topic ? new Map((await topic.log.recentMsgIds(since, Number.MAX_SAFE_INTEGER)).map((r) => [r.msgId, r.time])) : null;
      },
      ...(server.cluster ? { mayDeliver: () => server.cluster!.holds("scheduler") } : {}),
    }, server.limits);
    await server.scheduler.load(Date.now());
    server.listen(); // first: if the port is taken, no timer has been started
    server.scheduler.start();
    server.cluster?.start(server.scheduler, storage.schedule);
    server.cursorTimer = setInterval(() => {
      // Only the topics whose cursors moved: with many topics, a sweep of all would cost CPU when idle.
      for (const t of server.cursorsMoved) t.index.writeMoved();
      server.cursorsMoved.clear();
    }, CURSOR_WRITE_MS);
    const retention = options.retention;
    if (retention) {
      const every = Math.min(60_000, Math.max(1000, retention.maxAgeMs / 2));
      server.retentionTimer = setInterval(() => void server.applyRetention(retention), every);
    }
    server.stallTimer = setInterval(() => {
      const now = Date.now();
      for (const c of server.connections) c.checkStall(now);
    }, 1000);
    const files = store.openFiles?.();
    const topics = `${plural(server.topics.size, "topic")}${files ? ` (at most ${files.max} of their files open)` : ""}`;
    const where =
      storage.kind === "memory"
        ? "store memory: nothing is kept across a restart"
        : storage.kind === "postgres"
          ? `store postgres ${postgresLocation(options.storeUrl ?? "")}, fsync ${options.fsync}`
          : `data ${options.dataDir}, fsync ${options.fsync}`;
    // What a local broker needs to get in: TLS means --tls-ca, a token means --token-file.
    const entry = `${options.tls ? "TLS" : "plain TCP"}, ${options.token ? "token required" : "no token"}`;
    log.info(`listening on ${hostPort(options.hostname, server.port)} (${entry}; ${where}, ${topics}, ${plural(server.registry.size, "id")})`);
    return server;
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  private listen(): void {
    const frameLimit = maxFrameBytes(this.options.maxMessageBytes);
    const handler = this.handler();
    try {
      this.listener = this.listenTcp(frameLimit, handler);
    } catch (err) {
      const address = hostPort(this.options.hostname, this.options.port);
      const code = (err as NodeJS.ErrnoException).code;
      const hint =
        code === "EADDRINUSE"
          ? "is another mq server running? Stop it, or choose another --listen HOST:PORT"
          : code === "EACCES"
            ? "ports below 1024 need privileges; choose another --listen HOST:PORT"
            : "choose another --listen HOST:PORT";
      throw new MqError(Code.Unavailable, `Cannot listen on ${address}: ${errorText(err)}; ${hint}`, { cause: err });
    }
  }

  private listenTcp(frameLimit: number, handler: ConnectionHandler): TCPSocketListener<Connection> {
    return Bun.listen<Connection>({
      hostname: this.options.hostname,
      port: this.options.port,
      ...(this.options.tls ? { tls: { cert: this.options.tls.cert, key: this.options.tls.key } } : {}),
      socket: {
        // With a handshake handler Bun opens TLS sockets at accept, not after the handshake,
        // so the hello deadline and the connection limit cover a handshake that never ends.
        handshake: (socket, ok, err) => {
          if (ok) this.tlsFailures.forget(socket.remoteAddress);
          else this.tlsHandshakeFailed(socket.remoteAddress, socket.data?.label ?? "connection", err?.message ?? "unknown reason");
        },
        open: (socket: Socket<Connection>) => {
          socket.data = this.accept(socket, hostPort(socket.remoteAddress, socket.remotePort), handler, frameLimit);
        },
        data: (socket, chunk) => socket.data?.onData(socketBytes(chunk)),
        drain: (socket) => socket.data?.onDrain(),
        close: (socket) => socket.data?.onClose(),
        error: (socket, err) => log.warn(`${socket.data?.label ?? "connection"}: socket error:`, err),
      },
    });
  }

  /**
   * A failed TLS handshake, logged once per peer host and reason: a local broker that cannot
   * get in retries every 2 s, and its every attempt is not news.
   */
  private tlsHandshakeFailed(host: string, label: string, reason: string): void {
    if (!this.tlsFailures.first(host, reason)) {
      log.debug(`${label}: TLS handshake failed: ${reason}`);
      return;
    }
    // What a plaintext peer's bytes look like to OpenSSL.
    const plain = /WRONG_VERSION_NUMBER|HTTP_REQUEST/.test(reason) ? " (the peer does not speak TLS: a local broker reaches a TLS server with --tls-ca FILE)" : "";
    log.warn(`${label}: TLS handshake failed: ${reason}${plain}; more failures from ${host} for the same reason are logged at debug level`);
  }

  /** A local broker's connection, on a TCP socket or an in-process one (`acceptInProcess`): counted, limited, given the hello deadline. */
  private accept(socket: SocketLike, address: string, handler: ConnectionHandler, frameLimit: number): Connection {
    const label = `local broker at ${address}`;
    const conn = new Connection(socket, handler, {
      maxFrameBytes: frameLimit,
      label,
      helloTimeoutMs: this.options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
      frameTimeoutMs: this.limits.frameTimeoutMs,
      maxInFlight: this.limits.maxInFlight,
      answersPeer: true,
    });
    this.addresses.set(conn, address);
    if (this.connections.size >= this.limits.maxConnections) {
      log.warn(`${label}: refused: ${this.connections.size} connections already (--max-connections)`);
      this.counters.rejected++;
      conn.fail(undefined, new MqError(Code.Unavailable, `the server has too many connections (limit ${this.limits.maxConnections})`, { fatal: true }));
      return conn;
    }
    this.connections.add(conn);
    this.counters.accepted++;
    log.debug(`${label}: connection accepted`);
    if (this.stopping) conn.close(CloseReason.Shutdown);
    return conn;
  }

  /**
   * Serves a local broker of this process (`mq up`) on an in-process socket instead of a TCP
   * one (lib/wire/memory-link.ts): the same frames, hello and session as over TCP.
   */
  acceptInProcess(socket: SocketLike, address: string): Connection {
    return this.accept(socket, address, this.handler(), maxFrameBytes(this.options.maxMessageBytes));
  }

  private handler(): ConnectionHandler {
    return {
      frame: (conn, frame) => this.onFrame(conn, frame),
      drain: (conn) => {
        // What the outbound budget held back waits in the session's Credits.
        const session = conn.state as Session | undefined;
        if (session) session.credits.serve(conn);
      },
      closed: (conn, reason) => {
        this.connections.delete(conn);
        const session = conn.state as Session | undefined;
        if (session && this.sessions.get(session.broker) === session) {
          this.sessions.delete(session.broker);
          log.info(`local broker ${session.broker} disconnected (${reason})`);
          // Queue group members of that broker hand their unacknowledged messages to the others.
          for (const id of this.registry.ownedBy(session.broker)) releaseMembers(this.subscriptionsOf.get(id)?.values() ?? []);
        }
      },
    };
  }

  private onFrame(conn: Connection, frame: Frame): unknown {
    if (!conn.helloDone) {
      const pending = this.pendingHellos.get(conn);
      if (pending) {
        // Pipelined behind a hello still being admitted: served once it is (or refused with it).
        const later = pending.then(() => (conn.closed ? undefined : this.onFrame(conn, frame)));
        if (!("rid" in frame) || frame.rid === undefined) later.catch((err) => conn.fail(undefined, toMqError(err)));
        return later;
      }
      if (frame.op !== "hello") throw new MqError(Code.BadRequest, `expected hello as the first frame, got ${frame.op}`, { fatal: true });
      return this.hello(conn, frame);
    }
    if (frame.op === "hello") throw new MqError(Code.BadRequest, "hello was already received on this connection");
    if (frame.op === "ping") {
      // only when it was pipelined behind the hello; the connection answers the others
      conn.send({ op: "pong" });
      return undefined;
    }
    if (frame.op === "pong") return undefined;
    const handler = Object.hasOwn(this.handlers, frame.op) ? (this.handlers[frame.op as Exclude<ServerOp, "hello">] as (session: Session, frame: Frame) => unknown) : undefined;
    if (!handler) throw new MqError(Code.UnknownOp, `op ${JSON.stringify(frame.op)} is not served by the server`);
    return handler(conn.state as Session, frame);
  }

  /** One handler per op the table says the server serves (`hello` is served before a session exists). */
  readonly handlers: { [K in Exclude<ServerOp, "hello">]: (session: Session, frame: RequestOf<K>) => unknown } = {
    ack: (session, frame) => this.ack(session, frame),
    nak: (session, frame) => this.nak(session, frame),
    buffered: (session, frame) => this.buffered(session, frame),
    drained: (session) => void session.drained?.resolve(),
    create: (session) => this.track(this.create(session)),
    pub: (session, frame) => {
      const ids = frame.msgId === undefined ? undefined : { keys: [frame.msgId] };
      const headers = frame.headers && [frame.headers];
      if (frame.delayMs !== undefined || frame.at !== undefined) {
        if (frame.after !== undefined) throw new MqError(Code.BadRequest, 'pub: "after" orders immediate publishes; a delayed one (delayMs / at) cannot have it');
        return this.track(this.publishLater(session, frame.id, frame.topic, [frame.data], ids, frame, headers, frame.ttl)).then(({ duplicates, ...rest }) => (duplicates.length > 0 ? { ...rest, duplicate: true } : rest));
      }
      return this.track(
        this.publish(session, frame.id, frame.topic, [frame.data], ids, headers, frame.ttl, frame.after).then(({ seqs, duplicates, ...rest }) =>
          duplicates ? { ...rest, seq: seqs[0], duplicate: true } : { ...rest, seq: seqs[0] },
        ),
      );
    },
    pubs: (session, frame) => {
      const problem = pubsIdsProblem(frame) ?? pubsHeadersProblem(frame);
      if (problem) throw new MqError(Code.BadRequest, problem);
      const ids: PubIds | undefined = frame.msgIds ? { keys: frame.msgIds } : frame.idPrefix !== undefined ? { prefix: frame.idPrefix, from: frame.idFrom! } : undefined;
      if (frame.delayMs !== undefined || frame.at !== undefined) {
        if (frame.after !== undefined) throw new MqError(Code.BadRequest, 'pubs: "after" orders immediate publishes; a delayed one (delayMs / at) cannot have it');
        return this.track(this.publishLater(session, frame.id, frame.topic, frame.payloads, ids, frame, frame.headers, frame.ttl)).then(({ duplicates, ...rest }) => (duplicates.length > 0 ? { ...rest, duplicates } : rest));
      }
      return this.track(this.publish(session, frame.id, frame.topic, frame.payloads, ids, frame.headers, frame.ttl, frame.after));
    },
    sub: (session, frame) => {
      if (frame.from !== undefined && frame.since !== undefined) throw new MqError(Code.BadRequest, 'sub: give "from" or "since", not both');
      // Messages keep their append time: a future start would still deliver the older ones. The
      // slack allows for the client's clock being ahead of this one.
      if (frame.since !== undefined && frame.since > Date.now() + SINCE_FUTURE_SLACK_MS) {
        throw new MqError(Code.BadRequest, `sub: "since" ${frame.since} (${new Date(frame.since).toISOString()}) is in the future (this server's clock: ${new Date().toISOString()}); use from "latest" for only new messages`);
      }
      return this.track(this.subscribe(session, frame.id, frame.topics, frame.from ?? "latest", frame.since, frame));
    },
    unsub: (session, frame) => this.track(this.unsubscribe(session, frame.id, frame.topics)),
    destroy: (session, frame) => this.track(this.destroy(session, frame.id)),
    topics: () => ({ topics: this.topicList() }),
    stats: () => ({ server: this.stats() }),
  };

  /** Counts a write in flight so that a graceful stop can wait for it. */
  private async track<T>(work: Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await work;
    } finally {
      this.inFlight--;
    }
  }

  private hello(conn: Connection, hello: HelloRequest): unknown {
    if (hello.version !== PROTOCOL_VERSION) {
      throw new MqError(Code.VersionMismatch, `protocol version ${hello.version} is not supported; this server speaks ${PROTOCOL_VERSION}`, { fatal: true });
    }
    if (this.tokenDigest && !(hello.token !== undefined && timingSafeEqual(digest(hello.token), this.tokenDigest))) {
      const none = hello.token === undefined;
      log.warn(`${conn.label}: refused: ${none ? "no token (the server has --token-file)" : "wrong token"}`);
      this.counters.rejected++;
      const message = none ? "the server needs a token and this local broker sent none: give it --token-file with the server's token" : "the server refused the token of this local broker: its --token-file must hold the server's token";
      throw new MqError(Code.AuthFailed, message, { fatal: true });
    }
    if (!hello.broker || hello.broker.length > 128) {
      throw new MqError(Code.BadRequest, 'hello: field "broker" (the identity of the local broker, 1-128 characters) is required', { fatal: true });
    }
    if (!hello.secret || hello.secret.length > 256) {
      throw new MqError(Code.BadRequest, 'hello: field "secret" (the credential of the local broker, 1-256 characters) is required', { fatal: true });
    }
    const broker = hello.broker;
    const secret = hello.secret;
    // One hello per identity at a time: the second waits for the first to be admitted or refused.
    const admitted = (this.admitting.get(broker) ?? Promise.resolve()).then(() => this.admit(conn, broker, secret, hello));
    const tail = admitted.then(
      () => {},
      () => {},
    );
    this.admitting.set(broker, tail);
    void tail.then(() => {
      if (this.admitting.get(broker) === tail) this.admitting.delete(broker);
    });
    const settled = tail.then(() => void this.pendingHellos.delete(conn));
    this.pendingHellos.set(conn, settled);
    return admitted;
  }

  /**
   * Checks the broker's secret (binding it at first contact), then makes this connection
   * its session. A session of the same identity that still answers keeps its place and the
   * newcomer is refused (a copied data directory must not evict the original, or the two
   * would evict each other forever); one that is closed, silent past the heartbeat timeout,
   * or does not answer a ping in time is dead, and is replaced (the broker reconnected).
   */
  private async admit(conn: Connection, broker: string, secret: string, budgets: { bufferBytes?: number; bufferBytesPerId?: number; caps?: string[] }) {
    if (conn.closed) return {};
    let verdict: Awaited<ReturnType<BrokerCredentials["check"]>>;
    try {
      verdict = await this.credentials.check(broker, secret);
    } catch (err) {
      log.error(`${conn.label}: cannot record the credential of local broker ${broker}: ${(err as Error).message}`);
      throw new MqError(Code.Internal, "the server cannot record the credential of this local broker", { fatal: true, cause: err });
    }
    if (verdict === "mismatch") {
      log.warn(`${conn.label}: refused: wrong secret for local broker ${broker}`);
      this.counters.rejected++;
      throw new MqError(
        Code.AuthFailed,
        `the server knows local broker ${broker} by another secret (bound at its first connection); was the secret file of its data directory replaced?`,
        { fatal: true },
      );
    }
    if (verdict === "bound") log.info(`${conn.label}: new local broker ${broker}: its secret is now bound to its identity (trust on first use)`);
    if (this.cluster) await this.resumeFromStore(conn, broker);
    const previous = this.sessions.get(broker);
    if (previous && !previous.conn.closed && !conn.closed) {
      const silentMs = Date.now() - previous.conn.lastHeardAt;
      const alive = !(this.heartbeatMs > 0 && silentMs >= this.heartbeatMs * this.heartbeatMissed) && (await previous.conn.probe(this.probeMs()));
      if (alive && !previous.conn.closed) {
        log.warn(`${conn.label}: refused: local broker ${broker} is already connected from ${previous.address} and answering`);
        this.counters.rejected++;
        throw new MqError(
          Code.IdentityInUse,
          `local broker ${broker} is already connected to the server from ${previous.address}; a second local broker with the same identity and secret (a copied data directory?) is refused: give each local broker its own --data`,
          { fatal: true },
        );
      }
      if (this.sessions.get(broker) === previous && !previous.conn.closed) {
        log.warn(`local broker ${broker}: the session from ${previous.address} is silent (no answer to a ping); ${conn.label} replaces it`);
        previous.conn.close(CloseReason.Replaced);
      }
    }
    if (conn.closed) return {};
    // A budget the local broker does not announce (an older one) does not apply.
    const credits = new Credits(Math.max(1, budgets.bufferBytes ?? Infinity), Math.max(1, budgets.bufferBytesPerId ?? Infinity), (n) => {
      this.counters.delivered += n;
    });
    const sharesPushes = budgets.caps?.includes(MSGS_IDS_CAP) === true;
    const session: Session = { broker, conn, address: this.addresses.get(conn) ?? conn.label, credits, connectedAt: Date.now(), sharesPushes, drains: budgets.caps?.includes(DRAIN_CAP) === true };
    conn.state = session;
    conn.helloDone = true;
    this.sessions.set(broker, session);
    conn.startHeartbeat(this.heartbeatMs, this.heartbeatMissed);
    const from = conn.label.replace(/^local broker at /, "");
    // From here on the connection's lines name the broker, not only its address.
    conn.label = `local broker ${broker} (${from})`;
    log.info(`local broker ${broker} connected from ${from}`);
    // Resume every subscription of this broker's ids from its acknowledged cursor,
    // after the hello reply has been queued.
    queueMicrotask(() => {
      for (const id of this.registry.ownedBy(session.broker)) {
        for (const sub of this.subscriptionsOf.get(id)?.values() ?? []) sub.rewind();
      }
      this.pumpSession(session);
    });
    const reply: Record<string, unknown> = { version: PROTOCOL_VERSION, maxMessageBytes: this.options.maxMessageBytes, maxInFlight: this.limits.maxInFlight };
    // Ids whose records were lost: the local broker stops serving those it maps (even recv).
    const lost = this.registry.lost();
    if (lost.length > 0) reply.lost = lost;
    reply.caps = capabilities("server");
    return reply;
  }

  /** How long an open session of the same identity has to answer a ping before a newcomer replaces it. */
  private probeMs(): number {
    return this.heartbeatMs > 0 ? Math.min(Math.max(this.heartbeatMs, 500), 2000) : 1000;
  }

  private async create(session: Session) {
    // Creates in flight count too: ids become live only once durable.
    const creating = this.creating.get(session.broker) ?? 0;
    if (this.registry.countOwnedBy(session.broker) + creating >= this.limits.maxIdsPerBroker) {
      throw new MqError(Code.LimitExceeded, `this local broker already owns ${this.limits.maxIdsPerBroker} ids (--max-ids-per-broker); destroy some first`);
    }
    this.creating.set(session.broker, creating + 1);
    try {
      return { id: await this.registry.create(session.broker) };
    } finally {
      const left = this.creating.get(session.broker)! - 1;
      if (left === 0) this.creating.delete(session.broker);
      else this.creating.set(session.broker, left);
    }
  }

  /** Throws UNKNOWN_ID unless `id` exists and belongs to the session's local broker. */
  private checkOwner(session: Session, id: number): void {
    if (this.registry.owner(id) === session.broker) return;
    if (this.registry.isLost(id)) throw new MqError(Code.UnknownId, lostMessage(id));
    // A foreign id gets the same answer as a missing one: ids of other hosts are not disclosed.
    throw new MqError(Code.UnknownId, `no client with id ${id}`);
  }

  /**
   * The topic `name`, opened (every topic that exists was opened at start) or, with
   * `create`, created: refused with LIMIT_EXCEEDED at --max-topics, and with STORAGE_ERROR
   * when the store cannot create it (it then leaves nothing behind).
   */
  private async topic(name: string, create: boolean): Promise<{ topic: Topic; created: boolean } | null> {
    const known = this.topics.get(name);
    if (known) return { topic: known, created: false };
    const pending = this.openingTopics.get(name);
    if (pending) {
      const r = await pending;
      if (r || !create) return r && { topic: r.topic, created: false };
    }
    if (create) this.checkTopicRoom(1, [name]);
    const opening = this.openTopic(name, create);
    this.openingTopics.set(name, opening);
    try {
      return await opening;
    } finally {
      if (this.openingTopics.get(name) === opening) this.openingTopics.delete(name);
    }
  }

  /** LIMIT_EXCEEDED unless `count` more topics (`names`, for the message) fit under --max-topics. */
  private checkTopicRoom(count: number, names: string[]): void {
    const limit = this.limits.maxTopics;
    const held = this.topics.size + this.openingTopics.size;
    if (held + count <= limit) return;
    const what = names.length === 1 ? `topic "${names[0]}"` : `${names.length} new topics (${names.slice(0, 3).map((n) => `"${n}"`).join(", ")}${names.length > 3 ? ", …" : ""})`;
    throw new MqError(Code.LimitExceeded, `Cannot create ${what}: the server holds ${held} topics and --max-topics is ${limit}; use an existing topic, or raise --max-topics`);
  }

  private async openTopic(name: string, create: boolean): Promise<{ topic: Topic; created: boolean } | null> {
    let opened: Awaited<ReturnType<TopicStore["open"]>>;
    try {
      opened = await this.store.open(name, create);
    } catch (err) {
      // At start (create false) a topic that cannot be opened stops the start, as before.
      if (!create) throw err;
      log.error(`topic ${name}: cannot open or create it: ${errorText(err)}`);
      if (this.cluster) throw new MqError(Code.Unavailable, `Cannot create topic "${name}": the server's store (${this.storage.kind}) failed: ${errorText(err)}; nothing was created, try again`, { cause: err });
      throw new MqError(Code.StorageError, `Cannot create topic "${name}": ${storageProblem(err)}; nothing was created`, { cause: err });
    }
    if (!opened) return null;
    // Another call may have opened it while we waited.
    const raced = this.topics.get(name);
    if (raced) return { topic: raced, created: false };
    const topic = new Topic(name, opened.log, opened.subscribers);
    topic.onExpired = (count) => void (this.counters.expired += count);
    topic.repush = (sub) => this.pump(sub);
    topic.sharesPushes = (conn, id) => {
      const session = conn.state as Session | undefined;
      return session !== undefined && session.sharesPushes && this.registry.owner(id) === session.broker && this.sessions.get(session.broker) === session;
    };
    topic.onShared = (count) => void (this.counters.fanout_shared += count);
    topic.log.readFloor = () => topic.readFloor();
    // Messages readable before their fsync: pushed while the disk works (the append's answer waits for it).
    // Whether a push is under way to a consumer that keeps up: one that is away takes a window
    // of pushes and acks none, and the commit then syncs as if it had no readers.
    topic.log.onWritten = () => {
      let pushing = false;
      for (const sub of topic.subscriptions.values()) {
        this.pump(sub);
        if (sub.readingNow && sub.keepsUp()) pushing = true;
      }
      return pushing;
    };
    this.topics.set(name, topic);
    // In the same tick as the topic becomes visible: a pattern subscribe sees it or is seen.
    const attaching = opened.created ? this.attachPatterns(topic) : null;
    if (this.dedupe.enabled && !opened.created) await this.rebuildIds(topic);
    for (const [id, cursor] of [...opened.subscribers.cursors]) {
      if (this.registry.owner(id) === undefined) {
        // A shared store: another server may have made the id since this one read the registry (the cluster adds it).
        if (this.cluster) continue;
        // Above every id the registry knows: it lost that id and its mark, so no reissue.
        await this.registry.witness(id);
        if (this.registry.isLost(id)) log.error(`topic ${name}: subscriber id ${id} (cursor ${cursor}) is dropped: ${lostMessage(id)}`);
        // Otherwise a destroy that crashed half-way.
        void opened.subscribers.remove(id);
        continue;
      }
      this.addSubscription(new Subscription(id, topic, cursor));
    }
    await attaching;
    // Made by another server (or before a pattern of this one reached it): the patterns known
    // here match it too, whatever that server knew when it created it.
    if (this.cluster && !opened.created) {
      await this.attachMissingPatterns(topic, "its pattern matches; the topic was made through another server");
      // Its messages may all be older than this open: no later append event announces them.
      for (const sub of topic.subscriptions.values()) this.pump(sub);
    }
    return { topic, created: opened.created };
  }

  private addSubscription(sub: Subscription | GroupMember): void {
    sub.topic.subscriptions.set(sub.id, sub);
    let mine = this.subscriptionsOf.get(sub.id);
    if (!mine) this.subscriptionsOf.set(sub.id, (mine = new Map()));
    mine.set(sub.topic.name, sub);
  }

  /** The ids of a topic's messages still in the dedupe window, read back from its log (after a restart). */
  private async rebuildIds(topic: Topic): Promise<void> {
    const now = Date.now();
    let found: Array<MsgIdRecord & { count?: number }>;
    try {
      // As runs where the log has them: a busy window is a million ids, a few thousand runs.
      const since = now - this.dedupe.windowMs;
      found = topic.log.recentMsgIdRuns ? await topic.log.recentMsgIdRuns(since, this.dedupe.maxKeys) : await topic.log.recentMsgIds(since, this.dedupe.maxKeys);
    } catch (err) {
      log.error(`topic ${topic.name}: cannot read back the message ids of the dedupe window (publishes sent again may be stored twice):`, err);
      return;
    }
    let read = 0;
    for (const r of found) {
      const count = r.count ?? 1;
      if (count > 1) this.dedupe.addStoredRun(topic.ids, r.msgId, count, r.seq, r.time);
      else this.dedupe.addStored(topic.ids, r.msgId, r.seq, r.time);
      read += count;
    }
    this.rebuiltIds += read;
    // The read-back stops at --dedupe-max-keys ids a topic (what bounds a start's work), where
    // the live window holds that many entries (a run of a library's ids is one).
    if (read >= this.dedupe.maxKeys) {
      log.warn(`topic ${topic.name}: the dedupe window was read back for its newest ${plural(read, "message id")} only (--dedupe-max-keys); a publish sent again with an older id of the last ${formatMs(this.dedupe.windowMs)} may be stored twice`);
    }
    // Topics are read one after another: keep the bound while they are.
    if (this.dedupe.size > this.dedupe.maxKeys) {
      this.dedupe.sort();
      this.dedupe.expire(now);
    }
  }

  /**
   * Appends `payloads` to a topic (created if needed); they are in one group commit, so their
   * seqs are consecutive. With `ids` (the payloads' message ids), a payload whose id is in the
   * topic's dedupe window is not stored: its seq is the original one and its index is in
   * `duplicates`. `headers` (one map per payload) and `ttl` (ms) are stored with each payload.
   * `after`: stored only behind that msgId (lib/server/pub-order.ts).
   */
  private async publish(session: Session, id: number, topicName: string, payloads: Uint8Array[], ids?: PubIds, headers?: Headers[], ttl?: number, after?: string): Promise<PubsReply> {
    this.checkOwner(session, id);
    checkTopic(topicName);
    for (const data of payloads) {
      if (data.length > this.options.maxMessageBytes) {
        throw new MqError(Code.MessageTooLarge, `message of ${data.length} bytes is above the limit of ${this.options.maxMessageBytes} (--max-message-bytes)`);
      }
    }
    const { topic, created } = (await this.topic(topicName, true))!;
    if (this.cluster && ids && this.dedupe.enabled && this.cluster.mayBeStoredElsewhere(topic, session.connectedAt, this.dedupe.windowMs)) await this.fillFromStore(topic, payloads.length, ids);
    // No await from here to the append's registration: a later publish sees this one as being stored.
    if (after !== undefined && this.dedupe.enabled) checkAfter(topic.ids, topicName, after);
    const subscribers = topic.subscriptions.size;
    const now = Date.now();
    const extra = pubExtra(headers, ttl, now);
    if (ids && this.dedupe.enabled) return this.publishOnce(topic, id, payloads, ids, now, { topic: topicName, subscribers, created }, extra);
    let seqs: number[];
    try {
      seqs = await appendAll(topic.log, payloads, now, (i) => appendFields(ids && idOf(ids, i), extra, i));
    } catch (err) {
      throw this.storageError(topic, id, payloads.length, err);
    }
    this.counters.published += payloads.length;
    topic.counts.stored(payloads);
    for (const sub of topic.subscriptions.values()) this.pump(sub);
    return { topic: topicName, seqs, subscribers, created };
  }

  /**
   * `publish` with message ids and the dedupe window on. A run `P:a`…`P:b` (the library's
   * batch) none of which the topic stored or is storing costs one search; otherwise each id is
   * looked up: one in the window answers with its seq; one whose append is in flight (the
   * first send of a retried publish) waits for it; the others are appended together.
   */
  private async publishOnce(topic: Topic, id: number, payloads: Uint8Array[], pubIds: PubIds, now: number, reply: Omit<PubsReply, "seqs">, extra: PubExtra | undefined): Promise<PubsReply> {
    const ids = topic.ids;
    // What is past the window goes first, so that lookups are exact.
    this.dedupe.expire(now);
    if (pubIds.prefix !== undefined) {
      const runs = ids.runsOf(pubIds.prefix);
      const a = pubIds.from;
      if (runs.free(a, a + payloads.length - 1)) {
        const { promise, resolve } = Promise.withResolvers<number[] | null>();
        const pending = { from: a, to: a + payloads.length - 1, seqs: promise, index: 0 };
        runs.pending.push(pending);
        let stored: number[];
        // A shared store: indexes another server stored meanwhile (checked in the append).
        let storedElsewhere = NONE_ELSEWHERE;
        try {
          const fieldsOf = extra && ((i: number) => appendFields(undefined, extra, i));
          const run = { prefix: pubIds.prefix, from: a };
          if (topic.log.appendOnce) ({ seqs: stored, duplicates: storedElsewhere } = await appendAllOnce(topic.log, payloads, now, fieldsOf, run, now - this.dedupe.windowMs));
          else stored = await appendAll(topic.log, payloads, now, fieldsOf, run);
        } catch (err) {
          runs.pending.splice(runs.pending.indexOf(pending), 1);
          resolve(null);
          throw this.storageError(topic, id, payloads.length, err);
        }
        runs.pending.splice(runs.pending.indexOf(pending), 1);
        this.addRuns(runs, a, stored, now);
        resolve(stored);
        if (storedElsewhere.length > 0) return this.storedPartly(topic, payloads, stored, storedElsewhere, reply);
        this.counters.published += payloads.length;
        topic.counts.stored(payloads);
        for (const sub of topic.subscriptions.values()) this.pump(sub);
        return { ...reply, seqs: stored };
      }
    }
    // One id at a time: a retry, a re-run, ids given by the publisher.
    const seqs = new Array<number>(payloads.length);
    const duplicates: number[] = [];
    const fresh: number[] = [];
    const where: Array<{ runs: Runs; n: number } | { key: string }> = [];
    const waits: Array<{ i: number; first: Pending; offset: number }> = [];
    const { promise, resolve } = Promise.withResolvers<number[] | null>();
    const registered: Array<() => void> = [];
    for (let i = 0; i < payloads.length; i++) {
      const split = pubIds.prefix !== undefined ? { prefix: pubIds.prefix, n: pubIds.from + i } : splitMsgId(pubIds.keys[i]!);
      let seq: number | undefined;
      let first: (Pending & { from?: number }) | undefined;
      if (split) {
        const runs = ids.runsOf(split.prefix);
        seq = runs.find(split.n);
        first = seq === undefined ? runs.pendingOf(split.n) : undefined;
        if (seq === undefined && !first) {
          // Registered before the next payload is looked at: the same id twice in one batch is stored once.
          const mine = { from: split.n, to: split.n, seqs: promise, index: fresh.length };
          runs.pending.push(mine);
          registered.push(() => void runs.pending.splice(runs.pending.indexOf(mine), 1));
          where.push({ runs, n: split.n });
        }
        if (first) waits.push({ i, first, offset: split.n - first.from! });
      } else {
        const key = pubIds.keys![i]!;
        seq = ids.keys.get(key);
        first = seq === undefined ? ids.pendingKeys.get(key) : undefined;
        if (seq === undefined && !first) {
          ids.pendingKeys.set(key, { seqs: promise, index: fresh.length });
          registered.push(() => void ids.pendingKeys.delete(key));
          where.push({ key });
        }
        if (first) waits.push({ i, first, offset: 0 });
      }
      if (seq !== undefined) {
        seqs[i] = seq;
        duplicates.push(i);
      } else if (!first) fresh.push(i);
    }
    let storedHere = fresh;
    if (fresh.length > 0) {
      let stored: number[];
      // A shared store: indexes (in `fresh`) another server stored meanwhile (checked in the append).
      let storedElsewhere = NONE_ELSEWHERE;
      try {
        const freshPayloads = fresh.map((i) => payloads[i]!);
        const fieldsOf = (k: number) => appendFields(idOf(pubIds, fresh[k]!), extra, fresh[k]!);
        if (topic.log.appendOnce) ({ seqs: stored, duplicates: storedElsewhere } = await appendAllOnce(topic.log, freshPayloads, now, fieldsOf, undefined, now - this.dedupe.windowMs));
        else stored = await appendAll(topic.log, freshPayloads, now, fieldsOf);
      } catch (err) {
        for (const undo of registered) undo();
        resolve(null);
        throw this.storageError(topic, id, fresh.length, err);
      }
      for (const undo of registered) undo();
      for (let k = 0; k < fresh.length; k++) {
        seqs[fresh[k]!] = stored[k]!;
        const w = where[k]!;
        if ("key" in w) this.dedupe.add(ids, w.key, stored[k]!, now);
        else this.dedupe.addRun(w.runs, w.n, w.n, stored[k]!, now);
      }
      resolve(stored);
      if (storedElsewhere.length > 0) {
        for (const k of storedElsewhere) duplicates.push(fresh[k]!);
        storedHere = indexesBesides(fresh.length, storedElsewhere).map((k) => fresh[k]!);
      }
      this.counters.published += storedHere.length;
      topic.counts.stored(payloads, storedHere);
      for (const sub of topic.subscriptions.values()) this.pump(sub);
    } else resolve([]);
    for (const { i, first, offset } of waits) {
      const stored = await first.seqs;
      if (stored === null) throw new MqError(Code.StorageError, `the server could not store the message with msgId ${JSON.stringify(idOf(pubIds, i))} in topic "${topic.name}" (its first send failed); send it again`);
      seqs[i] = stored[first.index + offset]!;
      duplicates.push(i);
    }
    this.counters.duplicates += duplicates.length;
    if (duplicates.length === 0) return { ...reply, seqs };
    duplicates.sort((x, y) => x - y);
    // Only a request that stored something can have created the topic.
    return { ...reply, created: reply.created && storedHere.length > 0, seqs, duplicates };
  }

  /** The answer to a run of ids some of which (`storedElsewhere`, ascending) another server had stored: those are duplicates. */
  private storedPartly(topic: Topic, payloads: Uint8Array[], seqs: number[], storedElsewhere: number[], reply: Omit<PubsReply, "seqs">): PubsReply {
    const storedHere = indexesBesides(payloads.length, storedElsewhere);
    this.counters.published += storedHere.length;
    this.counters.duplicates += storedElsewhere.length;
    topic.counts.stored(payloads, storedHere);
    for (const sub of topic.subscriptions.values()) this.pump(sub);
    return { ...reply, created: reply.created && storedHere.length > 0, seqs, duplicates: storedElsewhere };
  }

  /**
   * A delayed publish: checked like a publish (the topic is created now, within --max-topics),
   * then kept in the schedule until due; answered once durable there, with no seq yet.
   * `duplicates`: indexes whose msgId is pending in the schedule already.
   */
  private async publishLater(session: Session, id: number, topicName: string, payloads: Uint8Array[], ids: PubIds | undefined, when: { delayMs?: number; at?: number }, headers?: Headers[], ttl?: number) {
    this.checkOwner(session, id);
    checkTopic(topicName);
    const due = dueTime(when, Date.now());
    const limit = Math.min(this.options.maxMessageBytes, MAX_SCHEDULED_BYTES);
    for (const data of payloads) {
      if (data.length > limit) throw new MqError(Code.MessageTooLarge, `delayed message of ${data.length} bytes is above the limit of ${limit} for delayed messages`);
    }
    const { topic, created } = (await this.topic(topicName, true))!;
    // The TTL is kept, not an expiry: it counts from the append, when due.
    let scheduled: Awaited<ReturnType<Scheduler["schedule"]>>;
    try {
      scheduled = await this.scheduler.schedule(topicName, payloads, ids && payloads.map((_, i) => idOf(ids, i)), due, { headers, ttlMs: ttl });
    } catch (err) {
      // A full disk or a read-only one: refused, as a publish is (it was INTERNAL).
      if (err instanceof MqError || errnoCode(err) === undefined) throw err;
      throw new MqError(Code.StorageError, `Cannot schedule the delayed message for topic "${topicName}": ${storageProblem(err)}; nothing was scheduled`, { cause: err });
    }
    const { duplicates, firstDuplicateDue } = scheduled;
    // All of them pending already (a publish sent again): the due of what is pending, not this request's.
    const answerDue = duplicates.length === payloads.length && firstDuplicateDue !== undefined ? firstDuplicateDue : due;
    return { topic: topicName, scheduled: true, due: answerDue, subscribers: topic.subscriptions.size, created, duplicates };
  }

  /** The scheduler's append of due messages: the path of a publish (dedupe window, counters, delivery to subscribers). Returns how many were stored (not dropped by the window). */
  private async appendScheduled(topicName: string, payloads: Uint8Array[], msgIds: string[], fields: ScheduledFields | undefined): Promise<number> {
    const { topic } = (await this.topic(topicName, true))!;
    // Taken after the due check: a delayed message's append time is never before its due time.
    const now = Date.now();
    // Its expiry counts from now, the append, as for a message published now.
    const extra = fields && pubExtra(fields.headers, fields.ttlMs, now);
    if (this.dedupe.enabled) {
      // A shared store: the server that ran the schedule before this one may have appended some.
      if (this.cluster) await this.fillFromStore(topic, payloads.length, { keys: msgIds });
      const reply = await this.publishOnce(topic, 0, payloads, { keys: msgIds }, now, { topic: topicName, subscribers: 0, created: false }, extra);
      return payloads.length - (reply.duplicates?.length ?? 0);
    }
    await appendAll(topic.log, payloads, now, (i) => appendFields(msgIds[i]!, extra, i));
    this.counters.published += payloads.length;
    topic.counts.stored(payloads);
    for (const sub of topic.subscriptions.values()) this.pump(sub);
    return payloads.length;
  }

  /** Adds ids `a`, `a + 1`, … stored as `seqs` to the window: one run per stretch of consecutive seqs (one, for a group commit). */
  private addRuns(runs: Runs, a: number, seqs: number[], now: number): void {
    let start = 0;
    for (let k = 1; k <= seqs.length; k++) {
      if (k < seqs.length && seqs[k] === seqs[k - 1]! + 1) continue;
      this.dedupe.addRun(runs, a + start, a + k - 1, seqs[start]!, now);
      start = k;
    }
  }

  private storageError(topic: Topic, id: number, count: number, err: unknown): MqError {
    log.error(`topic ${topic.name}: cannot append ${plural(count, "message")} of id ${id}:`, err);
    // A shared store (PostgreSQL) fails when it is away, and works again when it is back: sent again later, the publish may pass.
    if (this.cluster) return new MqError(Code.Unavailable, `the server cannot store the message in topic "${topic.name}": its store (${this.storage.kind}) failed: ${errorText(err)}; nothing of this publish was acknowledged, send it again`, { cause: err });
    return new MqError(Code.StorageError, `the server cannot store the message in topic "${topic.name}": ${(err as Error).message}`, { cause: err });
  }

  private async subscribe(session: Session, id: number, filters: string[], from: From, since?: number, explicit: ExplicitOptions = {}) {
    this.checkOwner(session, id);
    for (const filter of filters) checkPattern(filter);
    if (isExplicit(explicit)) for (const filter of filters) checkExplicit(filter, explicit);
    this.checkSubscriptionRoom(id, filters);
    const names = filters.filter((f) => !isPattern(f));
    // The whole request is refused when its new topics do not all fit, before any is created.
    const fresh = [...new Set(names.filter((n) => !this.topics.has(n) && !this.openingTopics.has(n)))];
    if (fresh.length > 0) this.checkTopicRoom(fresh.length, fresh);
    const start = async (topic: Topic): Promise<number> => (since !== undefined ? await topic.log.seqAtTime(since) : from === "earliest" ? topic.log.firstSeq : from === "latest" ? topic.log.nextSeq : Math.max(from, topic.log.firstSeq));
    // `next`: the topic's next seq, so that a client can say when `from` is past it (nothing comes until then).
    const result: Array<{ topic: string; from?: number; next?: number; created: boolean; pattern?: true; matched?: PatternMatch[] }> = [];
    const createdAt = Date.now();
    for (const filter of filters) {
      if (isPattern(filter)) {
        result.push({ topic: filter, created: false, pattern: true, matched: await this.subscribePattern(id, filter, since === undefined ? from : { since }, start, createdAt) });
        continue;
      }
      const { topic, created } = (await this.topic(filter, true))!;
      const newConsumer = await this.addConsumer(id, filter, since === undefined ? from : { since }, createdAt, explicit);
      const cursor = await start(topic);
      // Looked up after the last await: from here to its creation nothing yields.
      const existing = topic.subscriptions.get(id);
      const mismatch = existing && sameKindProblem(existing, id, filter, explicit);
      if (mismatch) {
        if (newConsumer) await this.consumers.remove(id, filter).catch(() => {});
        throw mismatch;
      }
      if (existing instanceof GroupMember) {
        result.push({ topic: filter, from: existing.acked, next: topic.log.nextSeq, created });
        continue;
      }
      if (existing) {
        // Subscribing twice keeps the first; the answer still waits until it is on disk.
        await topic.index.add(id, existing.acked);
        result.push({ topic: filter, from: existing.acked, next: topic.log.nextSeq, created });
        continue;
      }
      try {
        if (isExplicit(explicit)) result.push({ topic: filter, from: await this.joinGroup(id, topic, cursor, explicit), next: topic.log.nextSeq, created });
        else await this.attach(id, topic, cursor);
      } catch (err) {
        if (newConsumer) await this.consumers.remove(id, filter).catch(() => {});
        throw err;
      }
      if (!isExplicit(explicit)) result.push({ topic: filter, from: cursor, next: topic.log.nextSeq, created });
    }
    return { topics: result };
  }

  /** Adds the consumer (id, filter), or keeps the one there is; STORAGE_ERROR when it cannot be written. */
  private async addConsumer(id: number, filter: string, from: From | { since: number }, createdAt: number, explicit: ExplicitOptions = {}): Promise<boolean> {
    try {
      return await this.consumers.add({ id, filter, from, createdAt, ...consumerFields(explicit) });
    } catch (err) {
      log.error(`cannot record the subscription of id ${id} to ${filter}: ${errorText(err)}`);
      throw new MqError(Code.StorageError, `Cannot subscribe id ${id} to "${filter}": ${storageProblem(err)}`, { cause: err });
    }
  }

  /**
   * A pattern: the consumer is kept (and matched against every topic created later), and each
   * topic that exists now and matches gets a subscription from `start`, unless it has one.
   * Returns the matching topics and where each one's subscription is.
   */
  private async subscribePattern(id: number, pattern: string, from: From | { since: number }, start: (topic: Topic) => Promise<number>, createdAt: number): Promise<PatternMatch[]> {
    let added: boolean;
    try {
      added = await this.addConsumer(id, pattern, from, createdAt);
    } catch (err) {
      // A topic created meanwhile may have got a subscription from the pattern.
      await this.dropUncovered(id, pattern);
      throw err;
    }
    const matched: PatternMatch[] = [];
    try {
      for (const topic of [...this.topics.values()]) {
        if (!filterMatches(pattern, topic.name)) continue;
        const cursor = await start(topic);
        // An unsub of the pattern answered meanwhile wins: no subscription it would not cover.
        if (!this.consumers.get(id, pattern)) break;
        // Looked up after the last await: from here to its creation nothing yields.
        const existing = topic.subscriptions.get(id);
        if (existing) {
          matched.push({ topic: topic.name, from: existing.acked, next: topic.log.nextSeq });
          continue;
        }
        await this.attach(id, topic, cursor);
        matched.push({ topic: topic.name, from: cursor, next: topic.log.nextSeq });
      }
    } catch (err) {
      // Not half-subscribed: a start would otherwise complete the pattern from where it was asked.
      if (added) await this.removeConsumer(id, pattern).catch((e) => log.error(`cannot remove the pattern ${pattern} of id ${id} after a failed sub: ${errorText(e)}`));
      throw err;
    }
    return matched.sort((a, b) => (a.topic < b.topic ? -1 : 1));
  }

  /**
   * `id` joins the queue group (or private explicit subscription) `explicit` on `topic`: a new
   * group starts at `cursor`. Durable in DATA/groups.json when this resolves; returns the
   * group's ack floor.
   */
  private async joinGroup(id: number, topic: Topic, cursor: number, explicit: ExplicitOptions): Promise<number> {
    const member = await this.groups.join(topic, id, explicit, cursor);
    this.addSubscription(member);
    // The id may have been destroyed while the groups file was written.
    if (this.registry.owner(id) === undefined) {
      await this.dropSubscription(id, topic.name);
      throw new MqError(Code.UnknownId, `no client with id ${id}`);
    }
    this.pump(member);
    return member.acked;
  }

  /** A new subscription of `id` to `topic` from `cursor`, durable in the topic's index when this resolves, then pumped. */
  private async attach(id: number, topic: Topic, cursor: number): Promise<void> {
    // Visible at once, so a concurrent subscribe of the same id and topic finds it.
    const sub = new Subscription(id, topic, cursor);
    this.addSubscription(sub);
    try {
      await topic.index.add(id, cursor);
    } catch (err) {
      await this.dropSubscription(id, topic.name).catch(() => {});
      log.error(`topic ${topic.name}: cannot record the subscription of id ${id}: ${errorText(err)}`);
      throw new MqError(Code.StorageError, `Cannot subscribe id ${id} to topic "${topic.name}": ${storageProblem(err)}`, { cause: err });
    }
    // The id may have been destroyed while the index was written.
    if (this.registry.owner(id) === undefined) {
      await this.dropSubscription(id, topic.name);
      throw new MqError(Code.UnknownId, `no client with id ${id}`);
    }
    this.pump(sub);
  }

  /**
   * Topic creation: every id with a pattern matching the new topic gets a subscription from
   * its first message. Added at once (before the first append), written to the index in the
   * background of the request: a start gives a matching topic that lacks it one again.
   */
  private attachPatterns(topic: Topic): Promise<unknown> | null {
    // Not for an id being destroyed (its consumers go after its subscriptions).
    const ids = this.consumers.patternIdsMatching(topic.name).filter((id) => !topic.subscriptions.has(id) && this.registry.owner(id) !== undefined && this.roomForPatternTopic(id, topic.name));
    if (ids.length === 0) return null;
    const cursor = topic.log.firstSeq;
    for (const id of ids) this.addSubscription(new Subscription(id, topic, cursor));
    return Promise.all(ids.map((id) => topic.index.add(id, cursor).catch((err) => log.error(`topic ${topic.name}: cannot record the subscription of id ${id} (from its pattern): ${errorText(err)}; the next start adds it again`))));
  }

  /**
   * At start, after every topic was opened: the stored consumers come back (those of ids
   * destroyed by a crashed destroy are removed), a subscription no stored consumer covers is
   * an exact consumer, and a topic matching a pattern that lacks the subscription (created
   * just before a crash, or a pattern sub cut short) gets it where the pattern asked
   * (pattern-start.ts), within --max-subscriptions-per-id.
   */
  private async loadConsumers(): Promise<void> {
    await this.consumers.load((id) => this.registry.owner(id) !== undefined);
    for (const [id, mine] of this.subscriptionsOf) {
      for (const name of mine.keys()) if (!this.consumers.covers(id, name)) this.consumers.addImplied(id, name);
    }
    for (const topic of this.topics.values()) await this.attachMissingPatterns(topic, "its pattern matches; the subscription was not recorded before a stop");
  }

  /**
   * Each id with a pattern matching `topic` but no subscription to it gets one, from the
   * earliest start its matching patterns ask for (pattern-start.ts), within
   * --max-subscriptions-per-id; recorded in the index (an add keeps a row already there).
   */
  private async attachMissingPatterns(topic: Topic, why: string): Promise<void> {
    const patterns = this.consumers.patternsMatching(topic.name).filter((p) => !topic.subscriptions.has(p.id) && this.registry.owner(p.id) !== undefined);
    const starts = new Map<number, number>();
    for (const p of patterns) {
      const cursor = await patternStart(p, topic.log);
      starts.set(p.id, Math.min(cursor, starts.get(p.id) ?? cursor));
    }
    // Clients are connected while a cluster server opens a topic: an unsub of the pattern answered meanwhile wins.
    const stillMatched = (id: number) => this.consumers.patternsMatching(topic.name).some((p) => p.id === id);
    for (const [id, cursor] of starts) {
      // A `sub` or another open may have subscribed it while the starts were read.
      if (topic.subscriptions.has(id) || !stillMatched(id) || this.registry.owner(id) === undefined || !this.roomForPatternTopic(id, topic.name)) continue;
      log.info(`topic ${topic.name}: id ${id} subscribed from seq ${cursor} (${why})`);
      this.addSubscription(new Subscription(id, topic, cursor));
      await topic.index.add(id, cursor).catch((err) => log.error(`topic ${topic.name}: cannot record the subscription of id ${id} (from its pattern): ${errorText(err)}; the next start adds it again`));
      if (!stillMatched(id) && topic.subscriptions.has(id) && !this.consumers.covers(id, topic.name)) await this.dropSubscription(id, topic.name);
    }
  }

  /**
   * --max-subscriptions-per-id counts the topics an id is subscribed to, plus one per pattern
   * (a memory guard): refuses the whole `sub` when its new exact topics, new patterns and the
   * existing topics those match would go over.
   */
  private checkSubscriptionRoom(id: number, filters: string[]): void {
    const held = this.subscriptionsOf.get(id);
    const topics = new Set<string>();
    let patterns = 0;
    for (const filter of new Set(filters)) {
      if (!isPattern(filter)) {
        if (!held?.has(filter)) topics.add(filter);
      } else if (!this.consumers.get(id, filter)) {
        patterns++;
        for (const name of this.topics.keys()) if (!held?.has(name) && filterMatches(filter, name)) topics.add(name);
      }
    }
    const limit = this.limits.maxSubscriptionsPerId;
    const total = this.subscriptionCount(id) + patterns + topics.size;
    if (total > limit) {
      throw new MqError(Code.LimitExceeded, `id ${id} would have ${total} subscriptions, more than ${limit} (--max-subscriptions-per-id counts each topic subscribed to and each pattern): unsubscribe some, use a narrower pattern, or raise the limit`);
    }
  }

  private subscriptionCount(id: number): number {
    return (this.subscriptionsOf.get(id)?.size ?? 0) + this.consumers.patternCount(id);
  }

  /** A topic created later that a pattern of `id` matches: not subscribed when the id is at its limit (logged once per id, counted). */
  private roomForPatternTopic(id: number, name: string): boolean {
    if (this.subscriptionCount(id) < this.limits.maxSubscriptionsPerId) return true;
    this.counters.pattern_skipped++;
    if (!this.limitWarned.has(id)) {
      this.limitWarned.add(id);
      log.warn(`id ${id}: not subscribed to the new topic ${name} its pattern matches: it has ${this.limits.maxSubscriptionsPerId} subscriptions already (--max-subscriptions-per-id; logged once per id, counted in stats pattern_skipped)`);
    }
    return false;
  }

  /** Removes the consumer (id, filter): out of memory first, then its subscriptions no other consumer covers, then its record (a crash in between leaves no subscription the user did not ask for). */
  private async removeConsumer(id: number, filter: string): Promise<string[] | null> {
    const consumer = this.consumers.take(id, filter);
    if (!consumer) return null;
    const dropped = await this.dropUncovered(id, filter);
    await this.consumers.forget(consumer);
    return dropped;
  }

  /** After the consumer (id, `filter`) went: drops the subscriptions it matched that no other consumer of `id` covers; returns their topics. */
  private async dropUncovered(id: number, filter: string): Promise<string[]> {
    const dropped: string[] = [];
    for (const name of [...(this.subscriptionsOf.get(id)?.keys() ?? [])]) {
      if (!filterMatches(filter, name) || this.consumers.covers(id, name)) continue;
      if (await this.dropSubscription(id, name)) dropped.push(name);
    }
    return dropped.sort();
  }

  /**
   * Removes the consumers `filters` of `id`. A topic's subscription ends only when no
   * remaining consumer of the id matches it: `dropped` lists the topics whose subscription
   * ended (the local broker forgets what it buffered of them).
   */
  private async unsubscribe(session: Session, id: number, filters: string[]) {
    this.checkOwner(session, id);
    for (const filter of filters) checkPattern(filter);
    const topics: Array<{ topic: string; unsubscribed: boolean; dropped?: string[] }> = [];
    for (const filter of filters) {
      const dropped = await this.removeConsumer(id, filter);
      topics.push(dropped ? { topic: filter, unsubscribed: true, dropped } : { topic: filter, unsubscribed: false });
    }
    return { topics };
  }

  /** Returns false when `id` was not subscribed to `name`. */
  private async dropSubscription(id: number, name: string): Promise<boolean> {
    // Also by its topic: a destroy that ran while a subscribe awaited has let go of the id's map.
    const sub = this.subscriptionsOf.get(id)?.get(name) ?? this.topics.get(name)?.subscriptions.get(id);
    if (!sub) return false;
    const session = this.forgetSubscription(sub);
    if (sub instanceof GroupMember) await this.groups.left(sub);
    if (session) session.credits.serve(session.conn);
    await sub.topic.index.remove(id);
    return true;
  }

  /** Takes a subscription out of memory here; returns the session of its broker, if connected. */
  private forgetSubscription(sub: Subscription): Session | undefined {
    sub.topic.subscriptions.delete(sub.id);
    const mine = this.subscriptionsOf.get(sub.id);
    mine?.delete(sub.topic.name);
    this.retentionDrops.forget(sub.id, sub.topic.name);
    // Its messages in flight no longer count against the budgets: others may use the room.
    const session = this.sessionOf(sub.id);
    sub.drop(session?.credits);
    return session;
  }

  /** What the cluster (lib/server/cluster.ts) may see and change of this server. */
  private clusterHost(): ClusterHost {
    return {
      topics: this.topics,
      registry: this.registry,
      consumers: this.consumers,
      consumerStore: this.storage.consumers,
      subscriptionsOf: this.subscriptionsOf,
      storedTopics: () => this.store.topics(),
      openTopic: async (name) => {
        const opened = await this.topic(name, false);
        return opened?.topic ?? null;
      },
      addSubscription: (sub) => this.addSubscription(sub),
      dropHere: (id, name) => {
        const sub = this.subscriptionsOf.get(id)?.get(name);
        if (!sub) return;
        const session = this.forgetSubscription(sub);
        if (session) session.credits.serve(session.conn);
      },
      pump: (sub) => this.pump(sub),
      connectedHere: (id) => this.sessionOf(id) !== undefined,
      reloadGroups: async () => {
        const { added, removed } = await this.groups.merge(this.topics, (id) => this.registry.owner(id) !== undefined, (id) => this.sessionOf(id) !== undefined);
        for (const member of removed) this.forgetSubscription(member);
        for (const member of added) {
          this.addSubscription(member);
          this.consumers.addImplied(member.id, member.topic.name);
          this.pump(member);
        }
      },
    };
  }

  /** A local broker's hello over a shared store: ids and cursors are read again first (it may come from another server). */
  private async resumeFromStore(conn: Connection, broker: string): Promise<void> {
    try {
      await this.cluster!.beforeResume(broker);
    } catch (err) {
      log.error(`${conn.label}: cannot read the ids and cursors of local broker ${broker} from the store: ${errorText(err)}`);
      throw new MqError(Code.Unavailable, `the server cannot read the state of local broker ${broker} from its store (${errorText(err)}); try again, or another server`, { fatal: true, cause: err });
    }
  }

  /**
   * A shared store: the message ids of a publish that this server's window lacks may have been
   * stored through another server (a publish retried there): they are looked up in the topic's
   * log and put in the window, where the lookups that follow find them. Answered in the order
   * asked per topic (storedElsewhere), so that `after` still finds the publish before it.
   */
  private async fillFromStore(topic: Topic, count: number, pubIds: PubIds): Promise<void> {
    const missing: string[] = [];
    for (let i = 0; i < count; i++) {
      const key = idOf(pubIds, i);
      if (!storedOrPending(topic.ids, key)) missing.push(key);
    }
    let found;
    try {
      found = await this.cluster!.storedElsewhere(topic, missing);
    } catch (err) {
      log.error(`topic ${topic.name}: cannot look up message ids in the store:`, err);
      throw new MqError(Code.Unavailable, `the server cannot check the message ids of this publish in topic "${topic.name}" against its store: ${errorText(err)}; send it again`, { cause: err });
    }
    // Another request of this server may have stored some meanwhile: the window has those already.
    const now = Date.now();
    for (const r of found) if (!storedOrPending(topic.ids, r.msgId)) this.dedupe.add(topic.ids, r.msgId, r.seq, now);
  }

  private async destroy(session: Session, id: number) {
    this.checkOwner(session, id);
    // The id goes first (at once in memory), so no subscribe can slip in while its
    // subscriptions are dropped; a crash in between leaves subscriptions of an unknown id,
    // which the next start removes.
    await this.registry.destroy(id);
    for (const name of [...(this.subscriptionsOf.get(id)?.keys() ?? [])]) await this.dropSubscription(id, name);
    this.subscriptionsOf.delete(id);
    await this.consumers.removeAll(id);
    // The id is gone from the registry already: its session's Credits let go of it here.
    const current = this.sessions.get(session.broker);
    if (current) {
      current.credits.forget(id);
      current.credits.serve(current.conn);
    }
    return {};
  }

  private ack(session: Session, frame: AckRequest): void {
    if (frame.topic === undefined || (frame.seq === undefined && frame.seqs === undefined)) throw new MqError(Code.BadRequest, 'ack: fields "topic" and "seq" (or "seqs") are required on the server hop');
    if (this.registry.owner(frame.id) !== session.broker) return; // a late ack for a destroyed or foreign id
    const sub = this.subscriptionsOf.get(frame.id)?.get(frame.topic);
    if (!sub) return;
    // `seqs`: per-message acks of an explicit subscription (a cumulative one ignores them).
    const moved = frame.seqs ? (sub instanceof GroupMember ? sub.ackSeqs(frame.seqs, session.credits) : 0) : sub.ack(frame.seq!, session.credits);
    if (moved > 0) {
      this.cursorsMoved.add(sub.topic);
      this.counters.acked += moved;
      sub.topic.counts.acked += moved;
      this.pump(sub);
    }
  }

  /** Messages a client did not process go back to their explicit subscription (or group) for redelivery. */
  private nak(session: Session, frame: NakRequest): void {
    if (frame.topic === undefined || frame.seqs === undefined) throw new MqError(Code.BadRequest, 'nak: fields "topic" and "seqs" are required on the server hop');
    if (this.registry.owner(frame.id) !== session.broker) return;
    const sub = this.subscriptionsOf.get(frame.id)?.get(frame.topic);
    // The nak gives every member of the group, this one included, a turn for what came back.
    if (sub instanceof GroupMember) sub.nak(frame.seqs, session.credits);
  }

  /** Before an unsub or destroy: messages of an explicit subscription its local broker never handed to a client (GroupMember.markBuffered). */
  private buffered(session: Session, frame: BufferedRequest): void {
    if (this.registry.owner(frame.id) !== session.broker) return;
    const sub = this.subscriptionsOf.get(frame.id)?.get(frame.topic);
    if (sub instanceof GroupMember) sub.markBuffered(frame.seqs);
  }

  /** Stores message `seq` of a group's topic in its dead-letter topic (created if needed). */
  private async deadLetter(group: Group, seq: number, deliveries: number): Promise<void> {
    const original = (await group.topic.log.read(seq, 1, 1))[0];
    if (!original || original.seq !== seq) return; // trimmed or lost: nothing left to move
    if (original.expiresAt !== undefined && original.expiresAt <= Date.now()) {
      // Expired while it was out: never delivered again, nor dead-lettered; done, as when a push skips it.
      group.topic.onExpired(1);
      return;
    }
    if (isDeadLetter(original)) {
      // Dead-lettered once already: a second time could loop between two topics (A to B, B to A).
      this.counters.dead_letters_dropped++;
      log.warn(`topic ${group.topic.name}: seq ${seq}, a dead letter of topic "${original.headers![DEAD_TOPIC_HEADER]}", was delivered ${deliveries} times without an ack; dropped, not dead-lettered again`);
      return;
    }
    checkTopic(group.deadLetterTopic); // a default `${topic}.dlq` of a group made before the check at subscribe
    const dead = deadLetterMessage(group.topic.name, original, deliveries);
    const { topic } = (await this.topic(group.deadLetterTopic, true))!;
    // The original's expiry goes with it: a copy must not deliver what the publisher said is stale.
    await topic.log.append(dead.data, Date.now(), { headers: dead.headers, expiresAt: original.expiresAt });
    this.counters.dead_lettered++;
    for (const sub of topic.subscriptions.values()) this.pump(sub);
  }

  /** Deletes what the retention policy lets go (soft: only what every subscriber of a topic is past); one pass at a time. */
  private async applyRetention(policy: ServerRetention): Promise<void> {
    if (this.trimming) return;
    this.trimming = true;
    try {
      // A shared store: one server trims, with the cursors as stored (acks through other servers).
      if (this.cluster && !(await this.cluster.holds("retention"))) return;
      const now = Date.now();
      for (const topic of [...this.topics.values()]) {
        try {
          if (this.cluster) await this.cluster.beforeTrim(topic);
          await trimTopic(topic, policy, now, this.retentionDrops, this.dedupe.windowMs);
        } catch (err) {
          log.error(`topic ${topic.name}: retention failed:`, err);
        }
      }
    } finally {
      this.trimming = false;
    }
  }

  /** The session of the local broker that owns `id`, if it is connected. */
  private sessionOf(id: number): Session | undefined {
    const owner = this.registry.owner(id);
    return owner === undefined ? undefined : this.sessions.get(owner);
  }

  /** Sends what the window and the budgets allow of one subscription to its local broker, if connected. */
  private pump(sub: Subscription): void {
    const session = this.sessionOf(sub.id);
    if (!session) return;
    session.credits.pump(sub, session.conn);
  }

  /** After a hello: every subscription of the broker, in turn (what finds no room waits in its Credits). */
  private pumpSession(session: Session): void {
    for (const id of this.registry.ownedBy(session.broker)) {
      for (const sub of this.subscriptionsOf.get(id)?.values() ?? []) {
        session.credits.pump(sub, session.conn);
      }
    }
  }

  private topicList(): TopicInfo[] {
    return [...this.topics.values()]
      .map((t): TopicInfo => ({ topic: t.name, subscribers: t.subscriptions.size, messages: t.log.count, ...(t.log.lost > 0 ? { lost: t.log.lost } : {}) }))
      .sort((a, b) => (a.topic < b.topic ? -1 : 1));
  }

  /** Messages lost to damaged storage, all topics together (each topic's count is in `topics`). */
  private lost(): number {
    let n = 0;
    for (const t of this.topics.values()) n += t.log.lost;
    return n;
  }

  /** The largest delivery window (messages) of any subscription or group member now; without any, where a subscription's starts (stats only: walks them all). */
  private largestWindow(): number {
    let most = 0;
    for (const subs of this.subscriptionsOf.values()) for (const sub of subs.values()) most = Math.max(most, sub.window.messages);
    return most || MIN_WINDOW_MESSAGES;
  }

  stats(): ServerStats {
    const files = this.store.openFiles?.();
    return {
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      topics: this.topics.size,
      max_topics: this.limits.maxTopics,
      ...(files ? { open_files: files.open, max_open_files: files.max } : {}),
      ...(this.store.cachedBytes ? { tail_cache_bytes: this.store.cachedBytes() } : {}),
      ids: this.registry.size,
      sessions: this.sessions.size,
      connections: this.connections.size,
      delivery_window_max: this.largestWindow(),
      ...this.counters,
      dedupe_keys: this.dedupe.size,
      dedupe_evicted: this.dedupe.evicted,
      scheduled: this.scheduler.pending,
      scheduled_bytes: this.scheduler.pendingBytes,
      scheduled_delivered: this.scheduler.delivered,
      lost: this.lost(),
      ...(this.cluster ? { store_events: this.cluster.events, store_refreshes: this.cluster.refreshed } : {}),
      retention_dropped: this.retentionDrops.list(),
      rss_bytes: rss(),
    };
  }

  /** Each topic's name and counters, cheap to walk (the HTTP API samples them every second for rates). */
  topicCounters(): Iterable<Pick<Topic, "name" | "counts">> {
    return this.topics.values();
  }

  /** What the HTTP API and /metrics read (lib/server/view.ts): walked on demand, never per message; `topic`: that topic only. */
  view(topic?: string): ServerView {
    const one = topic === undefined ? undefined : this.topics.get(topic);
    const topics = topic === undefined ? this.topics.values() : one ? [one] : [];
    return buildView({ serving: this.serving, stats: this.stats(), topics, sessions: this.sessions.values(), registry: this.registry, consumers: this.consumers });
  }

  /** False once stop() was called (the HTTP endpoint's /healthz). */
  get serving(): boolean {
    return this.stopping === null;
  }

  /** Graceful stop: no new connections, in-flight writes finish, indexes and logs are flushed. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  /**
   * Before the sessions close: each local broker that takes `drain` stops handing out and lets
   * its clients acknowledge what they hold, and says `drained`; their acks are served here
   * before the groups' last write. Without it a message in a client's hands at the stop went
   * back to its queue group and came again after the restart (SPEC §3: not after a clean one).
   */
  private async drainSessions(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const session of this.sessions.values()) {
      if (!session.drains || session.conn.closed) continue;
      // Its acks held behind answers it had not read yet count before the groups' last write.
      session.conn.serveHeldNow();
      session.drained = Promise.withResolvers<void>();
      session.conn.send({ op: "drain" });
      waits.push(session.drained.promise);
    }
    if (waits.length === 0) return;
    let timer: Timer | undefined;
    await Promise.race([Promise.all(waits), new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_WAIT_MS)))]);
    clearTimeout(timer);
  }

  private async doStop(): Promise<void> {
    this.listener?.stop(false);
    const deadline = Date.now() + 5000;
    while (this.inFlight > 0 && Date.now() < deadline) await Bun.sleep(5);
    if (this.cursorTimer) clearInterval(this.cursorTimer);
    if (this.stallTimer) clearInterval(this.stallTimer);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    if (this.dedupeTimer) clearInterval(this.dedupeTimer);
    this.cluster?.stop();
    await this.drainSessions();
    // No frame is served from here on: an ack served after the groups' last write below would be
    // counted and then forgotten (delivered again after the restart). Members hand back what they
    // hold, not counting it as delivered.
    for (const conn of this.connections) conn.close(CloseReason.Shutdown);
    // Its appends in progress finish before the topics close.
    await this.scheduler.stop();
    await this.groups.close();
    await this.storage.close();
    this.listener?.stop(true);
    log.info(`stopped (${hostPort(this.options.hostname, this.port)}, ${this.storage.kind === "memory" ? "store memory" : this.storage.kind === "postgres" ? `store postgres ${postgresLocation(this.options.storeUrl ?? "")}` : `data ${this.options.dataDir}`})`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** `127.0.0.1:7600`, `[::1]:7600`. */
function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** 120000 → "2m", 2500 → "2.5s". */
function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}

/** The resident set size, or null when it cannot be read (it takes a file descriptor, which may be lacking). */
function rss(): number | null {
  try {
    return process.memoryUsage.rss();
  } catch {
    return null;
  }
}

/** What went wrong with the disk, for a client: the errno and what it means, without the server's paths. */
function storageProblem(err: unknown): string {
  const code = errnoCode(err);
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return `the server's disk is full (${code})`;
    case "EMFILE":
    case "ENFILE":
      return `the server has no file descriptor left (${code}); its open-file limit (ulimit -n) is too low for its connections`;
    case "EROFS":
      return "the server's data directory is read-only (EROFS)";
    case "EACCES":
    case "EPERM":
      return `the server may not write its data directory (${code})`;
    case "EIO":
      return "the server's disk reports an I/O error (EIO)";
    default:
      return code ? `the server cannot write to its disk (${code})` : `the server cannot write to its disk (${err instanceof Error ? err.message : String(err)})`;
  }
}

/** The UNKNOWN_ID message for an id whose record the registry lost. */
function lostMessage(id: number): string {
  return `client id ${id} is no longer known: its record was lost when the server's registry (DATA/clients) was damaged; create a new id`;
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

