/**
 * Checks of command-line values; each failure is a UsageError (exit 2) naming the value.
 * Loaded by every command at start-up: it imports nothing heavy (the log flags are parsed in
 * daemons.ts, beside the logger they configure).
 */
import { DEFAULT_LISTEN, DEFAULT_MAX_MESSAGE_BYTES, MAX_DELAY_MS, defaultDataDir, defaultSocketPath, parseHostPort } from "../config.ts";
import { maskPassword } from "../store/pg/url.ts";
import type { DeliverAfter, FsyncPolicy, StoreKind } from "../store/types.ts";
import type { From } from "../wire/messages.ts";
import { groupNameProblem } from "../wire/group-name.ts";
import { UsageError } from "./output.ts";

/** Past 2^53 - 1 a number loses its last digits: such a value is refused, not sent rounded. */
const TOO_LARGE = `: it is above ${Number.MAX_SAFE_INTEGER} (2^53 - 1), past which a number loses its last digits`;

/** `s` as an integer >= min, or the reason it is not one ("" when it is not written as one). */
function integer(s: string, min: number): number | string {
  if (!/^\d+$/.test(s)) return "";
  const n = Number(s);
  if (!Number.isSafeInteger(n)) return TOO_LARGE;
  return n < min ? "" : n;
}

export function parseId(value: unknown): number {
  const s = String(value ?? "");
  const n = integer(s, 1);
  if (typeof n === "string") throw new UsageError(`ID must be a positive integer (the output of \`mq create\`), got ${JSON.stringify(s)}${n}`);
  return n;
}

export function parseCount(name: string, value: unknown, min = 1): number {
  const s = String(value);
  const n = integer(s, min);
  if (typeof n === "string") throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(s)}${n}`);
  return n;
}

/** `auto` (undefined: the program works it out) or an integer >= min. */
export function parseCountOrAuto(name: string, value: unknown, min = 1): number | undefined {
  const s = String(value);
  if (s === "auto") return undefined;
  const n = integer(s, min);
  if (typeof n === "string") throw new UsageError(`--${name} must be auto or an integer >= ${min}, got ${JSON.stringify(s)}${n}`);
  return n;
}

/** The most seconds whose ms are still an exact integer (the wire carries ms). */
const MAX_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);

export function parseSeconds(name: string, value: unknown): number {
  const s = String(value);
  const n = Number(s);
  // Plain decimals only, as the integer options: Number() would also take " 2", "0x2" and "1e3".
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(s) || n > MAX_SECONDS) throw new UsageError(`--${name} must be a number of seconds from 0 to ${MAX_SECONDS}, got ${JSON.stringify(s)}`);
  return n;
}

/** `30s`, `15m`, `12h`, `7d` (or plain milliseconds) → milliseconds. */
export function parseDuration(name: string, value: unknown): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(String(value).trim());
  if (!m) throw new UsageError(`--${name} must be a duration like 30s, 15m, 12h or 7d, got ${JSON.stringify(String(value))}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "ms") as "ms"];
  const ms = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(ms)) throw new UsageError(`--${name} ${JSON.stringify(String(value))} is too long: at most ${Number.MAX_SAFE_INTEGER} ms (about 285,000 years); give a shorter duration`);
  return ms;
}

/**
 * `pub --delay DURATION` / `--at TIMESTAMP` → the delay of a publish: `delayMs` (the
 * server's clock counts it) or `at` (ms since the epoch). A time in the past is kept (the
 * server delivers it at once); more than MAX_DELAY_MS ahead is refused.
 */
export function parseDelay(delay: unknown, at: unknown, now = Date.now()): { delayMs: number } | { at: number } {
  const limit = formatDuration(MAX_DELAY_MS);
  if (delay !== undefined) {
    const delayMs = parseDuration("delay", delay);
    if (delayMs > MAX_DELAY_MS) throw new UsageError(`--delay must be at most ${limit}, got ${JSON.stringify(String(delay))}`);
    return { delayMs };
  }
  const ms = parseTimestamp("at", at);
  if (ms - now > MAX_DELAY_MS) throw new UsageError(`--at must be at most ${limit} ahead, got ${JSON.stringify(String(at))} (${new Date(ms).toISOString()})`);
  return { at: ms };
}

/**
 * An ISO-8601 time with a zone (`2026-11-30T18:00:00Z`, `…+01:00`), a date (`2026-11-30`,
 * midnight UTC) or an integer of ms since the epoch → ms since the epoch. Impossible fields
 * (`2026-02-31`, `25:00`) are refused: Date.parse would roll them over into another day.
 */
export function parseTimestamp(name: string, value: unknown): number {
  const s = String(value).trim();
  const m = /^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?(Z|[+-](\d\d):(\d\d)))?$/i.exec(s);
  const ms = /^\d+$/.test(s) ? Number(s) : m && fieldsExist(m) ? Date.parse(s) : NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new UsageError(`--${name} must be an ISO-8601 time with a zone, like 2026-11-30T18:00:00Z, a date like 2026-11-30, or an integer of ms since the epoch, got ${JSON.stringify(s)}`);
  }
  return ms;
}

/** The date and time fields of a parseTimestamp match name a real moment. */
function fieldsExist(m: RegExpExecArray): boolean {
  const [year, month, day, hour, minute, second, , offsetHours, offsetMinutes] = m.slice(1).map((f) => (f === undefined ? 0 : Number(f)));
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  return month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysInMonth && hour! <= 23 && minute! <= 59 && second! <= 59 && offsetHours! <= 23 && offsetMinutes! <= 59;
}

/** The inverse of parseDuration for flag defaults: 120000 → "2m" (the largest exact unit). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** `512`, `64K`, `100M`, `10G` (powers of 1024) → bytes; every size flag goes through here. */
export function parseSize(name: string, value: unknown, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]i?B?|B)?$/i.exec(String(value).trim());
  if (!m) throw new UsageError(`--${name} must be a size like 512, 64K, 100M or 10G, got ${JSON.stringify(String(value))}`);
  const exp = " KMG".indexOf((m[2] ?? " ")[0]!.toUpperCase().replace("B", " "));
  const bytes = Math.round(Number(m[1]) * 1024 ** Math.max(exp, 0));
  if (bytes < min || !Number.isSafeInteger(bytes)) throw new UsageError(`--${name} must be at least ${min} byte${min === 1 ? "" : "s"}, got ${JSON.stringify(String(value))}`);
  if (bytes > max) throw new UsageError(`--${name} must be at most ${formatSize(max)}, got ${JSON.stringify(String(value))}`);
  return bytes;
}

/** The inverse of parseSize for flag defaults: 67108864 → "64M" (exact multiples only). */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [["G", 1024 ** 3], ["M", 1024 ** 2], ["K", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

export function parseFrom(value: unknown): From | undefined {
  if (value === undefined) return undefined;
  const s = String(value);
  if (s === "earliest" || s === "latest") return s;
  const n = integer(s, 1);
  if (typeof n === "number") return n;
  throw new UsageError(`--from must be "earliest", "latest" or a seq from 1 to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(s)}${n}`);
}

/** `--group NAME`: 1-64 characters of [A-Za-z0-9_.-]. */
export function parseGroup(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const problem = groupNameProblem(String(value));
  if (problem) throw new UsageError(`--group: ${problem}`);
  return String(value);
}

/**
 * `--since`: a duration back from `now` (`10m`, `2h`, `7d`) or a UTC/offset timestamp
 * (`2026-11-30`, `2026-11-30T12:00:00Z`, `2026-11-30T12:00:00+01:00`) → ms since the epoch.
 */
export function parseSince(value: unknown, now: number): number {
  const s = String(value).trim();
  if (/^\d+(?:\.\d+)?(ms|s|m|h|d)$/.test(s)) return Math.max(0, now - parseDuration("since", s));
  let stamp: number;
  try {
    stamp = parseTimestamp("since", s);
  } catch {
    throw new UsageError(`--since must be a duration back from now (like 10m, 2h, 7d), a timestamp (like 2026-11-30T12:00:00Z, with Z or an offset, or a date like 2026-11-30) or an integer of ms since the epoch, got ${JSON.stringify(String(value))}`);
  }
  // Messages are stored with their append time: a future start would still deliver older ones.
  if (stamp > now) throw new UsageError(`--since must not be in the future, got ${JSON.stringify(String(value))} (${new Date(stamp).toISOString()}; now is ${new Date(now).toISOString()}); use --from latest for only new messages`);
  return stamp;
}

export function parseFsync(value: unknown): FsyncPolicy {
  const s = String(value);
  if (s === "always" || s === "interval" || s === "never") return s;
  throw new UsageError(`--fsync must be always, interval or never, got ${JSON.stringify(s)}`);
}

/** `--deliver-after`: when subscribers get a message under `--fsync always` (lib/store/types.ts, DeliverAfter). */
export function parseDeliverAfter(value: unknown): DeliverAfter {
  const s = String(value);
  if (s === "write" || s === "fsync") return s;
  throw new UsageError(`--deliver-after must be write (push a message to subscribers once written, while its fsync runs) or fsync (only once it is on disk), got ${JSON.stringify(s)}`);
}

/** `--retention-limit`: soft keeps what a subscriber has not acknowledged, hard does not. */
export function parseRetentionLimit(value: unknown): "soft" | "hard" {
  const s = String(value);
  if (s === "soft" || s === "hard") return s;
  throw new UsageError(`--retention-limit must be soft (never delete a message a subscriber has not acknowledged) or hard (apply --retention and --retention-bytes anyway), got ${JSON.stringify(s)}`);
}

/** `--store` (or MQ_STORE): the server's storage backend (lib/store/backend.ts), and the database of postgres. */
export function parseStore(value: unknown): { kind: StoreKind; url?: string } {
  const s = String(value);
  if (s === "file" || s === "memory") return { kind: s };
  if (/^postgres(ql)?:\/\/[^/]/.test(s)) return { kind: "postgres", url: s };
  throw new UsageError(
    `--store must be file, memory or postgres://USER@HOST:PORT/DB (or postgresql://…), got ${JSON.stringify(maskPassword(s, s))} (memory keeps nothing across a restart; postgres lets several servers share one database)`,
  );
}

export function parseAddress(name: string, value: unknown): { hostname: string; port: number } {
  try {
    return parseHostPort(String(value));
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
}

export function parseTopicList(value: unknown): string[] {
  const s = String(value ?? "").trim();
  return s === "" ? [] : s.split(",").map((t) => t.trim());
}

export const defaults = {
  listen: () => DEFAULT_LISTEN,
  server: () => process.env.MQ_SERVER || DEFAULT_LISTEN,
  socket: () => process.env.MQ_SOCKET || defaultSocketPath(),
  serverData: () => process.env.MQ_DATA || defaultDataDir("server"),
  localData: () => process.env.MQ_DATA || defaultDataDir("local"),
  store: () => process.env.MQ_STORE || "file",
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
};

/** `--ttl`: a duration of at least 1 ms (a message that expires at once is a mistake). */
export function parseTtl(value: unknown): number {
  const ms = parseDuration("ttl", value);
  if (ms < 1) throw new UsageError(`--ttl must be a duration above zero like 500ms, 30s, 10m, 2h or 1d, got ${JSON.stringify(String(value))}`);
  return ms;
}
