/**
 * The local broker: one per host. Clients reach it over a Unix socket; it maps their small
 * local ids to the server's global ids, forwards requests to the server over TCP, holds
 * the messages the server pushes until a client receives them, and acknowledges them to
 * the server once a client has.
 */
import * as fs from "node:fs";
import { isIP } from "node:net";
import * as path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import type { Socket, UnixSocketListener } from "bun";
import { errorText, logger, SaidOnce } from "../log.ts";
import { DEFAULT_HEARTBEAT_MISSED, DEFAULT_HEARTBEAT_MS, DEFAULT_HELLO_TIMEOUT_MS, DEFAULT_LOCAL_LIMITS, DEFAULT_MAX_MESSAGE_BYTES, MAX_SOCKET_PATH_BYTES, maxFrameBytes } from "../config.ts";
import { Code, MqError, toMqError } from "../errors.ts";
import { lockDataDir, makeDataDir, writeFileAtomic } from "../store/fsutil.ts";
import { UnsentAcks } from "./unsent-acks.ts";
import { IdRanges } from "../store/id-ranges.ts";
import { defineCounters, LOCAL_COUNTERS, type LocalStats, type ServerStats } from "../metrics.ts";
import { CloseReason, Connection, type ConnectionHandler, type SocketLike } from "../wire/connection.ts";
import { socketBytes } from "../wire/frame.ts";
import { pushedExtraProblem, pushedMessage } from "./pushed-extra.ts";
import { pubsHeadersProblem } from "../wire/headers.ts";
import { MAX_MSGS_PER_FRAME, PROTOCOL_VERSION, pubsIdsProblem, type Frame, type Message, type MsgsFrame, type Outgoing } from "../wire/messages.ts";
import { capabilities, DRAIN_CAP, MSGS_IDS_CAP, ops, type ClientOp, type Op, type RequestOf } from "../wire/ops.ts";
import { checkGroupName } from "../wire/group-name.ts";
import { checkPattern, checkTopic, isPattern } from "../wire/topic.ts";
import { Slots } from "../store/slots.ts";
import { endedTopics } from "./ended.ts";
import { ForwardWindow, payloadBytes } from "./forward-window.ts";
import { Follows } from "./follow.ts";
import { IdTable } from "./id-table.ts";
import { Inbox, type Waiter } from "./inbox.ts";
import { RecentMessages } from "./recent-messages.ts";
import { LocalLatency } from "./latency.ts";
import { BACKOFF_MAX_MS, formatAddress, REFUSED_BACKOFF_MAX_MS, ServerList, type ServerAddress } from "./server-list.ts";
import { SharedCall } from "./shared-call.ts";

const log = logger("local");

export interface LocalOptions {
  socketPath: string;
  /** The server, or the servers in the order tried (`--server A,B,…`: lib/local/server-list.ts). */
  server: ServerAddress | readonly ServerAddress[];
  dataDir: string;
  token?: string;
  /** CA certificate (PEM) that signs the server's certificate: turns TLS on. */
  tlsCa?: string;
  helloTimeoutMs?: number;
  /** How long a forwarded request may wait for the server before it fails UNAVAILABLE. */
  requestTimeoutMs?: number;
  /** Ping a silent server after this many ms (0: no heartbeat); DEFAULT_HEARTBEAT_MS. */
  heartbeatMs?: number;
  /** Reconnect after this many silent intervals in a row; DEFAULT_HEARTBEAT_MISSED. */
  heartbeatMissed?: number;
  limits?: Partial<LocalLimits>;
  /**
   * `mq up`: reach the server of this process in memory (lib/wire/memory-link.ts) instead of
   * over TCP; given how to make the Connection on a socket, returns that Connection.
   */
  inProcess?: (attach: (socket: SocketLike) => Connection) => Connection;
}

/** Limits on what the clients of this host may take (docs/security.md); defaults in DEFAULT_LOCAL_LIMITS (lib/config.ts). */
export interface LocalLimits {
  maxConnections: number;
  frameTimeoutMs: number;
  maxInFlight: number;
  /**
   * Budgets for the deliveries this broker holds (buffered or handed to a client, not yet
   * acknowledged), for all its ids together and per id. Announced in the hello: the server
   * stops pushing while one is full. One message may go beyond, so a bigger one still comes.
   */
  bufferBytes: number;
  bufferBytesPerId: number;
}

/** Per client connection: deliveries handed out and not yet acknowledged, by tag. */
interface ClientState {
  nextTag: number;
  /** Per tag, what a recv handed out and the inbox's epoch when it was taken. */
  delivered: Map<number, { local: number; messages: Message[]; epoch: number }>;
  waiters: Set<Waiter & { inbox: Inbox }>;
}

const MAX_RECV_BATCH = 1000;
/** A graceful stop waits up to this long for clients to acknowledge what they were handed. */
const STOP_ACK_GRACE_MS = 1000;
const MAX_WAIT_MS = 24 * 3600 * 1000;
/** While reconnecting, a request waits this long for the server before failing UNAVAILABLE. */
const RECONNECT_GRACE_MS = 1000;
/** Grace + this + the 250 ms timeout sweep stays under the 5 s the CLI promises for UNAVAILABLE. */
const REQUEST_TIMEOUT_MS = 3500;
/**
 * A sub or unsub names many topics, and the server does work per topic (a new one is created
 * and fsynced, a subscription recorded): it gets this much more time per topic, up to
 * REQUEST_TIMEOUT_TOPICS_MAX_MS more, which keeps it under the library's 15 s.
 */
const REQUEST_TIMEOUT_PER_TOPIC_MS = 10;
const REQUEST_TIMEOUT_TOPICS_MAX_MS = 11_000;
/** The connection to the server on `socket`; the server's frames may be as large as it likes. */
function attachTo(socket: SocketLike, handler: ConnectionHandler, label: string): Connection {
  return new Connection(socket, handler, { maxFrameBytes: maxFrameBytes(1024 * 1024 * 1024), label });
}

/** The client-hop ops with a handler (hello is answered before them). */
type ClientHandled = Exclude<ClientOp, "hello">;
/** The ops the table says are forwarded as they are, with at most their id translated. */
type ForwardedOp = { [K in Op]: (typeof ops)[K]["id"] extends "none" | "global" ? K : never }[Op];

export class LocalBroker {
  private listener: UnixSocketListener<Connection> | null = null;
  private upstream: Connection | null = null;
  private upstreamError: MqError | null = null;
  /** Why the last attempt at each server failed, refusals included (by address, in the order of the list): told to clients that get UNAVAILABLE, not only logged. */
  private readonly failures = new Map<string, string>();
  /**
   * Per server address, the last two refusals and TLS handshake failures logged: each logged
   * once while it lasts. Two, not one: behind DNS round robin or a load balancer one address
   * is several servers, which may fail for two reasons turn about — not news at every turn.
   */
  private readonly refusals = new SaidOnce(1024, 2);
  private readonly tlsFailures = new SaidOnce(1024, 2);
  /** The server last connected to, and why it was lost: a connection to another one is a failover. */
  private lastServer: { address: string; lost: string } | null = null;
  private connectedWaiters: Array<() => void> = [];
  private readonly clients = new Set<Connection>();
  private readonly inboxes = new Map<number, Inbox>();
  /** The server said it is stopping (`drain`): nothing is handed out until the session ends. */
  private serverStopping = false;
  /** Floors acknowledged while the server was away, not sent yet; kept across a graceful restart. */
  private readonly unsentAcks: UnsentAcks;
  private maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  private stopped = false;
  private stopping: Promise<void> | null = null;
  private clientCount = 0;
  private unlock: () => void = () => {};
  /** Client requests being worked on (forwarded and what follows), for a graceful stop. */
  private serving = 0;
  /** Requests forwarded and unanswered, at most as many and as many bytes as the link needs (lib/local/forward-window.ts). */
  private readonly forwardWindow = new ForwardWindow();
  /**
   * Requests with answers that grow with the server's topics, in flight at once (`forward`):
   * two answers of 100,000 topics (23 MB each) stay under the server's MAX_UNREAD_BYTES.
   */
  private readonly largeAnswers = new Slots(2);
  /** Clients asking for the topic list at once share one answer (lib/local/shared-call.ts). */
  private readonly topicsCall = new SharedCall(() => this.forward({ op: "topics" }));
  /** Requests waiting for room in the forward window, first come first served. */
  private readonly forwardQueue: Array<{ bytes: number; admit: () => void }> = [];
  private readonly servers: ServerList;
  private readonly limits: LocalLimits;
  private stallTimer: ReturnType<typeof setInterval> | null = null;
  /**
   * Local ids that the server no longer knows (it lost their records, or said UNKNOWN_ID
   * for them), with the message their UNKNOWN_ID carries. Learnt anew at every connect.
   */
  private readonly goneOnServer = new Map<number, string>();
  /** The ops the server announced in its hello reply (`caps`); null: it did not say (an older server). */
  private serverCaps: Set<string> | null = null;
  /** Declared (name, unit, help) in LOCAL_COUNTERS, lib/metrics.ts. */
  readonly counters = defineCounters(LOCAL_COUNTERS);
  /** Messages pushed lately, shared by the ids they are pushed for one by one. */
  private readonly recent = new RecentMessages(this.counters);
  /** End-to-end and publish-to-ack latency (/metrics). */
  readonly latency = new LocalLatency();
  /** Push delivery to clients that follow an id (follow.ts). */
  private readonly follows = new Follows({
    inbox: (local) => (this.global(local), this.inbox(local)),
    acknowledge: (local, inbox, messages, epoch) => this.ackUpstream(local, inbox, messages, epoch),
    giveBack: (local, inbox, messages, epoch, counted) => inbox.putBack(counted ? this.giveBack(local, inbox, messages, epoch) : messages, epoch),
    serve: (inbox) => this.serveWaiters(inbox),
    delivered: (count) => {
      this.counters.delivered += count;
      this.counters.pushed += count;
    },
  });

  private constructor(
    private readonly options: LocalOptions,
    private readonly identity: string,
    /** Never logged, never in stats: see loadSecret. */
    private readonly secret: string,
    private readonly ids: IdTable,
  ) {
    this.servers = new ServerList(Array.isArray(options.server) ? options.server : [options.server as ServerAddress]);
    this.limits = { ...DEFAULT_LOCAL_LIMITS, ...options.limits };
    this.unsentAcks = new UnsentAcks(path.join(options.dataDir, "unsent-acks.json"));
  }

  /** What the last graceful stop could not send: the inboxes acknowledge it again instead of delivering it twice. */
  private loadUnsentAcks(): void {
    const { floors, problem } = this.unsentAcks.load();
    if (problem) log.warn(`${this.unsentAcks.file}: ${problem}; left out (messages acknowledged while the server was away before the last stop may come again)`);
    for (const { local, topic, seq } of floors) {
      if (this.ids.global(local) === undefined) this.unsentAcks.dropId(local);
      else this.inbox(local).seedAcked(topic, seq);
    }
    if (floors.length > 0) log.info(`${floors.length} acknowledgement${floors.length === 1 ? "" : "s"} made while the server was away, kept by the last stop: sent once connected`);
  }

  /** Sends what was acknowledged while the server was away, on the new session. */
  private sendUnsentAcks(conn: Connection): void {
    if (this.unsentAcks.size === 0) return;
    for (const { local, topic, seq } of this.unsentAcks.take()) {
      const global = this.ids.global(local);
      if (global !== undefined) conn.send({ op: "ack", id: global, topic, seq });
    }
  }

  static async start(options: LocalOptions): Promise<LocalBroker> {
    makeDataDir(options.dataDir);
    // Two brokers on one data directory would share an identity and one id table.
    const unlock = lockDataDir(options.dataDir, "mq local");
    let broker: LocalBroker;
    try {
      const identity = loadIdentity(path.join(options.dataDir, "identity"));
      const secret = loadSecret(path.join(options.dataDir, "secret"));
      await claimSocketPath(options.socketPath);
      broker = new LocalBroker(options, identity, secret, new IdTable(path.join(options.dataDir, "ids")));
      broker.loadUnsentAcks();
      broker.listen();
    } catch (err) {
      unlock(); // a failed start leaves the directory free
      throw err;
    }
    broker.unlock = unlock;
    broker.stallTimer = setInterval(() => {
      const now = Date.now();
      for (const c of broker.clients) c.checkStall(now);
      broker.recent.tick();
      for (const inbox of broker.inboxes.values()) inbox.detachPending();
    }, 1000);
    void broker.connectUpstream();
    log.info(`listening on ${options.socketPath} (identity ${broker.identity}, server${broker.servers.size > 1 ? "s" : ""} ${broker.servers}, ${broker.ids.size} id${broker.ids.size === 1 ? "" : "s"})`);
    return broker;
  }

  /** True while the server connection is up. */
  get connected(): boolean {
    return this.upstream !== null;
  }

  private listen(): void {
    const handler = this.clientHandler();
    // Created 0600 from the start (umask), not chmod-ed after a window with default permissions.
    const umask = process.umask(0o177);
    try {
      this.listener = this.listenUnix(handler);
    } catch (err) {
      // Past MAX_SOCKET_PATH_BYTES some systems answer a bare EINVAL.
      const bytes = Buffer.byteLength(this.options.socketPath);
      const long = bytes > MAX_SOCKET_PATH_BYTES ? ` (the path is ${bytes} bytes; a Unix socket path may hold ${MAX_SOCKET_PATH_BYTES})` : "";
      throw new MqError(Code.Unavailable, `Cannot listen on the socket ${this.options.socketPath}: ${errorText(err)}${long}; choose another --socket`, { cause: err });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(this.options.socketPath, 0o600);
  }

  private listenUnix(handler: ConnectionHandler): UnixSocketListener<Connection> {
    return Bun.listen<Connection>({
      unix: this.options.socketPath,
      socket: {
        open: (socket: Socket<Connection>) => {
          const conn = new Connection(socket, handler, {
            maxFrameBytes: maxFrameBytes(this.maxMessageBytes),
            label: `client ${++this.clientCount}`,
            helloTimeoutMs: this.options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
            frameTimeoutMs: this.limits.frameTimeoutMs,
            maxInFlight: this.limits.maxInFlight,
            answersPeer: true,
          });
          conn.state = { nextTag: 1, delivered: new Map(), waiters: new Set() } satisfies ClientState;
          socket.data = conn;
          if (this.clients.size >= this.limits.maxConnections) {
            log.warn(`${conn.label}: refused: ${this.clients.size} clients connected already (--max-connections)`);
            return conn.fail(undefined, new MqError(Code.Unavailable, `the local broker has too many clients (limit ${this.limits.maxConnections})`, { fatal: true }));
          }
          this.clients.add(conn);
          log.debug(`${conn.label}: connected`);
        },
        data: (socket, chunk) => socket.data?.onData(socketBytes(chunk)),
        drain: (socket) => socket.data?.onDrain(),
        close: (socket) => socket.data?.onClose(),
        error: (socket, err) => log.warn(`${socket.data?.label ?? "client"}: socket error:`, err),
      },
    });
  }

  // --- the server side ---

  /**
   * Connects to the first server of the list (lib/local/server-list.ts) that answers the hello,
   * trying them in turn. `afterLoss`: the "lost the server" line already said we are
   * reconnecting; failures go to debug.
   */
  private async connectUpstream(afterLoss = false): Promise<void> {
    let attempts = 0;
    const handler: ConnectionHandler = {
      frame: (conn, frame) => {
        if (frame.op === "drain") return void this.drainForServer(conn);
        if (frame.op !== "msgs") throw new MqError(Code.UnknownOp, `op ${JSON.stringify(frame.op)} is not served by a local broker`);
        try {
          return this.onPush(frame, conn);
        } catch (err) {
          this.refusePush(conn, toMqError(err));
        }
      },
      invalid: (conn, err) => this.refusePush(conn, err),
      closed: (conn, reason) => {
        if (this.upstream !== conn) return;
        this.upstream = null;
        // Handing out resumes from the buffer (what the server held back goes on from there).
        if (this.serverStopping) {
          this.serverStopping = false;
          for (const inbox of this.inboxes.values()) queueMicrotask(() => this.serveWaiters(inbox));
        }
        if (this.stopped) return;
        log.warn(`lost the server ${this.serverAddress} (${reason}); reconnecting`);
        this.counters.reconnects++;
        this.lastServer = { address: this.serverAddress, lost: String(reason) };
        this.servers.lost();
        // The server gave back what explicit subscriptions held here: not handed out from this buffer any more.
        for (const inbox of this.inboxes.values()) inbox.dropExplicit();
        void this.connectUpstream(true);
      },
    };
    while (!this.stopped) {
      attempts++;
      const address = this.servers.current;
      const addressText = formatAddress(address);
      let conn: Connection | undefined;
      let tlsFailure: string | undefined;
      // With TLS and no `handshake` handler, Bun (1.4) resolves Bun.connect before it calls
      // `open`: whichever comes first makes the Connection, the other finds it.
      const attach = (s: Socket<Connection>): Connection => (s.data ??= attachTo(s, handler, `server ${addressText}`));
      try {
        if (this.options.inProcess) conn = this.options.inProcess((socket) => attachTo(socket, handler, `server ${addressText}`));
        else {
          const socket = await Bun.connect<Connection>({
            hostname: address.hostname,
            port: address.port,
            ...(this.options.tlsCa ? { tls: { ca: this.options.tlsCa } } : {}),
            socket: {
              open: (s) => void attach(s),
              handshake: (_s, ok, err) => {
                // Logged with the failed attempt below, once: a certificate that is not trusted now
                // is not trusted at the next attempt either (every 2 s at most).
                if (!ok) tlsFailure = err?.message ?? "unknown reason";
              },
              data: (s, chunk) => s.data?.onData(socketBytes(chunk)),
              drain: (s) => s.data?.onDrain(),
              close: (s) => s.data?.onClose(),
              error: (s, err) => log.debug(`server ${addressText}: socket error:`, err),
            },
          });
          conn = attach(socket);
        }
        const hello: Extract<Outgoing, { op: "hello" }> = {
          op: "hello",
          version: PROTOCOL_VERSION,
          broker: this.identity,
          secret: this.secret,
          bufferBytes: this.limits.bufferBytes,
          bufferBytesPerId: this.limits.bufferBytesPerId,
          // The ops it serves, and that it takes a `msgs` frame for several of its ids.
          caps: [...capabilities("client"), MSGS_IDS_CAP, DRAIN_CAP],
        };
        if (this.options.token !== undefined) hello.token = this.options.token;
        const reply = await conn.request(hello, 5000).catch((err) => {
          // A server from before the table of operations refuses `caps` as an unknown field
          // (BAD_REQUEST, not fatal): say hello again without it.
          if (err instanceof MqError && err.code === Code.BadRequest && err.message.includes('"caps"') && !this.stopped) {
            delete hello.caps;
            return conn!.request(hello, 5000);
          }
          throw err;
        }).catch((err) => {
          // A server from before secrets and budgets (mq 0.1) refuses their fields as unknown
          // (BAD_REQUEST, not fatal): say hello again without them; it pushes one window per
          // subscription, and it has no secrets to check.
          if (!(err instanceof MqError && err.code === Code.BadRequest) || this.stopped) throw err;
          log.warn(`the server ${this.serverAddress} does not take buffer budgets or a broker secret (an older version?): it may push up to one window (1 MiB) per subscription`);
          const { bufferBytes: _b, bufferBytesPerId: _p, secret: _s, caps: _c, ...older } = hello;
          return conn!.request(older, 5000);
        });
        if (this.stopped) return conn.close(CloseReason.Shutdown);
        // What the server serves; a server that does not say (older than `caps`) is asked
        // everything, and refuses what it does not know itself.
        this.serverCaps = Array.isArray(reply.caps) ? new Set(reply.caps.filter((op): op is string => typeof op === "string")) : null;
        this.forwardWindow.connected(Number.isSafeInteger(reply.maxInFlight) && (reply.maxInFlight as number) > 0 ? (reply.maxInFlight as number) : undefined);
        if (typeof reply.maxMessageBytes === "number" && reply.maxMessageBytes !== this.maxMessageBytes) {
          this.maxMessageBytes = reply.maxMessageBytes;
          // Clients connected before the server told us its limit get the new one too.
          for (const c of this.clients) c.maxFrameBytes = maxFrameBytes(this.maxMessageBytes);
        }
        this.upstream = conn;
        this.upstreamError = null;
        this.sendUnsentAcks(conn);
        this.failures.clear();
        this.refusals.forget(addressText);
        this.tlsFailures.forget(addressText);
        this.servers.connected();
        // A server that stops answering (stopped, or a network that drops everything) is
        // noticed within a few intervals: clients then get UNAVAILABLE instead of waiting.
        conn.startHeartbeat(this.options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, this.options.heartbeatMissed ?? DEFAULT_HEARTBEAT_MISSED);
        const from = this.lastServer;
        if (from && from.address !== addressText) {
          this.counters.failovers++;
          log.warn(`connected to the server ${addressText} (failed over from ${from.address}: ${from.lost})${attempts > 1 ? ` after ${attempts} attempts` : ""}`);
        } else log.info(`connected to the server ${addressText}${this.options.inProcess ? " in this process (in memory)" : ""}${attempts > 1 ? ` after ${attempts} attempts` : ""}`);
        this.lastServer = { address: addressText, lost: "" };
        this.checkLost(IdRanges.fromFlat(reply.lost));
        for (const w of this.connectedWaiters.splice(0)) w();
        return;
      } catch (err) {
        conn?.close();
        const e = err instanceof MqError ? err : new MqError(Code.Unavailable, `server ${addressText} unreachable`, { cause: err });
        const refused = e.code === Code.AuthFailed || e.code === Code.VersionMismatch || e.code === Code.IdentityInUse;
        let why = `${e.code}: ${e.message}`;
        if (refused) {
          if (this.refusals.first(addressText, `${e.code} ${e.message}`)) {
            const next = this.servers.size > 1 ? "trying the other servers; retrying this one" : "retrying";
            log.warn(`cannot reach the server ${addressText}: refused: ${e.code}: ${e.message}; ${next} with backoff up to ${REFUSED_BACKOFF_MAX_MS / 1000} s (logged once)`);
          }
        } else {
          // The cause, not the wrapper: "cannot reach the server X: connection refused (ECONNREFUSED)".
          why = tlsFailure !== undefined ? `TLS handshake failed: ${tlsFailure}` : err instanceof MqError ? err.message : errorText(err);
          // A TLS server drops a plaintext hello without a word (it sees no TLS handshake).
          if (!this.options.tlsCa && !this.options.inProcess && why.includes(CloseReason.PeerClosed)) why += ` (if that server serves TLS, give this broker --tls-ca FILE)`;
          // OpenSSL's words for a certificate that names another host; an address dialed as an IP must be an IP: entry.
          if (tlsFailure?.includes("altnames")) {
            const host = addressText.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
            why += ` (the server's certificate must name ${host} in its subjectAltName, as ${isIP(host) ? "IP:" : "DNS:"}${host}; docs/security.md)`;
          }
          if (tlsFailure !== undefined) {
            if (this.tlsFailures.first(addressText, tlsFailure)) {
              log.warn(`cannot reach the server ${addressText}: ${why}; retrying every ${BACKOFF_MAX_MS / 1000} s at most (logged once)`);
            } else log.debug(`server ${addressText}: attempt ${attempts} failed: ${why}`);
          } else if (attempts <= this.servers.size && !afterLoss) log.warn(`cannot reach the server ${addressText}: ${why}; retrying every ${BACKOFF_MAX_MS / 1000} s at most`);
          else log.debug(`server ${addressText}: attempt ${attempts} failed: ${why}`);
        }
        this.failures.set(addressText, why);
        // The next server in the list at once while some are untried; then capped exponential
        // backoff with jitter, so that many local brokers do not stampede a restarted server.
        const wait = this.servers.failed(Date.now(), refused);
        // What clients waiting for a server are told: a refusal once every server refused; with
        // several, UNAVAILABLE (they retry) while one is only unreachable. One server: its
        // refusal stays the answer until it is connected to, as always.
        if (refused && this.servers.allRefused) this.upstreamError = this.servers.size > 1 ? this.refusedByAll(e) : e;
        else if (!refused && this.servers.size > 1) this.upstreamError = null;
        if (wait > 0) await Bun.sleep(wait);
      }
    }
  }

  /**
   * After a (re)connect: the ids of this table whose records the server lost stop being
   * served, recv included, and answer UNKNOWN_ID saying why (never a silent "no message").
   */
  private checkLost(lost: IdRanges): void {
    this.goneOnServer.clear();
    if (lost.empty) return;
    const hit: string[] = [];
    for (const [local, global] of this.ids.entries()) {
      if (!lost.has(global)) continue;
      hit.push(`${local} (global ${global})`);
      this.markGone(local, `client id ${local} is no longer known: the server lost its record (global id ${global}; the server's DATA/clients was damaged); destroy it and create a new id`);
    }
    if (hit.length > 0) log.error(`the server lost the records of ${hit.length} ids of this host: ${hit.slice(0, 20).join(", ")}${hit.length > 20 ? ", …" : ""}; they answer UNKNOWN_ID until destroyed`);
  }

  /** Stops serving `local`: its buffered messages go, and waiting recvs wake up to the error. */
  private markGone(local: number, message: string): void {
    this.goneOnServer.set(local, message);
    const inbox = this.inboxes.get(local);
    if (!inbox) return;
    this.inboxes.delete(local);
    this.unsentAcks.dropId(local);
    if (inbox.pending > 0) log.error(`id ${local}: ${inbox.pending} buffered messages dropped: the server no longer knows the id`);
    for (const w of inbox.waiters.splice(0)) w.resolve([], inbox.epoch);
    this.follows.end(inbox, new MqError(Code.UnknownId, message));
  }

  /** A forwarded request of a mapped id was answered UNKNOWN_ID: the server no longer knows it. */
  private serverForgot(local: number, global: number) {
    return (err: unknown): never => {
      if (err instanceof MqError && err.code === Code.UnknownId && this.ids.global(local) === global && !this.goneOnServer.has(local)) {
        log.error(`id ${local} (global ${global}): the server answered UNKNOWN_ID (${err.message}); the id answers UNKNOWN_ID until destroyed`);
        this.markGone(local, `client id ${local} is no longer known to the server (global id ${global}): ${err.message}; destroy it and create a new id`);
      }
      throw err;
    };
  }

  /**
   * Every server of the list refused this broker (`last`: the latest refusal): the refusal's
   * code, and each server's own reason — they may differ (another token, another version),
   * and the last one alone would hide the others.
   */
  private refusedByAll(last: MqError): MqError {
    const each = this.servers.addresses.map(formatAddress).filter((a) => this.failures.has(a)).map((a) => `${a}: ${this.failures.get(a)}`);
    return new MqError(last.code, `servers ${this.servers} each refused this local broker (${each.join("; ")})`, { cause: last });
  }

  /** What a request is told while there is no server connection: the refusal, or UNAVAILABLE with the last failed attempt. */
  private whyNoServer(): { code: string; message: string } {
    if (this.upstreamError) return { code: this.upstreamError.code, message: this.upstreamError.message };
    let why = "";
    if (this.servers.size === 1) {
      const [only] = this.failures.values();
      if (only !== undefined) why = ` (the last attempt: ${only})`;
    } else if (this.failures.size > 0) {
      // Each server's own last failure: one may be down while another refuses this broker's token.
      why = ` (${this.servers.addresses.map(formatAddress).filter((a) => this.failures.has(a)).map((a) => `${a}: ${this.failures.get(a)}`).join("; ")})`;
    }
    return { code: Code.Unavailable, message: `${this.servers.size > 1 ? "servers" : "server"} ${this.servers} unreachable${why}` };
  }

  /** The server connection, waiting briefly for a reconnect in progress; UNAVAILABLE otherwise. */
  private async server(): Promise<Connection> {
    if (this.upstream) return this.upstream;
    if (this.stopped) throw new MqError(Code.Unavailable, "the local broker is shutting down");
    const { promise, resolve } = Promise.withResolvers<void>();
    this.connectedWaiters.push(resolve);
    const timer = setTimeout(() => {
      const i = this.connectedWaiters.indexOf(resolve);
      if (i >= 0) this.connectedWaiters.splice(i, 1);
      resolve();
    }, RECONNECT_GRACE_MS);
    await promise;
    clearTimeout(timer);
    if (this.upstream) return this.upstream;
    if (this.upstreamError) throw this.upstreamError;
    throw new MqError(Code.Unavailable, this.whyNoServer().message);
  }

  /**
   * A request whose answer grows with the server's topics (the topic list, a pattern's matches:
   * 1 MB for 5,000 topics) goes two at a time: 600 pattern subs at once from one client made
   * the server queue 600 MB for this host and cut its session as a slow consumer.
   */
  private forward(frame: Outgoing): Promise<Record<string, unknown>> {
    const large = frame.op === "topics" || ((frame.op === "sub" || frame.op === "unsub") && frame.topics.some(isPattern));
    return large ? this.largeAnswers.run(() => this.forwardNow(frame)) : this.forwardNow(frame);
  }

  private async forwardNow(frame: Outgoing): Promise<Record<string, unknown>> {
    if (this.stopped) throw new MqError(Code.Unavailable, "the local broker is shutting down", { unsent: true });
    // All clients of this host share one server connection: keep it under the server's
    // in-flight limit by queueing here, first come first served.
    const topics = "topics" in frame && Array.isArray(frame.topics) ? frame.topics.length : 0;
    const timeout = (this.options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS) + Math.min(REQUEST_TIMEOUT_TOPICS_MAX_MS, topics * REQUEST_TIMEOUT_PER_TOPIC_MS);
    const queuedAt = Date.now();
    const bytes = payloadBytes(frame);
    if (this.forwardQueue.length > 0 || !this.forwardWindow.fits(bytes)) {
      // Behind those already waiting, even if it would fit: requests keep their order.
      this.forwardWindow.full();
      const { promise, resolve } = Promise.withResolvers<void>();
      this.forwardQueue.push({ bytes, admit: resolve });
      await promise; // admitted (and counted in flight) by admitForwards
    } else this.forwardWindow.take(bytes);
    let conn: Connection | undefined;
    let session = -1;
    let requested = false;
    try {
      // Time spent queued counts: the client is promised an answer within seconds.
      const left = timeout - (Date.now() - queuedAt);
      if (left <= 0) throw new MqError(Code.Unavailable, `server ${this.serverAddress} is not answering in time (requests queued)`);
      conn = await this.server();
      if (this.serverCaps && !this.serverCaps.has(frame.op)) {
        throw new MqError(Code.UnknownOp, `the server at ${this.serverAddress} does not support op ${JSON.stringify(frame.op)}; upgrade it`);
      }
      this.counters.forwarded++;
      if (frame.op === "pub" || frame.op === "pubs") session = this.forwardWindow.sent();
      // The reply goes back as it came: answering overwrites its op and rid with the client's.
      return await conn.request(frame, left, () => void (requested = true));
    } catch (err) {
      // Failed before it was written (no server, one without the op, or the link cut while it
      // waited its turn): the client may be told that nothing of it took effect.
      if (!requested && err instanceof MqError) throw new MqError(err.code, err.message, { fatal: err.fatal, cause: err.cause, unsent: true });
      // No answer in time on a live connection: the server or the link is congested.
      if (session >= 0 && !conn!.closed && Date.now() - queuedAt >= timeout) this.forwardWindow.timedOut();
      throw err;
    } finally {
      if (session >= 0) this.forwardWindow.answered(session, bytes);
      this.forwardWindow.release(bytes);
      this.admitForwards();
    }
  }

  /** Lets the waiting requests go, in order, as far as the forward window has room. */
  private admitForwards(): void {
    while (this.forwardQueue.length > 0 && this.forwardWindow.fits(this.forwardQueue[0]!.bytes)) {
      const next = this.forwardQueue.shift()!;
      this.forwardWindow.take(next.bytes);
      next.admit();
    }
  }

  /**
   * A push from the server that cannot be taken (it does not decode, or breaks a rule): not
   * dropped, which would lose its messages once a later ack moves past them, but the
   * connection closed, so the server gives back what it sent and sends it again after the reconnect.
   */
  private refusePush(conn: Connection, err: MqError): void {
    log.error(`server ${this.serverAddress}: a push cannot be taken (${err.message}); closing the connection, the server sends it again`);
    conn.close(CloseReason.ProtocolError);
  }

  /** `from` is the server connection the frame came on: it may not be `upstream` yet (the hello reply and the first pushes can arrive in one read). */
  private onPush(frame: MsgsFrame, from: Connection): void {
    if (frame.times.length !== frame.payloads.length) {
      throw new MqError(Code.BadRequest, `msgs: ${frame.times.length} times for ${frame.payloads.length} payloads`);
    }
    const problem = pushedExtraProblem(frame);
    if (problem) throw new MqError(Code.BadRequest, problem);
    // The payloads are views into bytes of their own, which nothing reuses (Bun hands each
    // socket read a new Buffer; a frame read in pieces is put together in a new array), so
    // they are kept as they are — not copied (a Buffer's `slice` would only make another view).
    // One message object for all the ids the frame is for (`ids`: the server sent it once
    // for them all), its CBOR written once for their deliveries (encodeOnce).
    // A message pushed before for another id is the same object (lib/local/recent-messages.ts).
    const messages = this.recent.messagesOf(frame);
    this.pushedTo(frame.id, frame, messages, from);
    if (frame.ids) for (const id of frame.ids) this.pushedTo(id, frame, messages, from);
  }

  /**
   * Buffers the messages of push `frame` for the global id `global`. The buffers of several ids
   * share `messages` (nothing changes a buffered message but the `lost` of the first, which
   * each id gets a copy of).
   */
  private pushedTo(global: number, frame: MsgsFrame, messages: Message[], from: Connection): void {
    const local = this.ids.local(global);
    if (local === undefined) return; // destroyed here; the server forgets it too
    if (this.goneOnServer.has(local)) return;
    const inbox = this.inbox(local);
    let reack = false;
    for (let i = 0; i < messages.length; i++) {
      const msg = i === 0 && frame.lost ? pushedMessage(frame, 0, true) : messages[i]!;
      const verdict = inbox.add(msg, frame.explicit);
      if (verdict === "new") this.counters.received++;
      else {
        this.counters.duplicates++;
        reack ||= verdict === "reack";
      }
    }
    inbox.setMore(frame.topic, frame.more === true);
    if (reack) from.send({ op: "ack", id: global, topic: frame.topic, seq: inbox.ackedUpstream(frame.topic) });
    this.serveWaiters(inbox);
  }

  private inbox(local: number): Inbox {
    let inbox = this.inboxes.get(local);
    if (!inbox) {
      this.inboxes.set(local, (inbox = new Inbox()));
      const mine = inbox;
      mine.onExpired = (messages, epoch) => this.dropExpired(local, mine, messages, epoch);
    }
    return inbox;
  }

  /** Messages whose TTL ran out in `local`'s buffer: counted, and acknowledged to the server so that it does not send them again. */
  private dropExpired(local: number, inbox: Inbox, messages: Message[], epoch: number): void {
    this.counters.expired += messages.length;
    this.acknowledge(local, inbox, messages, epoch);
  }

  private serveWaiters(inbox: Inbox): void {
    // Stopping, or the server is: nothing more is handed out (doStop and drainForServer let
    // clients acknowledge what they hold).
    if (this.stopped || this.serverStopping) return;
    while (inbox.pending > 0 && inbox.waiters.length > 0) {
      const messages = inbox.take(inbox.waiters[0]!.max);
      if (messages.length === 0) continue; // all expired: the waiter waits on
      inbox.waiters.shift()!.resolve(messages, inbox.epoch);
    }
    // Waiting recvs first, then follows with credits: an id's clients share its messages.
    if (inbox.pending > 0) this.follows.serve(inbox);
  }

  // --- the client side ---

  private clientHandler(): ConnectionHandler {
    return {
      frame: (conn, frame) => {
        const result = this.onClientFrame(conn, frame);
        // Counted until answered, so a graceful stop lets them finish (a recv only waits).
        if (result instanceof Promise && frame.op !== "recv") {
          this.serving++;
          const done = () => void this.serving--;
          result.then(done, done);
        }
        return result;
      },
      // Its reply goes with the answer of the recv pipelined behind it, when that comes in the same turn.
      lazyReply: (op) => op === "ack",
      closed: (conn, reason) => {
        log.debug(`${conn.label}: closed (${reason})`);
        this.clients.delete(conn);
        const state = conn.state as ClientState;
        // Its own waiting recvs end first, so none of them picks up what is put back below.
        for (const w of state.waiters) {
          const k = w.inbox.waiters.indexOf(w);
          if (k >= 0) w.inbox.waiters.splice(k, 1);
          w.resolve([], w.inbox.epoch);
        }
        state.waiters.clear();
        // Then what its follows were pushed and did not acknowledge goes back (follow.ts).
        this.follows.connectionClosed(conn);
        // Whatever this client took and never acknowledged goes back for the next recv:
        // newest batch first, so that each older one lands in front of it; then, and only
        // then, other clients waiting on those ids are served.
        const touched = new Set<Inbox>();
        for (const { local, messages, epoch } of [...state.delivered.values()].reverse()) {
          const inbox = this.inboxes.get(local);
          if (!inbox) continue;
          inbox.putBack(this.giveBack(local, inbox, messages, epoch), epoch);
          touched.add(inbox);
        }
        state.delivered.clear();
        for (const inbox of touched) this.serveWaiters(inbox);
      },
    };
  }

  /** The global id of `local`; UNKNOWN_ID when there is none, saying why when its record was lost. */
  private global(local: number): number {
    const g = this.ids.global(local);
    const gone = this.goneOnServer.get(local);
    if (g !== undefined && gone === undefined) return g;
    if (gone !== undefined) throw new MqError(Code.UnknownId, gone);
    if (this.ids.isLost(local)) {
      throw new MqError(Code.UnknownId, `client id ${local} is no longer known: its record was lost when this host's id table (the local broker's DATA/ids) was damaged; create a new id`);
    }
    throw new MqError(Code.UnknownId, `no client with id ${local}`);
  }

  private onClientFrame(conn: Connection, frame: Frame): unknown {
    if (!conn.helloDone) {
      if (frame.op !== "hello") throw new MqError(Code.BadRequest, `expected hello as the first frame, got ${frame.op}`, { fatal: true });
      if (frame.version !== PROTOCOL_VERSION) {
        throw new MqError(Code.VersionMismatch, `protocol version ${frame.version} is not supported; this local broker speaks ${PROTOCOL_VERSION}`, { fatal: true });
      }
      conn.helloDone = true;
      return { version: PROTOCOL_VERSION, maxMessageBytes: this.maxMessageBytes, maxInFlight: this.limits.maxInFlight, caps: capabilities("client") };
    }
    if (frame.op === "hello") throw new MqError(Code.BadRequest, "hello was already received on this connection");
    const handler = Object.hasOwn(this.clientHandlers, frame.op) ? (this.clientHandlers[frame.op as ClientHandled] as (conn: Connection, frame: Frame) => unknown) : undefined;
    if (!handler) throw new MqError(Code.UnknownOp, `op ${JSON.stringify(frame.op)} is not served by a local broker`);
    return handler(conn, frame);
  }

  /**
   * One handler per op the table says the client hop serves (`hello` comes first, above).
   * A plain forward checks what it can here and goes through `forwardOp`, which translates
   * the id as the table says; the others are served here, or translate more than the id.
   */
  readonly clientHandlers: { [K in ClientHandled]: (conn: Connection, frame: RequestOf<K>) => unknown } = {
    create: () =>
      this.forward({ op: "create" }).then(async (r) => {
        // The reply carries a new global id: it is translated back, into a new local id.
        if (!Number.isSafeInteger(r.id)) throw new MqError(Code.Internal, "the server answered create without an id");
        return { id: await this.ids.add(r.id as number) };
      }),
    pub: (_conn, frame) => {
      this.global(frame.id);
      checkTopic(frame.topic); // a courtesy: the server checks again
      this.checkSize(frame.data);
      return this.forwardOp(frame);
    },
    pubs: (_conn, frame) => {
      this.global(frame.id);
      checkTopic(frame.topic);
      for (const data of frame.payloads) this.checkSize(data);
      const problem = pubsIdsProblem(frame) ?? pubsHeadersProblem(frame);
      if (problem) throw new MqError(Code.BadRequest, problem);
      return this.forwardOp(frame);
    },
    sub: (_conn, frame) => {
      this.global(frame.id);
      for (const t of frame.topics) checkPattern(t);
      if (frame.group !== undefined) checkGroupName(frame.group); // a courtesy: the server checks again
      return this.forwardOp(frame);
    },
    unsub: (_conn, frame) => {
      const global = this.global(frame.id);
      for (const t of frame.topics) checkPattern(t);
      this.tellBuffered(frame.id, global, frame.topics);
      return this.forwardOp(frame).then((r) => {
        const inbox = this.inboxes.get(frame.id);
        for (const t of endedTopics(r)) {
          inbox?.dropTopic(t);
          this.unsentAcks.dropTopic(frame.id, t);
        }
        return r;
      });
    },
    destroy: (_conn, frame) => {
      // An id the server no longer knows can still be destroyed here: that is the way out.
      const id = this.ids.global(frame.id) ?? this.global(frame.id);
      const forget = async () => {
        await this.ids.remove(frame.id);
        const inbox = this.inboxes.get(frame.id);
        if (inbox) this.follows.end(inbox, new MqError(Code.UnknownId, `client id ${frame.id} was destroyed`));
        this.inboxes.delete(frame.id);
        this.unsentAcks.dropId(frame.id);
        this.goneOnServer.delete(frame.id);
      };
      this.tellBuffered(frame.id, id);
      return this.forward({ op: "destroy", id }).then(
        async (r) => (await forget(), r),
        async (err) => {
          // The server no longer knows the id (a crash between its destroy and ours): finish ours.
          if (!(err instanceof MqError) || err.code !== Code.UnknownId) throw err;
          await forget();
          return {};
        },
      );
    },
    recv: (conn, frame) => this.recv(conn, frame.id, frame.max, frame.wait),
    ack: (conn, frame) => this.ack(conn, frame.id, frame.tag, frame.count),
    nak: (conn, frame) => this.nak(conn, frame.id, frame.tag),
    follow: (conn, frame) => this.follows.follow(conn, frame.id, frame.credits, frame.bytes),
    credit: (conn, frame) => this.follows.credit(conn, frame.id, frame.acked, frame.credits, frame.bytes),
    unfollow: (conn, frame) => this.follows.unfollow(conn, frame.id),
    topics: () => this.topicsCall.call(),
    stats: () => this.stats(),
  };

  private checkSize(data: Uint8Array): void {
    if (data.length > this.maxMessageBytes) {
      throw new MqError(Code.MessageTooLarge, `message of ${data.length} bytes is above the server's limit of ${this.maxMessageBytes}`);
    }
  }

  /**
   * Forwards a client request as the table says: its fields in schema order, without the
   * client's `rid`, and its `id` translated (`global`: local id → global id; an UNKNOWN_ID
   * answer then marks the local id gone).
   */
  private forwardOp<K extends ForwardedOp>(frame: RequestOf<K>): Promise<Record<string, unknown>> {
    const op = frame.op as K;
    const spec = ops[op];
    const fwd: Record<string, unknown> = { op };
    for (const key of Object.keys(spec.request)) {
      if (key === "rid") continue;
      const value = (frame as Record<string, unknown>)[key];
      if (value !== undefined) fwd[key] = value;
    }
    if (spec.id !== "global") return this.forward(fwd as Outgoing);
    const local = (frame as unknown as { id: number }).id;
    const global = this.global(local);
    fwd.id = global;
    return this.forward(fwd as Outgoing).catch(this.serverForgot(local, global));
  }

  private recv(conn: Connection, local: number, max: number, wait: number) {
    this.global(local);
    const state = conn.state as ClientState;
    const inbox = this.inbox(local);
    const limit = Math.max(1, Math.min(max, MAX_RECV_BATCH));
    // Stopping: an empty answer, as for a wait that ran out; what is buffered stays for the next run.
    if (this.stopped) return this.handOut(state, local, inbox, [], inbox.epoch);
    // The server is stopping: the recv waits, and is served once the session ended.
    if (this.serverStopping) return this.recvWaiting(conn, state, local, inbox, limit, Math.max(wait, 1));
    const messages = inbox.take(limit);
    // Answered in this turn when there is something (or nothing to wait for): the reply goes
    // out in one write with the connection's other answers of the turn (the ack before it).
    if (messages.length > 0 || wait <= 0) return this.handOut(state, local, inbox, messages, inbox.epoch);
    return this.recvWaiting(conn, state, local, inbox, limit, wait);
  }

  /** A recv that found nothing: waits up to `wait` ms for messages of `local`. */
  private async recvWaiting(conn: Connection, state: ClientState, local: number, inbox: Inbox, limit: number, wait: number) {
    const { promise, resolve: done } = Promise.withResolvers<{ messages: Message[]; epoch: number }>();
    const waiter = { max: limit, resolve: (messages: Message[], epoch: number) => done({ messages, epoch }), inbox };
    inbox.waiters.push(waiter);
    state.waiters.add(waiter);
    const timer = setTimeout(() => {
      const i = inbox.waiters.indexOf(waiter);
      if (i >= 0) inbox.waiters.splice(i, 1);
      waiter.resolve([], inbox.epoch);
    }, Math.min(wait, MAX_WAIT_MS));
    const { messages, epoch } = await promise;
    clearTimeout(timer);
    state.waiters.delete(waiter);
    if (messages.length === 0) this.global(local); // lost or destroyed while waiting: say so
    if (conn.closed) {
      inbox.putBack(messages, epoch);
      this.serveWaiters(inbox);
      return {};
    }
    return this.handOut(state, local, inbox, messages, epoch);
  }

  /**
   * The reply to a recv of `local` with `messages` (taken at the inbox's `epoch`), which are
   * then the client's until it acknowledges them.
   */
  private handOut(state: ClientState, local: number, inbox: Inbox, messages: Message[], epoch: number) {
    // Nothing, and the server away: say so, or an empty answer reads as "nothing was published".
    if (messages.length === 0) return this.connected ? { messages: [], more: inbox.more } : { messages: [], more: inbox.more, away: true };
    const tag = state.nextTag++;
    state.delivered.set(tag, { local, messages, epoch });
    this.counters.delivered += messages.length;
    this.latency.delivered(messages);
    return { messages, tag, more: inbox.more };
  }

  /**
   * Acknowledges the delivery `tag`: all of it, or with `count` its first `count` messages,
   * the rest going back to the front of the id's buffer (a `messages()` loop left early).
   */
  private ack(conn: Connection, local: number, tag: number | undefined, count: number | undefined) {
    const state = conn.state as ClientState;
    const entry = tag === undefined ? undefined : state.delivered.get(tag);
    if (!entry || entry.local !== local) throw new MqError(Code.BadRequest, `ack: no delivery with tag ${tag} for id ${local} is pending on this connection`);
    if (count !== undefined && count > entry.messages.length) {
      throw new MqError(Code.BadRequest, `ack: field "count" is ${count}, but delivery ${tag} holds ${entry.messages.length} messages`);
    }
    state.delivered.delete(tag!);
    const inbox = this.inboxes.get(entry.local);
    const global = this.ids.global(entry.local);
    if (!inbox || global === undefined) return {};
    const seen = count === undefined || count === entry.messages.length ? entry.messages : entry.messages.slice(0, count);
    this.ackUpstream(entry.local, inbox, seen, entry.epoch);
    if (seen !== entry.messages) {
      // Unseen, so still unacked in the inbox's tracks: the floor sent upstream stays below them.
      inbox.putBack(entry.messages.slice(seen.length), entry.epoch);
      this.serveWaiters(inbox);
    }
    return {};
  }

  /** A client acknowledged `messages` of `local` (taken at `epoch`): the server hears of it when the floor moved. */
  private ackUpstream(local: number, inbox: Inbox, messages: Message[], epoch: number): void {
    this.latency.acked(messages);
    this.acknowledge(local, inbox, messages, epoch);
  }

  /** `messages` of `local` (taken at `epoch`) are done with: the inbox forgets them, and the server hears of it when the floor moved. */
  private acknowledge(local: number, inbox: Inbox, messages: Message[], epoch: number): void {
    const global = this.ids.global(local);
    const acks = inbox.acknowledge(messages, epoch);
    if (global === undefined) return;
    // If the server is away the ack is kept (floors only): sent on the next session, and kept
    // by a graceful stop. The server re-sends meanwhile; the inbox sees a duplicate at or
    // below the acked floor and acknowledges it again.
    for (const upstreamAck of acks) {
      if (this.upstream) this.upstream.send({ op: "ack", id: global, ...upstreamAck });
      else if ("seq" in upstreamAck) this.unsentAcks.record(local, upstreamAck.topic, upstreamAck.seq);
    }
  }

  /** The messages of delivery `tag` were not processed: they go back for redelivery. */
  private nak(conn: Connection, local: number, tag: number | undefined) {
    const state = conn.state as ClientState;
    const entry = tag === undefined ? undefined : state.delivered.get(tag);
    if (!entry || entry.local !== local) throw new MqError(Code.BadRequest, `nak: no delivery with tag ${tag} for id ${local} is pending on this connection`);
    state.delivered.delete(tag!);
    const inbox = this.inboxes.get(local);
    if (!inbox) return {};
    inbox.putBack(this.giveBack(local, inbox, entry.messages, entry.epoch), entry.epoch);
    this.serveWaiters(inbox);
    return {};
  }

  /**
   * Messages a client took and did not process: those of explicit subscriptions go back to
   * the server (`nak`: it counts the delivery and redelivers, maybe to another member of the
   * group); returns the others, for the caller to put back in the inbox (with `epoch`, that
   * of their take). With the server away the nak is lost, and need not be sent: the server
   * gave back all this broker held when its session closed.
   */
  private giveBack(local: number, inbox: Inbox, messages: Message[], epoch: number): Message[] {
    const { naks, rest } = inbox.giveBack(messages, epoch);
    const global = this.ids.global(local);
    if (global !== undefined) for (const nak of naks) this.upstream?.send({ op: "nak", id: global, ...nak });
    return rest;
  }

  /**
   * Before an unsub or destroy of `local`: tells the server which messages of its explicit
   * subscriptions (of `topics`, else all) are still buffered here, never handed to a client,
   * so that they go back to the group uncounted when the subscription ends, instead of
   * counting toward --max-deliver. Sent ahead of the request on the same link: the server has
   * it first. Not to a server that does not serve `buffered` (older): it counts them, as before.
   */
  private tellBuffered(local: number, global: number, topics?: readonly string[]): void {
    if (!this.serverCaps?.has("buffered")) return;
    const inbox = this.inboxes.get(local);
    if (!inbox) return;
    for (const { topic, seqs } of inbox.unhanded(topics)) {
      for (let i = 0; i < seqs.length; i += MAX_MSGS_PER_FRAME) this.upstream?.send({ op: "buffered", id: global, topic, seqs: seqs.slice(i, i + MAX_MSGS_PER_FRAME) });
    }
  }

  /**
   * `mq stats`: this broker's counters and the server's. With the server away, the local part
   * alone (`server` absent) and why (`serverError`: the refusal, or the last failed attempt,
   * as a client's request would be told): what the broker knows is still worth showing.
   */
  private async stats(): Promise<{ local: LocalStats; server?: ServerStats; serverError?: { code: string; message: string } }> {
    const local = this.localStats();
    let r: Record<string, unknown>;
    try {
      if (!this.connected) return { local, serverError: this.whyNoServer() };
      r = await this.forward({ op: "stats" });
    } catch (err) {
      if (err instanceof MqError && err.code === Code.Unavailable) return { local, serverError: { code: err.code, message: err.message } };
      throw err;
    }
    const server = r.server as ServerStats;
    // The server knows global ids; the ids of this host get their local id beside them.
    if (Array.isArray(server?.retention_dropped)) {
      server.retention_dropped = server.retention_dropped.map(({ global_id, ...rest }) => {
        const id = this.ids.local(global_id);
        return id === undefined ? { global_id, ...rest } : { global_id, id, ...rest };
      });
    }
    return { local, server };
  }

  /** This broker's own counters (`local` in `mq stats`, /metrics, /api/local). */
  localStats(): LocalStats {
    let pending = 0;
    let buffered = 0;
    let bufferedMaxId = 0;
    for (const inbox of this.inboxes.values()) {
      pending += inbox.pending;
      buffered += inbox.bytes;
      bufferedMaxId = Math.max(bufferedMaxId, inbox.bytes);
    }
    const local: LocalStats = {
      identity: this.identity,
      server: this.serverAddress,
      connected: this.connected,
      ids: this.ids.size,
      clients: this.clients.size,
      pending,
      buffered_bytes: buffered,
      buffered_bytes_max_id: bufferedMaxId,
      buffer_bytes: this.limits.bufferBytes,
      buffer_bytes_per_id: this.limits.bufferBytesPerId,
      forward_window: this.forwardWindow.maxRequests,
      forward_window_bytes: this.forwardWindow.maxBytes,
      forwarding: this.forwardWindow.requests,
      ...this.counters,
      rss_bytes: process.memoryUsage().rss,
    };
    return local;
  }

  /** Each id of this host with a buffer: what it holds (the HTTP API). */
  idBuffers(): Array<{ id: number; globalId: number | null; pending: number; bytes: number }> {
    return [...this.inboxes].map(([id, inbox]) => ({ id, globalId: this.ids.global(id) ?? null, pending: inbox.pending, bytes: inbox.bytes })).sort((a, b) => a.id - b.id);
  }

  /** The server connected to (or being tried), as given in `--server`, for /healthz and the HTTP API. */
  get serverAddr(): string {
    return this.serverAddress;
  }

  /** The server connected to, or while away the one being tried now. */
  private get serverAddress(): string {
    return this.servers.currentText;
  }

  /**
   * The server is stopping cleanly (`drain`): hand out nothing more, let the clients
   * acknowledge what they hold (up to 1 s; their acks go to the server, which serves them
   * before its last write), then say `drained`. Handing out resumes when the session ends.
   */
  private async drainForServer(conn: Connection): Promise<void> {
    this.serverStopping = true;
    await this.clientAcks(() => !conn.closed);
    if (!conn.closed) conn.send({ op: "drained" });
  }

  /** Waits (up to STOP_ACK_GRACE_MS, while `worth` says so) for clients to acknowledge all they were handed. */
  private async clientAcks(worth: () => boolean = () => true): Promise<void> {
    const until = Date.now() + STOP_ACK_GRACE_MS;
    while (this.handedOut() > 0 && Date.now() < until && worth()) await Bun.sleep(5);
  }

  /** Messages handed to clients (recv batches and follow pushes) not acknowledged yet. */
  private handedOut(): number {
    let n = this.follows.unacknowledged();
    for (const c of this.clients) for (const d of (c.state as ClientState | undefined)?.delivered.values() ?? []) n += d.messages.length;
    return n;
  }

  /** Graceful stop: stop listening, send the last acks, close the connections, remove the socket file. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.stopped = true;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.listener?.stop(false);
    // Requests already forwarded finish (the server may have stored them): their answers
    // go back to the clients before anything is closed.
    const deadline = Date.now() + 5000;
    while (this.serving > 0 && Date.now() < deadline) await Bun.sleep(5);
    // Nothing more is handed out (serveWaiters, recv); recvs waiting get an empty answer, and
    // clients get a moment to acknowledge what they were handed: a `recv --follow` that wrote
    // a batch and was about to acknowledge it would otherwise get it again after the restart.
    for (const inbox of this.inboxes.values()) for (const w of inbox.waiters.splice(0)) w.resolve([], inbox.epoch);
    await this.clientAcks();
    // Closed gracefully before the listener cuts what is left: the answer of the last ack may
    // still be queued (acks are answered lazily), and a client told "closed" of an ack the
    // broker took cannot tell that it took effect.
    for (const c of this.clients) c.close(CloseReason.Shutdown);
    this.listener?.stop(true);
    this.upstream?.close(CloseReason.Shutdown);
    for (const w of this.connectedWaiters.splice(0)) w();
    fs.rmSync(this.options.socketPath, { force: true });
    try {
      this.unsentAcks.save();
    } catch (err) {
      log.error(`cannot keep the acknowledgements made while the server was away (${errorText(err)}): the messages they cover will be delivered again after the restart`);
    }
    await this.ids.close();
    this.unlock();
    log.info(`stopped (socket ${this.options.socketPath} removed)`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** The broker's identity: a random id made once and kept in `DATA/identity`. */
function loadIdentity(file: string): string {
  try {
    const id = fs.readFileSync(file, "utf8").trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
    log.warn(`${file}: not a valid identity; making a new one`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const id = randomUUID();
  writeFileAtomic(file, `${id}\n`);
  return id;
}

/**
 * The broker's secret: 32 random bytes (hex), made once in `DATA/secret` with mode 0600. The
 * server binds it to the identity at first contact, so the identity alone (printed in logs
 * and `mq stats`) opens nothing. Never logged, printed or put in stats.
 */
function loadSecret(file: string): string {
  try {
    const secret = fs.readFileSync(file, "utf8").trim();
    if (/^[0-9a-f]{64}$/.test(secret)) {
      const mode = fs.statSync(file).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        log.warn(`${file}: was readable by other users (mode ${mode.toString(8)}); made 0600. Whoever read it can connect as this local broker`);
        fs.chmodSync(file, 0o600);
      }
      return secret;
    }
    log.warn(`${file}: not a valid secret; making a new one (a server that knows this broker will refuse it with AUTH_FAILED)`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const secret = randomBytes(32).toString("hex");
  writeFileAtomic(file, `${secret}\n`, 0o600);
  return secret;
}

/**
 * Makes `socketPath` ours: its directory is created 0700; a socket file left by a dead
 * broker is removed; a live broker is never displaced.
 */
async function claimSocketPath(socketPath: string): Promise<void> {
  const dir = path.dirname(socketPath);
  try {
    if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new MqError(Code.Unavailable, `Cannot make the socket directory ${dir}: ${errorText(err)}; choose another --socket`, { cause: err });
  }
  const st = fs.lstatSync(dir);
  // A symlink planted where the directory should be could point anywhere, at any time.
  if (st.isSymbolicLink()) throw new MqError(Code.Unavailable, `the socket directory ${dir} is a symbolic link; use a real private directory or choose another --socket`);
  // A directory of someone else's (say, a pre-made /tmp/mq-$UID) could let them reach or swap the socket.
  if (process.getuid && st.uid !== process.getuid()) {
    throw new MqError(Code.Unavailable, `the socket directory ${dir} belongs to uid ${st.uid}, not to this user; remove it or choose another --socket`);
  }
  // Where others may create files they could put their own socket in our place, and our
  // clients would talk to it: refuse (not chmod: the directory may be shared on purpose, like
  // /tmp). A directory others can only read (0755) is fine: the socket itself is 0600.
  if ((st.mode & 0o022) !== 0) {
    throw new MqError(
      Code.Unavailable,
      `the socket directory ${dir} is writable by other users (mode ${(st.mode & 0o7777).toString(8)}); choose a --socket in a directory of your own, e.g. --socket ~/.mq/local.sock`,
    );
  }
  if (!fs.existsSync(socketPath)) return;
  const live = await Bun.connect({ unix: socketPath, socket: { data() {}, open(s) { s.end(); } } }).then(
    () => true,
    () => false,
  );
  if (live) {
    throw new MqError(Code.Unavailable, `another mq local is already listening on ${socketPath}; stop it first or choose another --socket`);
  }
  log.info(`removing the stale socket ${socketPath}`);
  fs.rmSync(socketPath, { force: true });
}
