/** What the CLI prints and how it exits (SPEC §2: the CLI contract). */
import * as fs from "node:fs";
import * as os from "node:os";
import { Code, MqError } from "../errors.ts";
import { POLLERR, POLLHUP, POLLOUT, pollFd } from "../store/fsutil.ts";
import type { Message } from "../wire/messages.ts";

export const Exit = {
  Ok: 0,
  Refused: 1,
  Usage: 2,
  Empty: 3,
  Unavailable: 4,
  /**
   * The reader of stdout went away (`mq recv … | head -1`): 128 + SIGPIPE, what a shell
   * reports for a tool killed by SIGPIPE, so `set -o pipefail` sees what it sees for `yes | head -1`.
   */
  ReaderGone: 141,
} as const;

/** The status of a command that a signal stopped (`pub --lines`): 128 + its number, as a shell reports (130 for SIGINT, 143 for SIGTERM). */
export function exitForSignal(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/** Bad usage, found before any connection is made: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The exit status for an error: 4 when the broker (or its server) cannot be reached or refused us, else 1. */
export function exitCodeFor(err: MqError): number {
  return err.code === Code.Unavailable || err.code === Code.AuthFailed || err.code === Code.VersionMismatch || err.code === Code.IdentityInUse ? Exit.Unavailable : Exit.Refused;
}

/** `mq: CODE: message` on stderr. */
export function reportError(err: MqError): void {
  process.stderr.write(`mq: ${err.code}: ${err.message}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`mq: warning: ${message}\n`);
}

// A leading U+FEFF is part of the payload: kept (the bytes exactly), not dropped as a byte order mark.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const newline = new Uint8Array([10]);

/** One received message as `--json` prints it: `data` when the payload is UTF-8, else `data_base64`; `headers` only when it has some. */
export function messageJson(m: Message): string {
  const base = { topic: m.topic, seq: m.seq, time: new Date(m.time).toISOString(), ...(m.lost ? { lost: m.lost } : {}), ...(m.headers ? { headers: m.headers } : {}) };
  try {
    return JSON.stringify({ ...base, data: utf8.decode(m.data) });
  } catch {
    return JSON.stringify({ ...base, data_base64: Buffer.from(m.data).toString("base64") });
  }
}

/**
 * The bytes to write for a batch of received messages in the chosen format. `ends`, when
 * given, gets where each message's bytes end: a write cut short tells how many went whole.
 */
export function renderMessages(messages: Message[], format: "text" | "raw" | "json", ends?: number[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let end = 0;
  for (const m of messages) {
    const add = (bytes: Uint8Array) => {
      parts.push(bytes);
      end += bytes.length;
    };
    if (format === "json") {
      add(Buffer.from(`${messageJson(m)}\n`));
    } else {
      if (m.lost) warn(`the server lost ${m.lost} message${m.lost === 1 ? "" : "s"} of topic "${m.topic}" before seq ${m.seq} (damaged storage, or deleted by the server's hard retention limit); they will not come`);
      add(m.data);
      if (format === "text") add(newline);
    }
    ends?.push(end);
  }
  return Buffer.concat(parts);
}

/** A write to stdout stopped by `cut()` before all of its bytes went. */
export class StdoutCutError extends Error {
  constructor() {
    super("the write to standard output was cut short");
    this.name = "StdoutCutError";
  }
}

/** stdout's reader is gone (EPIPE): nothing more can be delivered through it. */
export class StdoutClosedError extends Error {
  constructor(options?: { cause?: unknown }) {
    super("standard output was closed by its reader", options);
    this.name = "StdoutClosedError";
  }
}

const STDOUT = 1;
/** Longest a wait for a full stdout blocks the event loop before giving it a turn (signals, sockets). */
const WRITABLE_POLL_MS = 50;

interface PendingWrite {
  data: Uint8Array;
  /** Bytes of `data` the OS has taken. */
  written: number;
  /** `cut()` was called: stop before its next write(2). */
  cut: boolean;
  resolve(): void;
  reject(err: unknown): void;
}
const queue: PendingWrite[] = [];
let draining = false;

/** A write to stdout under way (`startStdoutWrite`). */
export interface StdoutWrite {
  /** As writeStdout's promise; rejects with StdoutCutError after `cut()` if bytes were left. */
  done: Promise<void>;
  /** Bytes the OS has taken so far. */
  written(): number;
  /** Stops it before its next write(2) (or its wait for the reader): the rest is not written. */
  cut(): void;
}

/**
 * The one writer of stdout, for every command. Resolves once the OS has accepted every byte
 * (a caller acknowledges after this), rejects with StdoutClosedError when the reader is gone.
 *
 * It is write(2) in a loop on fd 1, not Bun's writers: once `process.stdout` is touched (consola
 * does it at import) fd 1's open file description is O_NONBLOCK, and in Bun 1.4
 * `Bun.write(Bun.stdout, …)` on a pipe then writes part of the buffer, meets EAGAIN and re-sends
 * the whole buffer from a thread: the prefix comes out twice (oven-sh/bun#35953). Here a
 * partial write continues from where it stopped and EAGAIN waits for POLLOUT, so the bytes are
 * exact on a blocking or non-blocking pipe, socket, terminal or file. Writes are serialised
 * (never interleaved); those queued behind a slow reader go out together in one write.
 */
export function writeStdout(bytes: Uint8Array | string): Promise<void> {
  return startStdoutWrite(bytes).done;
}

/** writeStdout that tells how far it got and can be cut short (`recv --follow` on a signal). */
export function startStdoutWrite(bytes: Uint8Array | string): StdoutWrite {
  const data = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const w: PendingWrite = { data, written: 0, cut: false, resolve, reject };
  const write: StdoutWrite = {
    done: promise,
    written: () => w.written,
    cut: () => {
      w.cut = true;
      // Not begun yet: it never will.
      const queued = queue.indexOf(w);
      if (queued >= 0) queue.splice(queued, 1), reject(new StdoutCutError());
    },
  };
  if (data.length === 0) {
    resolve();
    return write;
  }
  queue.push(w);
  if (!draining) void drain();
  return write;
}

/** writeAll stopped at `done` bytes because the write holding that offset was cut. */
class CutAt {
  constructor(readonly done: number) {}
}

async function drain(): Promise<void> {
  draining = true;
  while (queue.length > 0) {
    const batch = queue.splice(0);
    const data = batch.length === 1 ? batch[0]!.data : Buffer.concat(batch.map((w) => w.data));
    // The write that holds byte `done` of `data`, and how far each got.
    const progress = (done: number) => {
      let start = 0;
      let current: PendingWrite | undefined;
      for (const w of batch) {
        w.written = Math.max(0, Math.min(w.data.length, done - start));
        if (current === undefined && w.written < w.data.length) current = w;
        start += w.data.length;
      }
      return current;
    };
    try {
      await writeAll(STDOUT, data, (done) => progress(done)?.cut === true);
      for (const w of batch) (w.written = w.data.length), w.resolve();
    } catch (err) {
      if (!(err instanceof CutAt)) {
        for (const w of batch) w.reject(err);
        continue;
      }
      // Those written whole are done, the cut one ends, those after it (not begun) wait their turn.
      const cutOne = progress(err.done)!;
      const after = batch.slice(batch.indexOf(cutOne) + 1);
      for (const w of batch) if (w.written === w.data.length) w.resolve();
      cutOne.reject(new StdoutCutError());
      queue.unshift(...after);
    }
  }
  draining = false;
}

/** What a pipe or socket with room for more (POLLOUT: a free page of a pipe) takes without blocking. */
const PIPE_CHUNK = 4096;
let chunkedFd: boolean | undefined;

/**
 * True when fd 1 is a pipe or socket. There a write(2) of more than the reader left room for
 * blocks, and a blocked process runs no signal handler: `mq recv --follow | slow-reader` would
 * not stop on SIGTERM. So those get what they take now, a page at a time, after POLLOUT.
 */
function chunked(fd: number): boolean {
  if (chunkedFd === undefined) {
    try {
      const stat = fs.fstatSync(fd);
      chunkedFd = stat.isFIFO() || stat.isSocket();
    } catch {
      chunkedFd = false;
    }
  }
  return chunkedFd;
}

/** Writes `data` whole; throws CutAt when `cut(done)` says to stop before the next write(2). */
async function writeAll(fd: number, data: Uint8Array, cut: (done: number) => boolean): Promise<void> {
  const pieces = chunked(fd);
  let done = 0;
  while (done < data.length) {
    if (cut(done)) throw new CutAt(done);
    if (pieces && pollFd(fd, POLLOUT, 0) === 0) {
      await writable(fd, () => cut(done));
      continue;
    }
    try {
      done += fs.writeSync(fd, data, done, pieces ? Math.min(PIPE_CHUNK, data.length - done) : data.length - done);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE" || code === "ECONNRESET") throw new StdoutClosedError({ cause: err });
      if (code !== "EAGAIN" && code !== "EINTR") throw new Error(`Cannot write to standard output: ${(err as Error).message}`, { cause: err });
      await writable(fd, () => cut(done));
    }
  }
}

/** Waits until a non-blocking fd takes bytes again, has an error for the next write to report, or the write is cut. */
async function writable(fd: number, cut: () => boolean): Promise<void> {
  for (;;) {
    if (cut()) return;
    const revents = pollFd(fd, POLLOUT, WRITABLE_POLL_MS);
    if (revents === null) return Bun.sleep(WRITABLE_POLL_MS); // no libc: try again on a timer
    if (revents !== 0) return;
    await Bun.sleep(0);
  }
}

/** How often a waiting `recv` looks whether the reader of stdout went away. */
const READER_CHECK_MS = 250;

/**
 * Calls `onGone` once the reader of stdout has gone away while nothing is being written:
 * poll(2) on fd 1 reports POLLERR (a pipe with no reader left) or POLLHUP (a hung-up socket
 * or terminal). One poll every READER_CHECK_MS; a regular file never reports either, nor does
 * a TCP socket the peer half-closed (its next write fails instead). Returns the stop function.
 */
export function watchStdoutReader(onGone: () => void): () => void {
  const timer = setInterval(() => {
    const revents = pollFd(STDOUT, 0, 0);
    if (revents !== null && (revents & (POLLERR | POLLHUP)) === 0) return;
    clearInterval(timer); // gone, or no libc to ask
    if (revents !== null) onGone();
  }, READER_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
