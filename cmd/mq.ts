#!/usr/bin/env bun
/**
 * The `mq` executable: parses arguments by the command table and calls lib/. Nothing else lives here.
 *
 * Every `mq pub` in a shell loop is a process start, so this file imports statically only what
 * every command needs (the table, help, argument checks, stdout); each command's `run` loads its
 * own code with `await import()`: the client for client commands, the server and local broker
 * for the daemons. `bun build --compile --splitting` keeps those in chunks of their own that
 * are not loaded until imported (docs/benchmarks.md).
 */
import * as path from "node:path";
import pkg from "../package.json" with { type: "json" };
import { MqError } from "../lib/errors.ts";
import type * as cli from "../lib/cli/commands.ts";
import { Exit, StdoutClosedError, UsageError, exitCodeFor, reportError, writeStdout } from "../lib/cli/output.ts";
import { checkArgumentsAreUtf8 } from "../lib/cli/input.ts";
import { closest, renderCommandHelp, renderCompletion, renderProgramHelp, SHELLS, type CommandSpec, type OptionDef, type Program, type Shell } from "../lib/cli/help.ts";
import { defaults, formatDuration, formatSize, parseAddress, parseCount, parseCountOrAuto, parseDelay, parseDeliverAfter, parseDuration, parseFrom, parseFsync, parseGroup, parseId, parseRetentionLimit, parseSeconds, parseSince, parseSize, parseStore, parseTopicList, parseTtl } from "../lib/cli/parse.ts";
import { DEFAULT_DEDUPE, DEFAULT_HEARTBEAT_MISSED, DEFAULT_HEARTBEAT_MS, DEFAULT_LOCAL_LIMITS, DEFAULT_METRICS_MAX_TOPICS, DEFAULT_SERVER_LIMITS, isLoopback, LINES_RETRY_SECONDS } from "../lib/config.ts";

/** The client commands' code (the client library, the wire layer, cbor-x). */
const client = () => import("../lib/cli/commands.ts");

type Daemons = typeof import("../lib/cli/daemons.ts");
/** The daemons' code (server, local broker, store, logger), with the log configured from the flags. */
async function daemons(args: { "log-level"?: string; "log-json"?: boolean }): Promise<Daemons> {
  // First of all, before anything is opened or written: the daemon may execute itself again with its allocator's options.
  const notAgain = (await import("../lib/cli/allocator.ts")).reexecWithoutPurge();
  const [d, log] = await Promise.all([import("../lib/cli/daemons.ts"), import("../lib/log.ts")]);
  log.configureLog(d.parseLogOptions(args));
  if (notAgain !== null) log.logger("mq").debug(`running with mimalloc's default purge: ${notAgain}`);
  return d;
}

/** Option definitions: parseArgv, help and completion read them. */
type Defs = Record<string, OptionDef>;

const common = {
  json: { type: "boolean", alias: "j", description: "print one JSON object per result (NDJSON)" },
  socket: { type: "string", alias: "s", valueHint: "PATH", description: "Unix socket of the local broker (env MQ_SOCKET)" },
} as const satisfies Defs;

const id = { type: "positional", description: "client id (from mq create)", required: true } as const;
const topic = { type: "positional", description: "topic name", required: true } as const;
const topicsArg = { type: "positional", valueHint: "topic", description: "topic names or patterns (orders.*: one token, orders.>: one or more trailing tokens; quote them in the shell)", required: true } as const;

function commonOf(args: { json?: boolean; socket?: string }): cli.CommonOptions {
  return { json: Boolean(args.json), ...(args.socket ? { socket: args.socket } : {}) };
}

/** Topics are every positional after ID. */
function topicsOf(args: { _: string[] }): string[] {
  return args._.slice(1).map(String);
}

/** Two options that cannot be used together: bad usage rather than one silently winning. */
function exclusive(args: Record<string, unknown>, a: string, b: string, why: string): void {
  if (args[a] !== undefined && args[a] !== false && args[b] !== undefined && args[b] !== false) {
    throw new UsageError(`${a.startsWith("<") ? a.slice(1, -1) : `--${a}`} and --${b} cannot be used together: ${why}`);
  }
}

/** The daemons' log options (docs/logging.md). */
const logArgs = {
  "log-level": { type: "string", valueHint: "LEVEL", choices: ["error", "warn", "info", "debug", "trace"], description: "error | warn | info | debug | trace (env MQ_LOG_LEVEL; default info)" },
  "log-json": { type: "boolean", description: "one JSON object per log line (env MQ_LOG_JSON=1; --no-log-json: text, whatever the env says)" },
} as const satisfies Defs;

/** The heartbeat on the server hop, the same flags on both daemons. */
const heartbeatArgs = {
  "heartbeat-ms": { type: "string", valueHint: "MS", default: String(DEFAULT_HEARTBEAT_MS), description: "ping the other end of the server hop after this much silence (0: off)" },
  "heartbeat-missed": { type: "string", valueHint: "N", default: String(DEFAULT_HEARTBEAT_MISSED), description: "drop the connection after N silent intervals in a row" },
} as const satisfies Defs;

function heartbeatOf(args: Record<string, unknown>) {
  const d = (name: keyof typeof heartbeatArgs) => args[name] ?? heartbeatArgs[name].default;
  return { heartbeatMs: parseCount("heartbeat-ms", d("heartbeat-ms"), 0), heartbeatMissed: parseCount("heartbeat-missed", d("heartbeat-missed"), 2) };
}

/** The HTTP endpoint (docs/http.md): the same flags on both daemons. */
const httpArgs = {
  http: { type: "string", valueHint: "HOST:PORT", description: "serve /healthz, /metrics, the JSON API and a dashboard at / on this address (docs/http.md; default off)" },
  "http-token-file": { type: "string", valueHint: "FILE", description: "file holding the token every HTTP request but the probes and the dashboard's page must send (Authorization: Bearer TOKEN)" },
} as const satisfies Defs;

/** `--config FILE`: the daemons' options from a TOML or JSON file (lib/cli/config-file.ts). */
const configArg = {
  config: { type: "string", valueHint: "FILE", description: "read options from FILE (TOML, or JSON if it ends in .json); keys are the long options, flags win (docs/cli.md)" },
} as const satisfies Defs;

/**
 * The HTTP endpoint's options from `--<flag>` (`http`, or `local-http` for `mq up`'s local
 * broker), or undefined when not asked for. A non-loopback address needs the token, TLS
 * (`tls`: the server serves HTTPS with its --tls-cert) or `insecure`. Checked before any file
 * is read; the token file is read last.
 */
function httpOptions(d: Daemons, args: Record<string, unknown>, flag: "http" | "local-http", tls: { cert: string; key: string } | undefined, insecure: boolean) {
  if (args[flag] === undefined) return undefined;
  const address = parseAddress(flag, args[flag]);
  const tokenFile = args["http-token-file"] as string | undefined;
  if (!isLoopback(address.hostname) && !tokenFile && !tls && !insecure) {
    throw new UsageError(
      `--${flag} ${args[flag]} is not a loopback address, and without --http-token-file (or TLS) anyone who can reach it can read every topic's name and counters; give --http-token-file FILE (see docs/http.md), or --insecure to serve it open anyway`,
    );
  }
  const metricsMaxTopics = parseCount("metrics-max-topics", args["metrics-max-topics"] ?? DEFAULT_METRICS_MAX_TOPICS, 0);
  return { ...address, metricsMaxTopics, ...(tls ? { tls } : {}), ...(tokenFile ? { token: d.readTokenFile(tokenFile, "http-token-file") } : {}) };
}

const serverArgs = {
  listen: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:7600", description: "address to listen on" },
  data: { type: "string", valueHint: "DIR", description: "data directory (env MQ_DATA; default ~/.local/share/mq/server)" },
  "default-topics": { type: "string", valueHint: "A,B", default: "general", description: "topics created at start, comma-separated" },
  store: {
    type: "string",
    valueHint: "KIND|URL",
    // For completion only: any postgres:// or postgresql:// URL is taken (parseStore).
    choices: ["file", "memory", "postgres://"],
    description: "file | memory | postgres://USER@HOST:PORT/DB (env MQ_STORE; default file; memory keeps nothing across a restart; postgres: several servers share one database)",
  },
  fsync: { type: "string", valueHint: "POLICY", default: "always", choices: ["always", "interval", "never"], description: "always | interval | never" },
  "fsync-interval-ms": { type: "string", valueHint: "MS", default: "50", description: "fsync period for --fsync interval" },
  "deliver-after": { type: "string", valueHint: "WHEN", default: "write", choices: ["write", "fsync"], description: "--fsync always: push a message to subscribers once written, while its fsync runs (write) or only once on disk (fsync); publishers are answered after the fsync either way" },
  "max-message-bytes": { type: "string", valueHint: "SIZE", default: "1M", description: "largest message accepted (K/M/G)" },
  "token-file": { type: "string", valueHint: "FILE", description: "file holding the token local brokers must present" },
  "tls-cert": { type: "string", valueHint: "FILE", description: "PEM certificate: serve TLS" },
  "tls-key": { type: "string", valueHint: "FILE", description: "PEM private key for --tls-cert" },
  insecure: { type: "boolean", description: "allow a non-loopback --listen without --token-file or TLS, and a non-loopback --http without --http-token-file or TLS" },
  "hello-timeout-ms": { type: "string", valueHint: "MS", default: "10000", description: "close connections that send no hello in time" },
  ...heartbeatArgs,
  "frame-timeout-ms": { type: "string", valueHint: "MS", default: String(DEFAULT_SERVER_LIMITS.frameTimeoutMs), description: "close connections whose frame takes longer to arrive" },
  "max-connections": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxConnections), description: "most local-broker connections" },
  "max-inflight": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxInFlight), description: "most requests served at once per connection" },
  "max-subscriptions-per-id": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxSubscriptionsPerId), description: "most subscriptions of one id: each topic it is subscribed to counts, and each pattern counts one more" },
  "max-ids-per-broker": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxIdsPerBroker), description: "most ids one local broker may own" },
  "max-topics": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxTopics), description: "most topics; a pub or sub that would create one more is refused" },
  "max-scheduled": { type: "string", valueHint: "N", default: String(DEFAULT_SERVER_LIMITS.maxScheduled), description: "most delayed messages pending (pub --delay / --at); one more is refused (0: no limit)" },
  "max-scheduled-bytes": { type: "string", valueHint: "SIZE", default: formatSize(DEFAULT_SERVER_LIMITS.maxScheduledBytes), description: "most payload bytes of the delayed messages pending, held in memory (K/M/G; 0: no limit)" },
  "max-open-files": { type: "string", valueHint: "N", default: "auto", description: "most topic files kept open at once (auto: half the open-file limit, ulimit -n)" },
  retention: { type: "string", valueHint: "AGE", default: "7d", description: "delete segments once older than this (soft limit: only those every subscriber is past)" },
  "retention-bytes": { type: "string", valueHint: "SIZE", description: "…or while a topic's log is bigger than this (K/M/G; default no limit)" },
  "retention-limit": { type: "string", valueHint: "MODE", default: "soft", choices: ["soft", "hard"], description: "soft: never delete what a subscriber has not acknowledged | hard: the limits win, drops counted in stats" },
  "max-segment-bytes": { type: "string", valueHint: "SIZE", default: "64M", description: "roll a topic's log segment at this size (K/M/G)" },
  "dedupe-window": { type: "string", valueHint: "AGE", default: formatDuration(DEFAULT_DEDUPE.windowMs), description: "a publish whose msg-id its topic stored this recently is not stored again (0: off)" },
  "dedupe-max-keys": { type: "string", valueHint: "N", default: String(DEFAULT_DEDUPE.maxKeys), description: "most entries in the dedupe window, all topics together: a run of one producer's ids, or one other msg-id (about 85 / 155 bytes)" },
  ...httpArgs,
  "metrics-max-topics": { type: "string", valueHint: "N", default: String(DEFAULT_METRICS_MAX_TOPICS), description: "topics with series of their own in /metrics; the others are summed under topic=\"_other\"" },
  ...configArg,
  ...logArgs,
} as const satisfies Defs;

type ServerArgs = { [K in Exclude<keyof typeof serverArgs, keyof typeof logArgs>]?: string } & Record<string, unknown>;

/** `tokenFileIfNone`: `mq up` makes a token file there when --token-file is not given. */
function serverOptions(d: Daemons, args: ServerArgs, dataDir: string, tokenFileIfNone?: string) {
  const listen = parseAddress("listen", args.listen ?? defaults.listen());
  if (Boolean(args["tls-cert"]) !== Boolean(args["tls-key"])) throw new UsageError("--tls-cert and --tls-key go together");
  if (!isLoopback(listen.hostname) && !args["token-file"] && !tokenFileIfNone && !args["tls-cert"] && !args.insecure) {
    throw new UsageError(
      `--listen ${args.listen} is not a loopback address, and without --token-file (or TLS) anyone who can reach it can use the server; give --token-file FILE (see docs/security.md), or --insecure to run it open anyway`,
    );
  }
  const v = (name: keyof typeof serverArgs) => args[name] ?? (serverArgs[name] as OptionDef).default;
  const store = parseStore(args.store ?? defaults.store());
  const options = {
    ...listen,
    dataDir,
    store: store.kind,
    ...(store.url !== undefined ? { storeUrl: store.url } : {}),
    defaultTopics: parseTopicList(v("default-topics")),
    fsync: parseFsync(v("fsync")),
    fsyncIntervalMs: parseCount("fsync-interval-ms", v("fsync-interval-ms")),
    deliverAfter: parseDeliverAfter(v("deliver-after")),
    // A frame's length is 32 bits; 1G leaves room for the frame around the largest message.
    maxMessageBytes: parseSize("max-message-bytes", v("max-message-bytes"), 1, 1024 ** 3),
    helloTimeoutMs: parseCount("hello-timeout-ms", v("hello-timeout-ms")),
    ...heartbeatOf(args),
    maxSegmentBytes: parseSize("max-segment-bytes", v("max-segment-bytes"), 1),
    retention: {
      maxAgeMs: parseDuration("retention", v("retention")),
      maxBytes: args["retention-bytes"] === undefined ? Infinity : parseSize("retention-bytes", args["retention-bytes"]),
      limit: parseRetentionLimit(v("retention-limit")),
    },
    dedupe: {
      windowMs: parseDuration("dedupe-window", v("dedupe-window")),
      maxKeys: parseCount("dedupe-max-keys", v("dedupe-max-keys")),
    },
    limits: {
      maxConnections: parseCount("max-connections", v("max-connections")),
      frameTimeoutMs: parseCount("frame-timeout-ms", v("frame-timeout-ms")),
      maxInFlight: parseCount("max-inflight", v("max-inflight")),
      maxSubscriptionsPerId: parseCount("max-subscriptions-per-id", v("max-subscriptions-per-id")),
      maxIdsPerBroker: parseCount("max-ids-per-broker", v("max-ids-per-broker")),
      maxTopics: parseCount("max-topics", v("max-topics")),
      maxScheduled: parseCount("max-scheduled", v("max-scheduled"), 0),
      maxScheduledBytes: parseSize("max-scheduled-bytes", v("max-scheduled-bytes"), 0),
    },
    maxOpenFiles: parseCountOrAuto("max-open-files", v("max-open-files"), 8),
  };
  // Files are read only once every value is known to be good, and the token made (`mq up`)
  // only once the TLS files are: a bad --tls-cert leaves nothing written behind.
  let tls: { cert: string; key: string } | undefined;
  if (args["tls-cert"] && args["tls-key"]) {
    tls = { cert: d.readPemFile("tls-cert", args["tls-cert"]), key: d.readPemFile("tls-key", args["tls-key"]) };
    d.checkTlsPair(tls.cert, tls.key, args["tls-cert"], args["tls-key"]);
  }
  const tokenFile = args["token-file"] ?? (tokenFileIfNone === undefined ? undefined : d.ensureTokenFile(tokenFileIfNone));
  return {
    ...options,
    ...(tokenFile ? { token: d.readTokenFile(tokenFile) } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** Memory of the local broker: what it may hold of deliveries not yet acknowledged (docs/architecture.md). */
const bufferArgs = {
  "buffer-bytes": { type: "string", valueHint: "SIZE", default: formatSize(DEFAULT_LOCAL_LIMITS.bufferBytes), description: "most bytes of deliveries held for all ids together (K/M/G)" },
  "buffer-bytes-per-id": { type: "string", valueHint: "SIZE", default: formatSize(DEFAULT_LOCAL_LIMITS.bufferBytesPerId), description: "most bytes of deliveries held for one id (K/M/G)" },
} as const satisfies Defs;

const localArgs = {
  socket: { ...common.socket, description: "Unix socket to serve clients on (env MQ_SOCKET)" },
  server: { type: "string", valueHint: "HOST:PORT[,…]", description: "address of the server, or servers of one database tried in turn (env MQ_SERVER; default 127.0.0.1:7600)" },
  data: { type: "string", valueHint: "DIR", description: "data directory (env MQ_DATA; default ~/.local/share/mq/local)" },
  "token-file": { type: "string", valueHint: "FILE", description: "file holding the token for the server" },
  "tls-ca": { type: "string", valueHint: "FILE", description: "PEM CA certificate of the server: connect with TLS" },
  "hello-timeout-ms": { type: "string", valueHint: "MS", default: "10000", description: "close client connections that send no hello in time" },
  ...heartbeatArgs,
  "frame-timeout-ms": { type: "string", valueHint: "MS", default: String(DEFAULT_LOCAL_LIMITS.frameTimeoutMs), description: "close clients whose frame takes longer to arrive" },
  "max-connections": { type: "string", valueHint: "N", default: String(DEFAULT_LOCAL_LIMITS.maxConnections), description: "most client connections" },
  "max-inflight": { type: "string", valueHint: "N", default: String(DEFAULT_LOCAL_LIMITS.maxInFlight), description: "most requests served at once per client connection" },
  ...bufferArgs,
  ...httpArgs,
  insecure: { type: "boolean", description: "allow a non-loopback --http without --http-token-file" },
  ...configArg,
  ...logArgs,
} as const satisfies Defs;

/** The local broker's budgets from its flags (`mq local`, `mq up`). */
function bufferLimits(args: Record<string, unknown>) {
  const d = (name: keyof typeof bufferArgs) => args[name] ?? bufferArgs[name].default;
  return {
    bufferBytes: parseSize("buffer-bytes", d("buffer-bytes"), 1),
    bufferBytesPerId: parseSize("buffer-bytes-per-id", d("buffer-bytes-per-id"), 1),
  };
}

/**
 * `mq up` runs both daemons: the server's options (without --insecure: `mq up` always has a
 * token, its own when none is given), the local broker's socket and budgets, the log options last.
 */
const upArgs = (() => {
  const { "log-level": _level, "log-json": _json, insecure: _insecure, ...own } = serverArgs;
  return {
    ...own,
    data: { type: "string", valueHint: "DIR", description: "holds server/ and local/ (env MQ_DATA; default ~/.local/share/mq)" },
    "token-file": { ...serverArgs["token-file"], description: "token for both sides (default DIR/token, made with mode 0600 if absent)" },
    socket: localArgs.socket,
    ...bufferArgs,
    "local-http": { type: "string", valueHint: "HOST:PORT", description: "serve the local broker's /healthz, /metrics and /api/local on this address (--http is the server's)" },
    link: { type: "string", valueHint: "LINK", default: "memory", choices: ["memory", "tcp"], description: "how the local broker reaches the server: memory (inside the process) | tcp (loopback, as separate daemons)" },
    ...logArgs,
  } as const satisfies Defs;
})();

/**
 * Every command: its options (read by parseArgv), how many positionals it takes, and what it
 * runs. Help, completion and the argv check are generated from this one table.
 */
type ParsedArgs = { _: string[]; json?: boolean; socket?: string; "log-level"?: string; "log-json"?: boolean } & Record<string, any>;

interface Command extends CommandSpec {
  run(args: ParsedArgs): Promise<number>;
}

const commands: Command[] = [
  {
    name: "create",
    group: "client",
    description: "create a client id and print it",
    args: { ...common },
    maxPositionals: 0,
    examples: ["id=$(mq create)"],
    run: async (args) => (await client()).create(commonOf(args)),
  },
  {
    name: "pub",
    group: "client",
    description: "publish MESSAGE (or standard input) to TOPIC",
    args: {
      id,
      topic,
      message: { type: "positional", description: "the message; standard input when absent", required: false },
      lines: { type: "boolean", description: "one message per line of standard input" },
      raw: { type: "boolean", description: "keep standard input's bytes exactly (no trailing newline removed)" },
      "msg-id": { type: "string", valueHint: "KEY", description: "the message's id: one already stored in TOPIC within the server's --dedupe-window is not stored again (with --lines: line N gets KEY:N)" },
      "retry-for": { type: "string", valueHint: "SECONDS", description: `after a lost connection, send what was not acknowledged again for up to SECONDS (default ${LINES_RETRY_SECONDS} with --lines, else 0)` },
      delay: { type: "string", valueHint: "DURATION", description: "deliver the message this long from now (the server's clock): 10s, 15m, 2h, 1d" },
      at: { type: "string", valueHint: "TIMESTAMP", description: "deliver the message at this time: ISO-8601 with a zone (2026-11-30T18:00:00Z) or ms since the epoch; a past time delivers at once" },
      header: { type: "string", valueHint: "KEY=VALUE", repeatable: true, description: "a header stored and delivered with the message (repeatable; split at the first =)" },
      ttl: { type: "string", valueHint: "DURATION", description: "the message expires DURATION after it is stored (500ms, 30s, 10m, 2h, 1d; with --delay/--at: after it is due) and is never delivered after" },
      ...common,
    },
    maxPositionals: 3,
    examples: ["mq pub 3 orders '{\"total\": 12}'", "mq pub 3 orders --lines < events.ndjson", "mq pub 3 orders --msg-id order-1042 '{\"total\": 12}'", "mq pub 3 orders --header trace=ab12 --ttl 30s '{\"total\": 12}'", "mq pub 3 reminders --delay 10m 'call back'"],
    run: async (args) => {
      const message = args._.length >= 3 ? String(args._[2]) : undefined;
      exclusive({ "<MESSAGE>": message, ...args }, "<MESSAGE>", "lines", "--lines splits standard input; give MESSAGE or pipe the lines in");
      exclusive({ "<MESSAGE>": message, ...args }, "<MESSAGE>", "raw", "--raw applies to standard input; MESSAGE is sent as given");
      exclusive(args, "raw", "lines", "--lines splits on newlines, --raw keeps every byte; pick one");
      exclusive(args, "delay", "at", "--delay counts from now, --at names the time; pick one");
      const opts: cli.PubOptions = { ...commonOf(args), id: parseId(args.id), topic: String(args.topic), lines: Boolean(args.lines), raw: Boolean(args.raw) };
      if (message !== undefined) opts.message = message;
      const commands = await client();
      if (args["msg-id"] !== undefined) {
        opts.msgId = String(args["msg-id"]);
        commands.checkMsgId(opts.msgId, opts.lines);
      }
      if (args["retry-for"] !== undefined) opts.retrySeconds = parseSeconds("retry-for", args["retry-for"]);
      if (args.delay !== undefined || args.at !== undefined) opts.delay = parseDelay(args.delay, args.at);
      if (args.header !== undefined) opts.headers = commands.parseHeaders(args.header);
      if (args.ttl !== undefined) opts.ttlMs = parseTtl(args.ttl);
      return commands.pub(opts);
    },
  },
  {
    name: "sub",
    group: "client",
    description: "subscribe ID to one or more topics",
    args: {
      id,
      topic: topicsArg,
      from: { type: "string", valueHint: "WHERE", choices: ["earliest", "latest"], description: "earliest | latest | SEQ (inclusive; default latest)" },
      since: { type: "string", valueHint: "WHEN", description: "start at the first message stored at or after WHEN: a duration back (10m, 2h), a timestamp (2026-11-30T12:00:00Z, 2026-11-30) or ms since the epoch; not in the future" },
      group: { type: "string", valueHint: "NAME", description: "join queue group NAME: each message goes to one member (acks per message)" },
      "max-deliver": { type: "string", valueHint: "N", description: "after N deliveries without an ack, move a message to the dead-letter topic (acks per message)" },
      "dead-letter": { type: "string", valueHint: "TOPIC", description: "dead-letter topic for --max-deliver (default <topic>.dlq)" },
      ...common,
    },
    maxPositionals: Infinity,
    examples: ["mq sub 3 orders invoices", "mq sub 3 orders --from earliest", "mq sub 3 'orders.*' --since 10m", "mq sub 3 'orders.>'", "mq sub 3 orders --group workers --max-deliver 5"],
    run: async (args) => {
      exclusive(args, "from", "since", "each says where the subscription starts; pick one");
      const from = parseFrom(args.from);
      const since = args.since === undefined ? undefined : parseSince(args.since, Date.now());
      const group = parseGroup(args.group);
      const maxDeliver = args["max-deliver"] === undefined ? undefined : parseCount("max-deliver", args["max-deliver"]);
      const deadLetter = args["dead-letter"] === undefined ? undefined : String(args["dead-letter"]);
      if (deadLetter !== undefined && maxDeliver === undefined) throw new UsageError(`--dead-letter ${deadLetter} needs --max-deliver N: without a limit no message is ever dead-lettered`);
      return (await client()).sub({
        ...commonOf(args),
        id: parseId(args.id),
        topics: topicsOf(args),
        ...(from === undefined ? {} : { from }),
        ...(since === undefined ? {} : { since }),
        ...(group === undefined ? {} : { group }),
        ...(maxDeliver === undefined ? {} : { maxDeliver }),
        ...(deadLetter === undefined ? {} : { deadLetter }),
      });
    },
  },
  {
    name: "unsub",
    group: "client",
    description: "unsubscribe ID from one or more topics",
    args: { id, topic: topicsArg, ...common },
    maxPositionals: Infinity,
    run: async (args) => (await client()).unsub({ ...commonOf(args), id: parseId(args.id), topics: topicsOf(args) }),
  },
  {
    name: "recv",
    group: "client",
    description: "receive the next pending message(s) of ID",
    args: {
      id,
      follow: { type: "boolean", alias: "f", description: "stream messages until interrupted (or --count reached)" },
      count: { type: "string", alias: "n", valueHint: "N", description: "receive up to N messages" },
      wait: { type: "string", alias: "w", valueHint: "SECONDS", description: "wait up to SECONDS for a message; with --follow, exit 3 after SECONDS without one" },
      raw: { type: "boolean", description: "write the payload bytes exactly, no newline" },
      ...common,
    },
    maxPositionals: 1,
    examples: ["mq recv 3 --wait 5", "mq recv 3 -f --json | jq .data", "mq recv 3 -n 10 > batch.txt"],
    run: async (args) => {
      exclusive(args, "raw", "json", "--json prints each message as a JSON line, --raw its bytes; pick one");
      const opts: cli.RecvOptions = {
        ...commonOf(args),
        id: parseId(args.id),
        waitSeconds: args.wait === undefined ? 0 : parseSeconds("wait", args.wait),
        follow: Boolean(args.follow),
        raw: Boolean(args.raw),
      };
      if (args.count !== undefined) opts.count = parseCount("count", args.count);
      return (await client()).recv(opts);
    },
  },
  {
    name: "destroy",
    group: "client",
    description: "remove ID everywhere: subscriptions, pending messages, mapping",
    args: { id, ...common },
    maxPositionals: 1,
    run: async (args) => (await client()).destroy({ ...commonOf(args), id: parseId(args.id) }),
  },
  {
    name: "topics",
    group: "client",
    description: "list topics with subscriber and message counts",
    args: { ...common },
    maxPositionals: 0,
    run: async (args) => (await client()).topics(commonOf(args)),
  },
  {
    name: "stats",
    group: "client",
    description: "counters of the local broker and the server",
    args: { ...common },
    maxPositionals: 0,
    run: async (args) => (await client()).stats(commonOf(args)),
  },
  {
    name: "bench",
    group: "client",
    description: "load generator: publish and receive through the local broker, report rates and latency",
    args: {
      topic: { type: "string", valueHint: "TOPIC", default: "bench", description: "topic to use" },
      count: { type: "string", alias: "n", valueHint: "N", default: "100000", description: "messages per publisher" },
      size: { type: "string", valueHint: "SIZE", default: "128", description: "payload bytes (K/M/G)" },
      pubs: { type: "string", valueHint: "N", default: "1", description: "publishers" },
      subs: { type: "string", valueHint: "N", default: "1", description: "subscribers" },
      window: { type: "string", valueHint: "N", default: "256", description: "publishes in flight per publisher" },
      ...common,
    },
    maxPositionals: 0,
    examples: ["mq bench --count 50000 --size 1K --subs 4"],
    run: async (args) =>
      (await import("../lib/cli/bench.ts")).runBench({
        ...commonOf(args),
        topic: args.topic,
        count: parseCount("count", args.count),
        size: parseSize("size", args.size, 0),
        pubs: parseCount("pubs", args.pubs, 0),
        subs: parseCount("subs", args.subs, 0),
        window: parseCount("window", args.window),
      }),
  },
  {
    name: "server",
    group: "daemon",
    description: "run the broker",
    args: serverArgs,
    maxPositionals: 0,
    examples: ["mq server --data /var/lib/mq --listen 0.0.0.0:7600 --token-file /etc/mq/token"],
    run: async (args) => {
      const d = await daemons(args);
      httpOptions(d, { ...args, "http-token-file": undefined }, "http", undefined, Boolean(args["tls-cert"] || args["http-token-file"] || args.insecure)); // checked before any file is read
      const srv = serverOptions(d, args, args.data ?? defaults.serverData());
      return d.runServer(srv, httpOptions(d, args, "http", srv.tls, Boolean(args.insecure)));
    },
  },
  {
    name: "local",
    group: "daemon",
    description: "run the local broker of this host",
    args: localArgs,
    maxPositionals: 0,
    examples: ["mq local --server broker.internal:7600 --token-file /etc/mq/token", "mq local --server mq1.internal:7600,mq2.internal:7600 --token-file /etc/mq/token"],
    run: async (args) => {
      const d = await daemons(args);
      const http = httpOptions(d, args, "http", undefined, Boolean(args.insecure));
      return d.runLocal({
        socketPath: args.socket ?? defaults.socket(),
        server: d.parseServers(args.server ?? defaults.server(), args.server === undefined && process.env.MQ_SERVER !== undefined ? "MQ_SERVER" : "--server"),
        dataDir: args.data ?? defaults.localData(),
        helloTimeoutMs: parseCount("hello-timeout-ms", args["hello-timeout-ms"]),
        ...heartbeatOf(args),
        limits: {
          maxConnections: parseCount("max-connections", args["max-connections"]),
          frameTimeoutMs: parseCount("frame-timeout-ms", args["frame-timeout-ms"]),
          maxInFlight: parseCount("max-inflight", args["max-inflight"]),
          ...bufferLimits(args),
        },
        ...(args["token-file"] ? { token: d.readTokenFile(args["token-file"]) } : {}),
        ...(args["tls-ca"] ? { tlsCa: d.readPemFile("tls-ca", args["tls-ca"]) } : {}),
      }, http);
    },
  },
  {
    name: "up",
    group: "daemon",
    description: "run a server and a local broker together on default paths",
    args: upArgs,
    maxPositionals: 0,
    examples: ["mq up", "mq up --data /tmp/mq --listen 127.0.0.1:7700"],
    run: async (args) => {
      const d = await daemons(args);
      const base = args.data ?? (process.env.MQ_DATA || path.dirname(defaults.serverData()));
      const limits = bufferLimits(args); // checked before anything is written (the token below)
      const link = d.parseUpLink(args.link);
      // The HTTP addresses are checked before anything is written (the server's serves TLS with --tls-cert).
      for (const flag of ["http", "local-http"] as const) httpOptions(d, { ...args, "http-token-file": undefined }, flag, undefined, Boolean(args["http-token-file"] || (flag === "http" && args["tls-cert"])));
      // Without --token-file, a token of its own: other users of the host cannot use the port.
      const srv = serverOptions(d, args, path.join(base, "server"), path.join(base, "token"));
      const http = { server: httpOptions(d, args, "http", srv.tls, false), local: httpOptions(d, args, "local-http", undefined, false) };
      return d.runUp(srv, {
        socketPath: args.socket ?? defaults.socket(),
        dataDir: path.join(base, "local"),
        heartbeatMs: srv.heartbeatMs,
        heartbeatMissed: srv.heartbeatMissed,
        limits,
        ...(srv.token ? { token: srv.token } : {}),
        ...(srv.tls ? { tlsCa: srv.tls.cert } : {}),
      }, http, link);
    },
  },
  {
    name: "help",
    group: "other",
    description: "show help for mq or for one command",
    args: { command: { type: "positional", description: "a command", required: false } },
    maxPositionals: 1,
    run: async (args) => {
      const name = args._[0] === undefined ? undefined : String(args._[0]);
      await writeStdout(name === undefined ? renderProgramHelp(program) : renderCommandHelp(program, commandNamed(name)));
      return Exit.Ok;
    },
  },
  {
    name: "version",
    group: "other",
    description: "print the version",
    args: { json: common.json },
    maxPositionals: 0,
    run: async (args) => {
      await writeStdout(versionText(Boolean(args.json)));
      return Exit.Ok;
    },
  },
  {
    name: "completion",
    group: "other",
    description: "print a shell completion script: source <(mq completion bash)",
    args: { shell: { type: "positional", description: SHELLS.join(" | "), required: true } },
    maxPositionals: 1,
    examples: ["source <(mq completion bash)   # in ~/.bashrc", "mq completion fish > ~/.config/fish/completions/mq.fish"],
    run: async (args) => {
      const shell = String(args.shell);
      if (!(SHELLS as readonly string[]).includes(shell)) throw new UsageError(`unknown shell ${JSON.stringify(shell)}: expected ${SHELLS.join(", ")}`);
      await writeStdout(renderCompletion(program, shell as Shell));
      return Exit.Ok;
    },
  },
];

const program: Program = { name: "mq", version: pkg.version, description: "a durable publish/subscribe message queue", commands };

function versionText(json: boolean): string {
  const platform = `${process.platform}-${process.arch}`;
  return json ? `${JSON.stringify({ mq: pkg.version, bun: Bun.version, platform })}\n` : `mq ${pkg.version} (bun ${Bun.version}, ${platform})\n`;
}

function commandNamed(name: string): Command {
  const cmd = commands.find((c) => c.name === name);
  if (cmd) return cmd;
  const guess = closest(name, commands.map((c) => c.name));
  throw new UsageError(`unknown command ${JSON.stringify(name)}${guess ? `; did you mean \`mq ${guess}\`?` : ""}`);
}

/**
 * Parses `argv` (the command first) by the table: long options (`--wait 5`, `--wait=5`,
 * `--no-json`), short ones as the aliases of the table, combined like other Unix tools
 * (`-f`, `-n 5`, `-n5`, `-fj`), positionals in order (`args._`, and each named positional),
 * `--` before arguments that start with "-". A typo (`--folow`), a stray word, a missing
 * argument or a missing value is bad usage (exit 2), never a silent default. It is the few
 * rules of the table, in place of an argument-parsing library: every `mq pub` in a shell
 * loop pays for what loads at start (docs/benchmarks.md).
 */
function parseArgv(cmd: Command, argv: string[]): ParsedArgs {
  const defs = cmd.args;
  const byAlias = new Map(Object.entries(defs).flatMap(([name, d]) => (d.alias ? [[d.alias, name] as const] : [])));
  const longNames = Object.entries(defs).filter(([, d]) => d.type !== "positional").map(([n]) => `--${n}`);
  const args: ParsedArgs = { _: [] };
  for (const [name, d] of Object.entries(defs)) if (d.type !== "positional" && d.default !== undefined) args[name] = d.default;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      args._.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const key = arg.slice(2, eq < 0 ? undefined : eq);
      const negated = key.startsWith("no-") && defs[key] === undefined && defs[key.slice(3)]?.type === "boolean";
      const name = negated ? key.slice(3) : key;
      const def = defs[name];
      if (!def || def.type === "positional") {
        const guess = closest(`--${key}`, longNames);
        throw new UsageError(`unknown option --${key} for \`mq ${cmd.name}\`${guess ? `; did you mean ${guess}?` : ""}`);
      }
      // A switch takes no value but true or false (`--json=no` is a mistake, not "on").
      if (def.type === "boolean" && eq >= 0 && !/^(true|false)$/.test(arg.slice(eq + 1))) {
        throw new UsageError(`--${key} is a switch: give --${key} or --no-${key}, not ${JSON.stringify(arg)}`);
      }
      if (def.type === "boolean") args[name] = negated ? false : eq < 0 || arg.slice(eq + 1) !== "false";
      else if (eq < 0 && i + 1 >= argv.length) throw new UsageError(`--${key} needs a value`);
      else {
        const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]!;
        if (def.repeatable) (args[name] ??= []).push(value);
        else args[name] = value;
      }
    } else if (arg.startsWith("-") && arg !== "-") {
      // `-json`, `-follow`: a long option with one dash would otherwise read as short flags.
      if (arg.length > 2 && defs[arg.slice(1)] && defs[arg.slice(1)]!.type !== "positional") {
        throw new UsageError(`unknown option ${arg} for \`mq ${cmd.name}\`; did you mean -${arg}?`);
      }
      // `-fj`: booleans in a row; a string option takes the rest of the word or the next one.
      for (let j = 1; j < arg.length; j++) {
        const name = byAlias.get(arg[j]!);
        if (name === undefined) {
          // An argument that starts with "-" (a negative number, a message) goes after "--".
          const hint = ' (to pass an argument that starts with "-", put it after --)';
          if (/^-\d/.test(arg)) throw new UsageError(`unknown option ${arg} for \`mq ${cmd.name}\`${hint}`);
          throw new UsageError(`unknown option -${arg[j]}${arg.length > 2 ? ` in ${arg}` : ""} for \`mq ${cmd.name}\`${arg.length > 2 ? hint : ""}`);
        }
        if (defs[name]!.type === "boolean") {
          args[name] = true;
          continue;
        }
        if (j < arg.length - 1) args[name] = arg.slice(j + 1);
        else if (i + 1 < argv.length) args[name] = argv[++i]!;
        else throw new UsageError(`-${arg[j]} (--${name}) needs a value`);
        break;
      }
    } else args._.push(arg);
  }
  if (args._.length > cmd.maxPositionals) {
    const extra = cmd.name === "pub" ? "; quote the message, or send it on standard input" : "";
    throw new UsageError(`\`mq ${cmd.name}\` takes at most ${cmd.maxPositionals} argument${cmd.maxPositionals === 1 ? "" : "s"}, got ${args._.length}${extra}`);
  }
  const positionals = Object.entries(defs).filter(([, d]) => d.type === "positional");
  for (const [k, [name, d]] of positionals.entries()) {
    if (k < args._.length) args[name] = args._[k];
    else if (d.required !== false) {
      // `mq sub $id orders` with an empty $id reads as `mq sub orders`: the ID is what is missing, not the topic.
      const [first] = positionals[0]!;
      if (first === "id" && k > 0 && !/^\d+$/.test(args._[0]!)) {
        throw new UsageError(`\`mq ${cmd.name}\` needs ID first, then ${positionals.slice(1).filter(([, p]) => p.required !== false).map(([n, p]) => (p.valueHint ?? n).toUpperCase()).join(" ")}: got ${JSON.stringify(args._[0])} where the ID goes (${/^\d/.test(args._[0]!) ? "" : "an empty $id? "}ids are positive integers from \`mq create\`)`);
      }
      throw new UsageError(`\`mq ${cmd.name}\` needs ${(d.valueHint ?? name).toUpperCase()}: ${d.description ?? name}`);
    }
  }
  return args;
}

/** `--config FILE` (daemons): its options go before the command line's, which win; `keys` it set, `file` for messages. */
interface ConfigUsed {
  argv: string[];
  file: string;
  keys: string[];
}

async function withConfigFile(cmd: Command, argv: string[]): Promise<ConfigUsed | null> {
  const { configFileOf, configFileArgs } = await import("../lib/cli/config-file.ts");
  const file = configFileOf(argv);
  if (file === undefined) return null;
  const { words, keys } = configFileArgs(file, cmd.name, cmd.args);
  return { argv: [argv[0]!, ...words, ...argv.slice(1)], file, keys };
}

/** A bad value that came from the config file (not overridden by a flag) names the file and key. */
function fromConfig(message: string, config: ConfigUsed | null, argv: string[]): string {
  if (!config) return message;
  const key = config.keys.find((k) => message.includes(`--${k}`) && !argv.some((a) => a === `--${k}` || a.startsWith(`--${k}=`)));
  return key === undefined ? message : `${message} (key ${JSON.stringify(key)} in config file ${config.file})`;
}

async function run(argv: string[]): Promise<number> {
  const options = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  let config: ConfigUsed | null = null;
  try {
    checkArgumentsAreUtf8(argv);
    if (argv.length === 0 || (argv.length === 1 && (argv[0] === "--help" || argv[0] === "-h"))) {
      await writeStdout(renderProgramHelp(program));
      return Exit.Ok;
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      await writeStdout(versionText(false));
      return Exit.Ok;
    }
    const first = argv[0]!;
    if (first.startsWith("-")) throw new UsageError(`options go after the command, e.g. \`mq create --json\` (got ${JSON.stringify(first)} first)`);
    const cmd = commandNamed(first);
    if (options.some((a) => a === "--help" || a === "-h")) {
      await writeStdout(renderCommandHelp(program, cmd));
      return Exit.Ok;
    }
    if (cmd.args.config) config = await withConfigFile(cmd, argv);
    return await cmd.run(parseArgv(cmd, config ? config.argv : argv));
  } catch (err) {
    if (err instanceof MqError) {
      reportError(err);
      return exitCodeFor(err);
    }
    // The reader of our stdout went away (`mq topics | head -1`): quiet, like a SIGPIPE death.
    if (err instanceof StdoutClosedError) return Exit.ReaderGone;
    const e = err as Error;
    if (e instanceof UsageError || e instanceof RangeError) {
      const message = fromConfig(e.message, config, argv);
      const known = commands.some((c) => c.name === argv[0]) && argv[0] !== "help";
      process.stderr.write(`mq: usage: ${message}\n(run \`${known ? `mq ${argv[0]} --help` : "mq --help"}\` for help)\n`);
      return Exit.Usage;
    }
    process.stderr.write(`mq: error: ${e.message ?? String(e)}\n`);
    return Exit.Refused;
  }
}

process.exit(await run(process.argv.slice(2)));
