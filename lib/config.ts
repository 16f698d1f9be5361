/** Default paths and sizes shared by the daemons and the CLI. */
import * as os from "node:os";
import * as path from "node:path";

export const DEFAULT_LISTEN = "127.0.0.1:7600";
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/** Frame limit: the largest message plus room for the fields around it. */
export function maxFrameBytes(maxMessageBytes: number): number {
  return maxMessageBytes + 64 * 1024;
}
export const DEFAULT_HELLO_TIMEOUT_MS = 10_000;
/**
 * Heartbeat on the server hop (both ends): a ping after this many ms without a sign of life,
 * and the peer given up after DEFAULT_HEARTBEAT_MISSED such intervals in a row (6–8 s).
 */
export const DEFAULT_HEARTBEAT_MS = 2000;
export const DEFAULT_HEARTBEAT_MISSED = 3;

/**
 * Limits of the server against greedy or hostile local brokers (`ServerLimits` in
 * lib/server/server.ts, docs/security.md). Here rather than beside the server so that the CLI
 * can show them in `--help` without loading the server.
 */
export const DEFAULT_SERVER_LIMITS = {
  maxConnections: 1024,
  maxSubscriptionsPerId: 10_000,
  maxIdsPerBroker: 100_000,
  frameTimeoutMs: 30_000,
  maxInFlight: 16_384,
  maxTopics: 1_000_000,
  // Delayed messages pending, and their payload bytes (0: no limit): each is held in the
  // server's memory and twice on disk until due.
  maxScheduled: 1_000_000,
  maxScheduledBytes: 256 * 1024 * 1024,
};

/** Limits and memory budgets of a local broker (`LocalLimits` in lib/local/local.ts, docs/security.md). */
export const DEFAULT_LOCAL_LIMITS = {
  maxConnections: 1024,
  frameTimeoutMs: 30_000,
  maxInFlight: 1024,
  bufferBytes: 64 * 1024 * 1024,
  bufferBytesPerId: 16 * 1024 * 1024,
};

/** sun_path holds 108 bytes with its NUL: a longer Unix socket path can be neither listened on nor connected to (a bare EINVAL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** `$XDG_RUNTIME_DIR/mq/local.sock`, else `/tmp/mq-$UID/local.sock`. */
export function defaultSocketPath(env: Record<string, string | undefined> = process.env): string {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "mq", "local.sock");
  return path.join(os.tmpdir(), `mq-${process.getuid?.() ?? "user"}`, "local.sock");
}

/** `$XDG_DATA_HOME/mq/<role>`, else `~/.local/share/mq/<role>`. */
export function defaultDataDir(role: "server" | "local", env: Record<string, string | undefined> = process.env): string {
  const base = env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share");
  return path.join(base, "mq", role);
}

/** True for an address only this host can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\./.test(h);
}

/** Parses `HOST:PORT` (IPv6 as `[::1]:7600`). Throws a RangeError naming the value. */
export function parseHostPort(value: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new RangeError(`Cannot parse address ${JSON.stringify(value)}: expected HOST:PORT, e.g. 127.0.0.1:7600`);
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** The HTTP endpoint's /metrics: topics with series of their own (`--metrics-max-topics`); the rest are summed under topic="_other". */
export const DEFAULT_METRICS_MAX_TOPICS = 1000;

/** Delayed delivery (`pub --delay` / `--at`): the furthest ahead a message may be due. */
export const MAX_DELAY_MS = 366 * 86_400_000;

/** Deduplication of publishes by msg-id (lib/server/dedupe.ts): how long a topic remembers an id, and the most entries kept in all. */
export const DEFAULT_DEDUPE = { windowMs: 2 * 60_000, maxKeys: 1_000_000 };

/** `mq pub --lines`: how long publishes not acknowledged are sent again after a lost connection (`--retry-for`). */
export const LINES_RETRY_SECONDS = 30;
