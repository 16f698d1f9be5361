/** Running the daemons in the foreground: start, log, stop cleanly on SIGINT/SIGTERM. */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { LocalBroker, type LocalOptions } from "../local/local.ts";
import { logger } from "../log.ts";
import { MqServer, type ServerOptions } from "../server/server.ts";

const log = logger("mq");

/** Reads a token file; whitespace around the token is ignored. */
export function readTokenFile(file: string): string {
  let token: string;
  try {
    token = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new Error(`Cannot read token file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (token.length === 0) throw new Error(`Token file ${file} is empty; put the shared secret in it`);
  return token;
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

/** A bug in one connection's handling must not take the daemon down: log it and go on. */
function keepAlive(): void {
  process.on("uncaughtException", (err) => log.error("uncaught exception (kept running):", err));
  process.on("unhandledRejection", (err) => log.error("unhandled rejection (kept running):", err));
}

async function stopOnSignal(stoppers: Array<() => Promise<void>>): Promise<number> {
  const signal = await untilSignal();
  log.info(`${signal}: stopping`);
  // A second signal while stopping exits at once.
  process.once("SIGINT", () => process.exit(130));
  process.once("SIGTERM", () => process.exit(143));
  for (const stop of stoppers) await stop();
  return 0;
}

export async function runServer(options: ServerOptions): Promise<number> {
  keepAlive();
  const server = await MqServer.start(options);
  return stopOnSignal([() => server.stop()]);
}

export async function runLocal(options: LocalOptions): Promise<number> {
  keepAlive();
  const local = await LocalBroker.start(options);
  return stopOnSignal([() => local.stop()]);
}

/** `mq up`: a server and a local broker in one process, data under `dataDir/{server,local}`. */
export async function runUp(server: ServerOptions, local: Omit<LocalOptions, "server">): Promise<number> {
  keepAlive();
  const srv = await MqServer.start(server);
  const loc = await LocalBroker.start({ ...local, server: { hostname: connectHost(server.hostname), port: srv.port } });
  log.info(`mq is up: try \`id=$(mq create)\` (socket ${local.socketPath}, data ${path.dirname(server.dataDir)})`);
  return stopOnSignal([() => loc.stop(), () => srv.stop()]);
}

/** Where to connect to reach a server listening on `host` (a wildcard listens on every address). */
function connectHost(host: string): string {
  return host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
}
