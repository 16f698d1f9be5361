/**
 * Daemon logs: one line per event, always on stderr (stdout belongs to command output).
 *
 * consola provides the levels and one logger per component; the reporter here writes the
 * lines. consola's own reporters are not used: they pick colours from stdout (fd 1) and
 * TERM, not from the stream they write to, put blank lines around warnings and right-align
 * a 12-hour clock at the terminal width. Formats (docs/logging.md):
 *
 *   off a terminal  2026-11-30T15:42:51.123Z INFO  [server] listening on 127.0.0.1:7600 …
 *   at a terminal   15:42:51.123 INFO  [server] listening on 127.0.0.1:7600 …  (local time, coloured)
 *   --log-json      {"time":"2026-11-30T15:42:51.123Z","level":"info","tag":"server","msg":"listening on …"}
 *
 * `configureLog` is the one place that sets level, format and colour.
 */
import { createConsola, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";

/** Level names and the consola level each one shows (consola numbers 0–5 work too). */
export const LOG_LEVELS = { error: 0, warn: 1, info: 3, debug: 4, trace: 5 } as const;
export type LogLevelName = keyof typeof LOG_LEVELS;
const LEVEL_NAMES = Object.keys(LOG_LEVELS).join(", ");
/** What a level value may be, for messages: `error, warn, info, debug, trace or 0-5`. */
export const LOG_LEVEL_CHOICES = `${LEVEL_NAMES} or a number 0-5`;

/** `"debug"`, `"DEBUG"` or `"4"` → 4; undefined for anything else. */
export function logLevelOf(value: string | number): number | undefined {
  const s = String(value).trim().toLowerCase();
  if (s in LOG_LEVELS) return LOG_LEVELS[s as LogLevelName];
  if (/^[0-5]$/.test(s)) return Number(s);
  return undefined;
}

export interface LogOptions {
  /** A level name or a consola number 0–5; default info. */
  level?: LogLevelName | number;
  /** One JSON object per line instead of text; default false. */
  json?: boolean;
  /** ANSI colours in text lines; default: see `colorFor`. */
  color?: boolean;
}

/** The name a line shows for a consola level (2, consola's plain `log`, counts as info). */
function levelName(level: number): LogLevelName {
  return level <= 0 ? "error" : level === 1 ? "warn" : level <= 3 ? "info" : level === 4 ? "debug" : "trace";
}

/**
 * Colour follows the stream written to: FORCE_COLOR (not `0`/`false`) turns it on, else
 * NO_COLOR (not empty) turns it off, else colour when that stream is a terminal and TERM
 * is not `dumb`. TERM, TMUX or a terminal on stdout alone never colour a log file.
 */
export function colorFor(stream: { isTTY?: boolean }, env: Record<string, string | undefined> = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== "0" && force.toLowerCase() !== "false";
  if (env.NO_COLOR) return false;
  return Boolean(stream.isTTY) && env.TERM !== "dumb";
}

interface State {
  level: number;
  json: boolean;
  /** undefined: `colorFor(stderr)`, decided at the first line. */
  color: boolean | undefined;
  /** At a terminal: local 24-hour time; elsewhere ISO-8601 UTC. undefined: decided at the first line. */
  clock: boolean | undefined;
}

/**
 * stderr, first touched when a line is written: setting up `process.stderr` costs a few ms of
 * start-up, and the client commands load this module (through lib/wire) but rarely log.
 */
let out: typeof process.stderr | undefined;
function stderr(): typeof process.stderr {
  out ??= process.stderr;
  return out;
}
const state: State = { level: LOG_LEVELS.info, json: false, color: undefined, clock: undefined };
/** A bad MQ_LOG_LEVEL / MQ_LOG_JSON seen without `configureLog`: said once, before the first line. */
let envWarning: string | null = null;

// --- formatting ---

const ERRNO: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this host",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EEXIST: "already exists",
  EISDIR: "is a directory",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EIO: "I/O error",
  EMFILE: "too many open files",
  ENAMETOOLONG: "name too long",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset by peer",
  ECONNABORTED: "connection aborted",
  EPIPE: "broken pipe",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host name not found",
};

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * One error in words: Node-style messages (`ENOSPC: no space left on device, write`) as they
 * are; Bun's bare socket messages (`Failed to listen at 127.0.0.1`) become `address already
 * in use (EADDRINUSE)`.
 */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = codeOf(err);
  if (code && /^E[A-Z0-9]+$/.test(code) && !err.message.includes(code)) return `${ERRNO[code] ?? err.message} (${code})`;
  return err.message;
}

/** `err` and its causes, outermost first (a cycle ends the walk). */
function chainOf(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && !chain.includes(e); e = e instanceof Error ? e.cause : undefined) chain.push(e);
  return chain;
}

/** The message and its causes, each said once: `cannot store …: ENOSPC: no space left on device, write`. */
function chainText(err: Error): string {
  let text = "";
  for (const e of chainOf(err)) {
    const more = errorText(e);
    const code = codeOf(e);
    // A wrapper that already says its cause (or names its code) is not repeated.
    if (text.includes(more) || (code !== undefined && text.includes(code))) continue;
    text += text === "" ? more : `: ${more}`;
  }
  return text;
}

/**
 * An expected error — an MqError, a system error (EADDRINUSE, ENOSPC, ECONNRESET), or an
 * error caused by one — has a string `code` in its chain and is one line; anything else
 * (and INTERNAL, which wraps one) is a bug and keeps its stack trace.
 */
function isExpected(err: Error): boolean {
  return chainOf(err).some((e) => {
    const code = codeOf(e);
    return code !== undefined && code !== "INTERNAL";
  });
}

/** Stack lines for `err`: the deepest error of its chain, for a bug or at debug level; none otherwise. */
function stackOf(err: Error): string | undefined {
  if (state.level < LOG_LEVELS.debug && isExpected(err)) return undefined;
  const deepest = chainOf(err).filter((e): e is Error => e instanceof Error).pop();
  const frames = deepest?.stack?.split("\n").filter((l) => /^\s+at /.test(l)) ?? [];
  return frames.length > 0 ? frames.map((l) => `    ${l.trim()}`).join("\n") : undefined;
}

/** Control characters (a newline, an ESC from a peer's text) are escaped: one event, one line. */
function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

interface Event {
  msg: string;
  code?: string;
  stack?: string;
}

/** Strings and values joined by spaces; each error adds `: its message and causes`. */
function eventOf(args: unknown[]): Event {
  const parts: string[] = [];
  const event: Event = { msg: "" };
  for (const arg of args) {
    if (arg instanceof Error) {
      const text = chainText(arg);
      if (parts.length === 0) parts.push(text);
      else parts[parts.length - 1] = `${parts[parts.length - 1]!.replace(/:$/, "")}: ${text}`;
      // The root cause's code (EADDRINUSE, ENOSPC) says more than the wrapper's (UNAVAILABLE).
      const code = chainOf(arg).map(codeOf).findLast((c) => c !== undefined);
      if (code !== undefined) event.code = code;
      const stack = stackOf(arg);
      if (stack !== undefined) event.stack = stack;
    } else if (typeof arg === "string") parts.push(arg);
    else {
      // node:util is loaded here, not at import: it costs ms at the start of every client command.
      const { inspect } = require("node:util") as typeof import("node:util");
      parts.push(inspect(arg, { breakLength: Infinity, compact: true, depth: 4 }));
    }
  }
  event.msg = oneLine(parts.join(" "));
  return event;
}

const SGR = { red: 31, yellow: 33, cyan: 36, magenta: 35, gray: 90 } as const;
const LEVEL_COLOR: Record<LogLevelName, keyof typeof SGR> = { error: "red", warn: "yellow", info: "cyan", debug: "gray", trace: "magenta" };

function paint(color: keyof typeof SGR, s: string): string {
  return state.color ? `\x1b[${SGR[color]}m${s}\x1b[39m` : s;
}

function clockTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** One log line (with its stack lines, when one is shown), newline included. */
export function formatLine(o: Pick<LogObject, "level" | "tag" | "args" | "date">): string {
  if (state.color === undefined) state.color = !state.json && colorFor(stderr());
  if (state.clock === undefined) state.clock = Boolean(stderr().isTTY);
  const level = levelName(o.level);
  const event = eventOf(o.args);
  if (state.json) {
    const rec: Record<string, string> = { time: o.date.toISOString(), level, tag: o.tag, msg: event.msg };
    if (event.code !== undefined) rec.code = event.code;
    if (event.stack !== undefined) rec.stack = event.stack;
    return `${JSON.stringify(rec)}\n`;
  }
  const time = state.clock ? clockTime(o.date) : o.date.toISOString();
  const tag = o.tag ? ` ${paint("gray", `[${o.tag}]`)}` : "";
  const head = `${paint("gray", time)} ${paint(LEVEL_COLOR[level], level.toUpperCase().padEnd(5))}${tag}`;
  return `${head} ${event.msg}\n${event.stack !== undefined ? `${paint("gray", event.stack)}\n` : ""}`;
}

const reporter: ConsolaReporter = {
  log(logObj) {
    if (envWarning !== null) {
      const warning = envWarning;
      envWarning = null;
      stderr().write(formatLine({ level: LOG_LEVELS.warn, tag: "log", args: [warning], date: new Date() }));
    }
    stderr().write(formatLine(logObj));
  },
};

// --- configuration ---

const root = createConsola({ reporters: [reporter], level: state.level });
/** Every logger made, so that `configureLog` reaches those made at import time. */
const loggers: ConsolaInstance[] = [root];

/**
 * Sets level, format and colour for every logger, made before or after. A field left out
 * takes its default: info, text, colour by `colorFor(stderr)`.
 */
export function configureLog(options: LogOptions = {}): void {
  const level = options.level === undefined ? LOG_LEVELS.info : logLevelOf(options.level);
  if (level === undefined) throw new RangeError(`log level must be ${LOG_LEVEL_CHOICES}, got ${JSON.stringify(options.level)}`);
  state.level = level;
  state.json = options.json ?? false;
  state.color = state.json ? false : options.color;
  state.clock = undefined;
  envWarning = null;
  for (const l of loggers) l.level = level;
}

/** Reads MQ_LOG_LEVEL and MQ_LOG_JSON for processes that never call `configureLog`; a bad value is warned about, not ignored. */
function configureFromEnv(): void {
  const problems: string[] = [];
  const rawLevel = process.env.MQ_LOG_LEVEL;
  const level = rawLevel === undefined || rawLevel === "" ? undefined : logLevelOf(rawLevel);
  if (rawLevel && level === undefined) problems.push(`MQ_LOG_LEVEL must be ${LOG_LEVEL_CHOICES}, got ${JSON.stringify(rawLevel)}; using info`);
  const json = logJsonOf(process.env.MQ_LOG_JSON);
  if (json === undefined) problems.push(`MQ_LOG_JSON must be 1 or true (JSON lines), 0, false or empty (text), got ${JSON.stringify(process.env.MQ_LOG_JSON)}; using text`);
  configureLog({ ...(level === undefined ? {} : { level }), json: json ?? false });
  envWarning = problems.length > 0 ? problems.join("; ") : null;
}

/** MQ_LOG_JSON: `1`/`true` → true, `0`/`false`/unset/empty → false, else undefined. */
export function logJsonOf(value: string | undefined): boolean | undefined {
  const s = (value ?? "").trim().toLowerCase();
  if (s === "1" || s === "true") return true;
  if (s === "" || s === "0" || s === "false") return false;
  return undefined;
}

configureFromEnv();

/** One logger per component; put the entity (topic, connection, id, address) in every line. */
export function logger(tag: string): ConsolaInstance {
  const l = root.withTag(tag);
  loggers.push(l);
  return l;
}

/**
 * What was said about each key (a server address, a peer host), so that a failure repeated at
 * every retry is logged once, and again only for a reason not among the last `reasonsPerKey`
 * said: a server keeps several (two peers of one host that fail for different reasons, turn
 * about, are not news at every turn); a local broker keeps the last two per server address (one
 * address behind DNS round robin or a load balancer may be two servers failing turn about). At most `max` keys are kept (peers are
 * not trusted to be few): past that it starts over.
 */
export class SaidOnce {
  private readonly said = new Map<string, Set<string>>();

  constructor(
    private readonly max = 1024,
    private readonly reasonsPerKey = 8,
  ) {}

  /** True the first time `what` is said about `key` (since it was forgotten). */
  first(key: string, what: string): boolean {
    let reasons = this.said.get(key);
    if (reasons?.has(what)) return false;
    if (!reasons) {
      if (this.said.size >= this.max) this.said.clear();
      this.said.set(key, (reasons = new Set()));
    } else if (reasons.size >= this.reasonsPerKey) reasons.clear();
    reasons.add(what);
    return true;
  }

  /** `key` is fine again: its next failure is news. */
  forget(key: string): void {
    this.said.delete(key);
  }
}
