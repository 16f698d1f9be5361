#!/usr/bin/env bun
/** The `mq` executable: parses arguments with citty and calls lib/. Nothing else lives here. */
import * as fs from "node:fs";
import * as path from "node:path";
import { defineCommand, runCommand, runMain, type ArgsDef } from "citty";
import { MqError } from "../lib/errors.ts";
import * as cli from "../lib/cli/commands.ts";
import { readTokenFile, runLocal, runServer, runUp } from "../lib/cli/daemons.ts";
import { Exit, UsageError, exitCodeFor, reportError } from "../lib/cli/output.ts";
import { defaults, parseAddress, parseCount, parseDuration, parseFrom, parseFsync, parseId, parseLogOptions, parseSeconds, parseSize, parseTopicList } from "../lib/cli/parse.ts";
import { configureLog } from "../lib/log.ts";
import { runBench } from "../lib/cli/bench.ts";
import { DEFAULT_SERVER_LIMITS } from "../lib/server/server.ts";
import { DEFAULT_LOCAL_LIMITS } from "../lib/local/local.ts";

let exitCode: number = Exit.Ok;

const common = {
  json: { type: "boolean", description: "print one JSON object per result (NDJSON)" },
  socket: { type: "string", description: "Unix socket of the local broker (env MQ_SOCKET)" },
} as const satisfies ArgsDef;

const id = { type: "positional", description: "client id (from mq create)", required: true } as const;
const topic = { type: "positional", description: "topic name", required: true } as const;

function commonOf(args: { json?: boolean; socket?: string }): cli.CommonOptions {
  return { json: Boolean(args.json), ...(args.socket ? { socket: args.socket } : {}) };
}

/** Topics are every positional after ID. */
function topicsOf(args: { _: string[] }): string[] {
  return args._.slice(1).map(String);
}

const create = defineCommand({
  meta: { name: "create", description: "create a client id and print it" },
  args: { ...common },
  run: async ({ args }) => {
    exitCode = await cli.create(commonOf(args));
  },
});

const pub = defineCommand({
  meta: { name: "pub", description: "publish MESSAGE (or standard input) to TOPIC" },
  args: {
    ...common,
    id,
    topic,
    message: { type: "positional", description: "the message; standard input when absent", required: false },
    lines: { type: "boolean", description: "one message per input line" },
    raw: { type: "boolean", description: "keep the input bytes exactly (no trailing newline removed)" },
  },
  run: async ({ args }) => {
    const opts: cli.PubOptions = { ...commonOf(args), id: parseId(args.id), topic: String(args.topic), lines: Boolean(args.lines), raw: Boolean(args.raw) };
    if (args.message !== undefined) opts.message = String(args.message);
    exitCode = await cli.pub(opts);
  },
});

const sub = defineCommand({
  meta: { name: "sub", description: "subscribe ID to TOPIC..." },
  args: { ...common, id, topic, from: { type: "string", description: "earliest | latest | SEQ (inclusive); default latest" } },
  run: async ({ args }) => {
    const from = parseFrom(args.from);
    exitCode = await cli.sub({ ...commonOf(args), id: parseId(args.id), topics: topicsOf(args), ...(from === undefined ? {} : { from }) });
  },
});

const unsub = defineCommand({
  meta: { name: "unsub", description: "unsubscribe ID from TOPIC..." },
  args: { ...common, id, topic },
  run: async ({ args }) => {
    exitCode = await cli.unsub({ ...commonOf(args), id: parseId(args.id), topics: topicsOf(args) });
  },
});

const recv = defineCommand({
  meta: { name: "recv", description: "receive the next pending message(s) of ID" },
  args: {
    ...common,
    id,
    wait: { type: "string", description: "wait up to SECONDS for a message" },
    follow: { type: "boolean", description: "stream messages until interrupted (or --count reached)" },
    count: { type: "string", description: "receive up to N messages" },
    raw: { type: "boolean", description: "write the payload bytes exactly, no newline" },
  },
  run: async ({ args }) => {
    const opts: cli.RecvOptions = {
      ...commonOf(args),
      id: parseId(args.id),
      waitSeconds: args.wait === undefined ? 0 : parseSeconds("wait", args.wait),
      follow: Boolean(args.follow),
      raw: Boolean(args.raw),
    };
    if (args.count !== undefined) opts.count = parseCount("count", args.count);
    exitCode = await cli.recv(opts);
  },
});

const destroy = defineCommand({
  meta: { name: "destroy", description: "remove ID everywhere: subscriptions, pending messages, mapping" },
  args: { ...common, id },
  run: async ({ args }) => {
    exitCode = await cli.destroy({ ...commonOf(args), id: parseId(args.id) });
  },
});

const topics = defineCommand({
  meta: { name: "topics", description: "list topics with subscriber and message counts" },
  args: { ...common },
  run: async ({ args }) => {
    exitCode = await cli.topics(commonOf(args));
  },
});

const stats = defineCommand({
  meta: { name: "stats", description: "counters of the local broker and the server" },
  args: { ...common },
  run: async ({ args }) => {
    exitCode = await cli.stats(commonOf(args));
  },
});

/** The daemons' log options (docs/logging.md). */
const logArgs = {
  "log-level": { type: "string", description: "error | warn | info | debug | trace (env MQ_LOG_LEVEL; default info)" },
  "log-json": { type: "boolean", description: "one JSON object per log line (env MQ_LOG_JSON=1)" },
} as const satisfies ArgsDef;

const serverArgs = {
  ...logArgs,
  listen: { type: "string", description: "HOST:PORT to listen on (default 127.0.0.1:7600)" },
  data: { type: "string", description: "data directory (env MQ_DATA)" },
  "default-topics": { type: "string", description: "topics created at start, comma-separated (default general)" },
  fsync: { type: "string", description: "always | interval | never (default always)" },
  "fsync-interval-ms": { type: "string", description: "fsync period for --fsync interval (default 50)" },
  "max-message-bytes": { type: "string", description: "largest message accepted (default 1048576)" },
  "token-file": { type: "string", description: "file holding the token local brokers must present" },
  "tls-cert": { type: "string", description: "PEM certificate: serve TLS" },
  "tls-key": { type: "string", description: "PEM private key for --tls-cert" },
  "hello-timeout-ms": { type: "string", description: "close connections that send no hello in time (default 10000)" },
  "frame-timeout-ms": { type: "string", description: "close connections whose frame takes longer to arrive (default 30000)" },
  "max-connections": { type: "string", description: "most local-broker connections (default 1024)" },
  "max-inflight": { type: "string", description: "most requests served at once per connection (default 16384)" },
  "max-subscriptions-per-id": { type: "string", description: "default 10000" },
  "max-ids-per-broker": { type: "string", description: "most ids one local broker may own (default 100000)" },
  retention: { type: "string", description: "delete segments every subscriber is past once older than this (default 7d)" },
  "retention-bytes": { type: "string", description: "…or while a topic's log is bigger than this (default: no limit)" },
  "max-segment-bytes": { type: "string", description: "roll a topic's log segment at this size (default 64M)" },
} as const satisfies ArgsDef;

type ServerArgs = { [K in Exclude<keyof typeof serverArgs, keyof typeof logArgs>]?: string };

function serverOptions(args: ServerArgs, dataDir: string) {
  const listen = parseAddress("listen", args.listen ?? defaults.listen());
  if (Boolean(args["tls-cert"]) !== Boolean(args["tls-key"])) throw new UsageError("--tls-cert and --tls-key go together");
  return {
    ...listen,
    dataDir,
    defaultTopics: parseTopicList(args["default-topics"] ?? "general"),
    fsync: parseFsync(args.fsync ?? "always"),
    fsyncIntervalMs: parseCount("fsync-interval-ms", args["fsync-interval-ms"] ?? 50),
    maxMessageBytes: parseCount("max-message-bytes", args["max-message-bytes"] ?? defaults.maxMessageBytes),
    helloTimeoutMs: parseCount("hello-timeout-ms", args["hello-timeout-ms"] ?? 10_000),
    maxSegmentBytes: parseSize("max-segment-bytes", args["max-segment-bytes"] ?? "64M"),
    retention: {
      maxAgeMs: parseDuration("retention", args.retention ?? "7d"),
      maxBytes: args["retention-bytes"] === undefined ? Infinity : parseSize("retention-bytes", args["retention-bytes"]),
    },
    limits: {
      maxConnections: parseCount("max-connections", args["max-connections"] ?? DEFAULT_SERVER_LIMITS.maxConnections),
      frameTimeoutMs: parseCount("frame-timeout-ms", args["frame-timeout-ms"] ?? DEFAULT_SERVER_LIMITS.frameTimeoutMs),
      maxInFlight: parseCount("max-inflight", args["max-inflight"] ?? DEFAULT_SERVER_LIMITS.maxInFlight),
      maxSubscriptionsPerId: parseCount("max-subscriptions-per-id", args["max-subscriptions-per-id"] ?? DEFAULT_SERVER_LIMITS.maxSubscriptionsPerId),
      maxIdsPerBroker: parseCount("max-ids-per-broker", args["max-ids-per-broker"] ?? DEFAULT_SERVER_LIMITS.maxIdsPerBroker),
    },
    ...(args["token-file"] ? { token: readTokenFile(args["token-file"]) } : {}),
    ...(args["tls-cert"] && args["tls-key"]
      ? { tls: { cert: fs.readFileSync(args["tls-cert"], "utf8"), key: fs.readFileSync(args["tls-key"], "utf8") } }
      : {}),
  };
}

const server = defineCommand({
  meta: { name: "server", description: "run the broker (foreground; logs on stderr)" },
  args: serverArgs,
  run: async ({ args }) => {
    configureLog(parseLogOptions(args));
    exitCode = await runServer(serverOptions(args, args.data ?? defaults.serverData()));
  },
});

const local = defineCommand({
  meta: { name: "local", description: "run the local broker of this host (foreground; logs on stderr)" },
  args: {
    ...logArgs,
    socket: common.socket,
    server: { type: "string", description: "HOST:PORT of the server (env MQ_SERVER; default 127.0.0.1:7600)" },
    data: { type: "string", description: "data directory (env MQ_DATA)" },
    "token-file": { type: "string", description: "file holding the token for the server" },
    "tls-ca": { type: "string", description: "PEM CA certificate of the server: connect with TLS" },
    "hello-timeout-ms": { type: "string", description: "close client connections that send no hello in time (default 10000)" },
    "frame-timeout-ms": { type: "string", description: "close clients whose frame takes longer to arrive (default 30000)" },
    "max-connections": { type: "string", description: "most client connections (default 1024)" },
    "max-inflight": { type: "string", description: "most requests served at once per client connection (default 1024)" },
  },
  run: async ({ args }) => {
    configureLog(parseLogOptions(args));
    exitCode = await runLocal({
      socketPath: args.socket ?? defaults.socket(),
      server: parseAddress("server", args.server ?? defaults.server()),
      dataDir: args.data ?? defaults.localData(),
      helloTimeoutMs: parseCount("hello-timeout-ms", args["hello-timeout-ms"] ?? 10_000),
      limits: {
        maxConnections: parseCount("max-connections", args["max-connections"] ?? DEFAULT_LOCAL_LIMITS.maxConnections),
        frameTimeoutMs: parseCount("frame-timeout-ms", args["frame-timeout-ms"] ?? DEFAULT_LOCAL_LIMITS.frameTimeoutMs),
        maxInFlight: parseCount("max-inflight", args["max-inflight"] ?? DEFAULT_LOCAL_LIMITS.maxInFlight),
      },
      ...(args["token-file"] ? { token: readTokenFile(args["token-file"]) } : {}),
      ...(args["tls-ca"] ? { tlsCa: fs.readFileSync(args["tls-ca"], "utf8") } : {}),
    });
  },
});

const up = defineCommand({
  meta: { name: "up", description: "run a server and a local broker together on default paths" },
  args: { ...serverArgs, socket: common.socket },
  run: async ({ args }) => {
    configureLog(parseLogOptions(args));
    const base = args.data ?? (process.env.MQ_DATA || path.dirname(defaults.serverData()));
    const srv = serverOptions(args, path.join(base, "server"));
    exitCode = await runUp(srv, {
      socketPath: args.socket ?? defaults.socket(),
      dataDir: path.join(base, "local"),
      ...(srv.token ? { token: srv.token } : {}),
      ...(srv.tls ? { tlsCa: srv.tls.cert } : {}),
    });
  },
});

const bench = defineCommand({
  meta: { name: "bench", description: "load generator: publish and receive through the local broker, report rates and latency" },
  args: {
    ...common,
    topic: { type: "string", description: "topic to use (default bench)" },
    count: { type: "string", description: "messages per publisher (default 100000)" },
    size: { type: "string", description: "payload bytes (default 128)" },
    pubs: { type: "string", description: "publishers (default 1)" },
    subs: { type: "string", description: "subscribers (default 1)" },
    window: { type: "string", description: "publishes in flight per publisher (default 256)" },
  },
  run: async ({ args }) => {
    exitCode = await runBench({
      ...commonOf(args),
      topic: args.topic ?? "bench",
      count: parseCount("count", args.count ?? 100_000),
      size: parseCount("size", args.size ?? 128, 0),
      pubs: parseCount("pubs", args.pubs ?? 1, 0),
      subs: parseCount("subs", args.subs ?? 1, 0),
      window: parseCount("window", args.window ?? 256),
    });
  },
});

const main = defineCommand({
  meta: { name: "mq", version: "0.1.0", description: "a durable publish/subscribe message queue" },
  subCommands: { create, pub, sub, unsub, recv, destroy, topics, stats, bench, server, local, up },
});

/** The most positional arguments each command takes (sub and unsub take any number of topics). */
const positionalLimits: Record<string, [{ args?: unknown }, number]> = {
  create: [create, 0], pub: [pub, 3], sub: [sub, Infinity], unsub: [unsub, Infinity], recv: [recv, 1], destroy: [destroy, 1],
  topics: [topics, 0], stats: [stats, 0], bench: [bench, 0], server: [server, 0], local: [local, 0], up: [up, 0],
};

/**
 * citty ignores unknown options and extra words; here a typo (`--folow`) or a stray word
 * is bad usage (exit 2) instead of a silent default.
 */
function checkArgv(argv: string[]): void {
  const name = argv[0]!;
  if (name.startsWith("-")) throw new UsageError(`options go after the command, e.g. \`mq create --json\` (got ${JSON.stringify(name)} first)`);
  const entry = positionalLimits[name];
  if (!entry) return; // citty reports an unknown command
  const defs = (entry[0].args ?? {}) as Record<string, { type: string }>;
  let positionals = 0;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals += argv.length - i - 1;
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const key = arg.slice(2, eq < 0 ? undefined : eq);
      const def = defs[key] ?? (key.startsWith("no-") ? defs[key.slice(3)] : undefined);
      if (!def || def.type === "positional") throw new UsageError(`unknown option --${key} for \`mq ${name}\``);
      if (def.type === "string" && eq < 0) {
        if (i + 1 >= argv.length) throw new UsageError(`--${key} needs a value`);
        i++;
      }
    } else if (arg.startsWith("-") && arg !== "-") {
      // citty would read "-5" as a flag and drop it; an argument that starts with "-" goes after "--".
      throw new UsageError(`unknown option ${arg} for \`mq ${name}\` (to pass an argument that starts with "-", put it after --)`);
    } else positionals++;
  }
  if (positionals > entry[1]) {
    const extra = name === "pub" ? "; quote the message, or send it on standard input" : "";
    throw new UsageError(`\`mq ${name}\` takes at most ${entry[1]} argument${entry[1] === 1 ? "" : "s"}, got ${positionals}${extra}`);
  }
}

async function run(argv: string[]): Promise<number> {
  if (argv.length === 0) argv = ["--help"];
  const options = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  if (options.some((a) => a === "--help" || a === "-h") || (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v"))) {
    await runMain(main, { rawArgs: argv }); // shows usage or version
    return Exit.Ok;
  }
  try {
    checkArgv(argv);
    await runCommand(main, { rawArgs: argv });
    return exitCode;
  } catch (err) {
    if (err instanceof MqError) {
      reportError(err);
      return exitCodeFor(err);
    }
    const e = err as Error;
    if (e instanceof UsageError || e.name === "CLIError" || e instanceof RangeError) {
      // citty colours its messages; stderr may be a file or a pipe.
      const message = e.message.replace(/\x1b\[[0-9;]*m/g, "");
      const help = argv[0] && argv[0] in positionalLimits ? `mq ${argv[0]} --help` : "mq --help";
      process.stderr.write(`mq: usage: ${message}\n(run \`${help}\` for help)\n`);
      return Exit.Usage;
    }
    process.stderr.write(`mq: error: ${e.message ?? String(e)}\n`);
    return Exit.Refused;
  }
}

process.exit(await run(process.argv.slice(2)));
