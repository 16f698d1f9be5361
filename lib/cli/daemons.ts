/** Running the daemons in the foreground: start, log, stop cleanly on SIGINT/SIGTERM. */
import * as fs from "node:fs";
import * as path from "node:path";
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { LocalBroker, type LocalOptions } from "../local/local.ts";
import { startHttp, type HttpEndpoint, type HttpOptions, type HttpTarget } from "../http/server.ts";
import { MqError } from "../errors.ts";
import { LOG_LEVEL_CHOICES, logger, logJsonOf, logLevelOf, type LogOptions } from "../log.ts";
import { MqServer, type ServerOptions } from "../server/server.ts";
import type { Connection, SocketLike } from "../wire/connection.ts";
import { joinInMemory } from "../wire/memory-link.ts";
import { parseServerList, type ServerAddress } from "../local/server-list.ts";
import { Exit, UsageError, exitCodeFor } from "./output.ts";

const log = logger("mq");

/** `mq local --server A,B,…` (or MQ_SERVER): the servers, in order; `name` is where the value came from. */
export function parseServers(value: string, name: string): ServerAddress[] {
  try {
    return parseServerList(value);
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
}

/** `error|warn|info|debug|trace` or 0–5; `name` is where the value came from (`--log-level`, `MQ_LOG_LEVEL`). */
export function parseLogLevel(value: unknown, name = "--log-level"): number {
  const level = logLevelOf(String(value));
  if (level === undefined) throw new UsageError(`${name} must be ${LOG_LEVEL_CHOICES}, got ${JSON.stringify(String(value))}`);
  return level;
}

/** The daemons' log flags, each falling back to its environment variable (MQ_LOG_LEVEL, MQ_LOG_JSON). */
export function parseLogOptions(args: { "log-level"?: string; "log-json"?: boolean }): LogOptions {
  const envLevel = process.env.MQ_LOG_LEVEL || undefined;
  const level =
    args["log-level"] !== undefined ? parseLogLevel(args["log-level"]) : envLevel !== undefined ? parseLogLevel(envLevel, "MQ_LOG_LEVEL") : undefined;
  let json = args["log-json"];
  if (json === undefined) {
    json = logJsonOf(process.env.MQ_LOG_JSON);
    if (json === undefined) throw new UsageError(`MQ_LOG_JSON must be 1 or true (JSON lines), 0, false or empty (text), got ${JSON.stringify(process.env.MQ_LOG_JSON)}`);
  }
  return { ...(level === undefined ? {} : { level }), json };
}

/**
 * A file a flag names could not be read (missing, not readable by this user, a directory):
 * exit 1, a runtime error, not bad usage (2). A service manager restarts the daemon (systemd's
 * units stop restarting only on exit 2), so a mount or a secret that comes up late at boot
 * does not keep it down for good. A file read that holds the wrong thing stays bad usage.
 */
function unreadable(what: string, file: string, err: unknown): Error {
  return new Error(`Cannot read ${what} ${file}: ${(err as Error).message}; check the path, and that the daemon's user may read it`, { cause: err });
}

/** Reads a token file; whitespace around the token is ignored. `flag`: the option that named it. */
export function readTokenFile(file: string, flag: "token-file" | "http-token-file" = "token-file"): string {
  let token: string;
  try {
    token = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw unreadable(`the --${flag} file`, file, err);
  }
  if (token.length === 0) throw new UsageError(`--${flag} ${file} is empty; put the shared secret in it`);
  return token;
}

/**
 * Reads the PEM file of a TLS flag and parses it at start, naming the flag and the file — not
 * a retry loop that says "Invalid CA" every 2 s, nor a listen error that blames the address.
 * A file that holds no certificate (no usable private key) is a usage error (exit 2, which a
 * service manager does not restart); one that cannot be read exits 1 (restarted: it may be
 * on a mount that comes up late).
 */
export function readPemFile(flag: "tls-cert" | "tls-key" | "tls-ca", file: string): string {
  let pem: string;
  try {
    pem = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw unreadable(`the --${flag} file`, file, err);
  }
  try {
    if (flag === "tls-key") createPrivateKey(pem);
    else new X509Certificate(pem);
  } catch (err) {
    const why = (err as Error).message;
    if (flag === "tls-key" && /passphrase/i.test(why)) {
      throw new UsageError(`--tls-key ${file} is an encrypted private key, and mq takes no passphrase: decrypt it (openssl pkey -in ${file} -out ${file}.plain, kept 0600) and give that`);
    }
    throw new UsageError(`--${flag} ${file} is not a PEM ${flag === "tls-key" ? "private key" : "certificate"} that parses (${why}); give the PEM file`);
  }
  return pem;
}

/** The server's certificate and key must be a pair: checked at start, naming both files, not found out at listen. */
export function checkTlsPair(cert: string, key: string, certFile: string, keyFile: string): void {
  if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
    throw new UsageError(`--tls-key ${keyFile} is not the private key of the certificate in --tls-cert ${certFile}; give the key the certificate was made with`);
  }
}

/**
 * `mq up` without --token-file: the token file at `file`, made once (32 random bytes as hex,
 * mode 0600 in a 0700 directory) so that other users of the host cannot use the TCP port.
 */
export function ensureTokenFile(file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
    log.info(`made the token file ${file} (mode 0600); other local brokers of this server need --token-file ${file}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new Error(`Cannot create token file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return file;
}

/** Resolves when SIGINT or SIGTERM arrives. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
}

/**
 * The process handlers of a daemon, installed before it starts. A bug in one connection's
 * handling must not take the daemon down: log it and go on. Returns the first SIGINT or
 * SIGTERM, listened for from the start: one that comes right after "listening on" stops
 * the daemon cleanly instead of killing it (exit 143).
 */
function supervise(): Promise<string> {
  process.on("uncaughtException", (err) => log.error("uncaught exception (kept running):", err));
  process.on("unhandledRejection", (err) => log.error("unhandled rejection (kept running):", err));
  return untilSignal();
}

/**
 * A daemon that cannot start (port in use, data directory locked, bad socket directory)
 * says why in one log line, in the log's format, and exits non-zero: 4 for UNAVAILABLE, else 1.
 */
function startFailed(what: string, err: unknown): number {
  logger(what).error(err);
  return err instanceof MqError ? exitCodeFor(err) : Exit.Refused;
}

async function stopOnSignal(signalled: Promise<string>, stoppers: Array<() => Promise<void>>): Promise<number> {
  const signal = await signalled;
  log.info(`${signal} received: stopping`);
  // A second signal while stopping exits at once.
  process.once("SIGINT", () => process.exit(130));
  process.once("SIGTERM", () => process.exit(143));
  for (const stop of stoppers) await stop();
  return 0;
}

/**
 * Starts the HTTP endpoint of `target` when `options` asks for one (--http); null when not.
 * Throws when it cannot listen: the caller stops the daemon and exits non-zero.
 */
function httpOf(target: HttpTarget, options: HttpOptions | undefined): HttpEndpoint | null {
  return options ? startHttp(target, options) : null;
}

export async function runServer(options: ServerOptions, http?: HttpOptions): Promise<number> {
  const signalled = supervise();
  let server: MqServer;
  let web: HttpEndpoint | null;
  try {
    server = await MqServer.start(options);
  } catch (err) {
    return startFailed("server", err);
  }
  try {
    web = httpOf({ server }, http);
  } catch (err) {
    await server.stop();
    return startFailed("http", err);
  }
  return stopOnSignal(signalled, [async () => await web?.stop(), () => server.stop()]);
}

export async function runLocal(options: LocalOptions, http?: HttpOptions): Promise<number> {
  const signalled = supervise();
  let local: LocalBroker;
  let web: HttpEndpoint | null;
  try {
    local = await LocalBroker.start(options);
  } catch (err) {
    return startFailed("local", err);
  }
  try {
    web = httpOf({ local }, http);
  } catch (err) {
    await local.stop();
    return startFailed("http", err);
  }
  return stopOnSignal(signalled, [async () => await web?.stop(), () => local.stop()]);
}

/**
 * `mq up`: a server and a local broker in one process, data under `dataDir/{server,local}`;
 * `http.server` / `http.local`: their HTTP endpoints (--http, --local-http), each optional.
 */
export async function runUp(server: ServerOptions, local: Omit<LocalOptions, "server" | "inProcess">, http: { server?: HttpOptions; local?: HttpOptions } = {}, link: UpLink = "memory"): Promise<number> {
  const signalled = supervise();
  let srv: MqServer;
  try {
    srv = await MqServer.start(server);
  } catch (err) {
    return startFailed("server", err);
  }
  let loc: LocalBroker;
  try {
    // In memory the frames skip the syscalls and the kernel's loopback (--link, docs/architecture.md).
    const inProcess = link === "memory" ? (attach: (socket: SocketLike) => Connection) => joinInMemory((socket) => srv.acceptInProcess(socket, "in-process"), attach) : undefined;
    loc = await LocalBroker.start({ ...local, server: { hostname: connectHost(server.hostname), port: srv.port }, ...(inProcess ? { inProcess } : {}) });
  } catch (err) {
    const code = startFailed("local", err);
    await srv.stop();
    return code;
  }
  const webs: HttpEndpoint[] = [];
  try {
    for (const [target, options] of [[{ server: srv }, http.server], [{ local: loc }, http.local]] as const) {
      const web = httpOf(target, options);
      if (web) webs.push(web);
    }
  } catch (err) {
    for (const web of webs) await web.stop();
    await loc.stop();
    await srv.stop();
    return startFailed("http", err);
  }
  log.info(`mq is up: try \`id=$(mq create)\` (socket ${local.socketPath}, data ${path.dirname(server.dataDir)})`);
  return stopOnSignal(signalled, [...webs.map((web) => () => web.stop()), () => loc.stop(), () => srv.stop()]);
}

/** How `mq up` joins its local broker to its server (`--link`): in memory, or over loopback TCP as separate daemons do. */
export type UpLink = "memory" | "tcp";

/** `--link memory|tcp` of `mq up`. */
export function parseUpLink(value: unknown): UpLink {
  const s = String(value);
  if (s === "memory" || s === "tcp") return s;
  throw new UsageError(`--link must be memory (the local broker reaches the server inside the process) or tcp (over loopback TCP, as separate daemons), got ${JSON.stringify(s)}`);
}

/** Where to connect to reach a server listening on `host` (a wildcard listens on every address). */
function connectHost(host: string): string {
  return host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
}
