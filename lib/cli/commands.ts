/**
 * The client commands. Each takes plain options (already parsed by cmd/mq.ts), talks to the
 * local broker through MqClient, prints per the CLI contract and returns the exit status.
 */
import { MqClient, type ConnectOptions, type PublishOptions, type Received, type SubResult } from "../client/client.ts";
import { MAX_ID_PREFIX_BYTES, MAX_MSG_ID_BYTES, RESERVED_MSG_ID_START, type From, type PubResult } from "../wire/messages.ts";
import { headersProblem, parseHeaderArg, type Headers } from "../wire/headers.ts";
import { checkPattern, checkTopic, isPattern } from "../wire/topic.ts";
import { Exit, StdoutClosedError, StdoutCutError, UsageError, exitForSignal, renderMessages, startStdoutWrite, warn, watchStdoutReader, writeStdout } from "./output.ts";
import { checkStdinOpen, checkStdoutOpen, readStdin } from "./input.ts";
import { Stop } from "./stop.ts";
import { Code, MqError } from "../errors.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../config.ts";

export interface CommonOptions {
  socket?: string;
  json: boolean;
}

async function withClient<T>(options: CommonOptions, work: (mq: MqClient) => Promise<T>, connect: ConnectOptions = {}): Promise<T> {
  const mq = await MqClient.connect(options.socket === undefined ? connect : { ...connect, socket: options.socket });
  try {
    return await work(mq);
  } finally {
    mq.close();
  }
}

function line(options: CommonOptions, json: object, text: string): string {
  return options.json ? `${JSON.stringify(json)}\n` : `${text}\n`;
}

export async function create(options: CommonOptions): Promise<number> {
  const id = await withClient(options, (mq) => mq.create());
  await writeStdout(line(options, { id }, String(id)));
  return Exit.Ok;
}

export interface PubOptions extends CommonOptions {
  id: number;
  topic: string;
  /** The message from the command line; standard input when undefined. */
  message?: string;
  lines: boolean;
  raw: boolean;
  /** The message's id (with `lines`: the prefix of each line's id, `KEY:N` for line N). */
  msgId?: string;
  /** How long unacknowledged publishes are sent again after a lost connection; LINES_RETRY_SECONDS with `lines`, else 0. */
  retrySeconds?: number;
  /** Delayed delivery (`--delay` / `--at`). */
  delay?: { delayMs: number } | { at: number };
  /** Stored with every message published (`--header`, `--ttl`). */
  headers?: Record<string, string>;
  ttlMs?: number;
}

/** Most publishes of `--lines` in flight at once: enough to pipeline, bounded in memory. */
const PUB_WINDOW = 256;
/** `pub --lines` rides out a lost connection this long by default; one message is not sent again (exit 4 within 5 s, SPEC §2). */
export { LINES_RETRY_SECONDS } from "../config.ts";
import { LINES_RETRY_SECONDS } from "../config.ts";
/** Checks `--msg-id` before any connection is made: 1–256 bytes; with --lines, KEY is the producer id of `KEY:N` (1–199 bytes). */
export function checkMsgId(key: string, lines: boolean): void {
  const max = lines ? MAX_ID_PREFIX_BYTES - 1 : MAX_MSG_ID_BYTES;
  if (key.length === 0 || Buffer.byteLength(key) > max) {
    throw new UsageError(`--msg-id must be 1 to ${max} bytes${lines ? " with --lines (each line's id is KEY:N)" : ""}, got ${key.length === 0 ? "an empty one" : `${Buffer.byteLength(key)} bytes`}`);
  }
  if (key.startsWith(RESERVED_MSG_ID_START)) throw new UsageError(`--msg-id must not start with a NUL character (ids starting with NUL are reserved for the server), got ${JSON.stringify(key.slice(0, 40))}; choose another key`);
}

/**
 * The `--header KEY=VALUE` options of `mq pub` as one map; each malformed one named
 * (lib/wire/headers.ts has the rules). Here, not in parse.ts: only `pub` loads the rules.
 */
export function parseHeaders(values: string[]): Headers {
  const headers: Headers = {};
  for (const arg of values) {
    let key: string;
    let value: string;
    try {
      [key, value] = parseHeaderArg(arg);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (Object.hasOwn(headers, key)) throw new UsageError(`--header ${JSON.stringify(key)} is given twice; give each key once`);
    headers[key] = value;
  }
  const problem = headersProblem(headers);
  if (problem) throw new UsageError(`--header: there must be ${problem}`);
  return headers;
}

export async function pub(options: PubOptions): Promise<number> {
  checkTopic(options.topic);
  if (options.msgId !== undefined) checkMsgId(options.msgId, options.lines);
  const retryMs = Math.round((options.retrySeconds ?? (options.lines ? LINES_RETRY_SECONDS : 0)) * 1000);
  if (options.message === undefined) checkStdinOpen();
  return withClient(options, async (mq) => {
    let warned = false;
    // Status lines wait here and go out in one write per batch, not one syscall per message.
    let out = "";
    let lastSeq = 0;
    /** Why the report could not be written, when not because its reader left. */
    let reportLost: Error | null = null;
    const report = (r: PubResult) => {
      lastSeq = r.seq;
      if (r.scheduled) {
        const { seq: _none, ...scheduled } = r;
        const note = r.duplicate ? " (duplicate: this msg-id is scheduled already, nothing scheduled now)" : r.created ? " (new topic)" : "";
        out += line(options, scheduled, `${r.topic}: scheduled for ${new Date(r.due!).toISOString()}${note}`);
        return;
      }
      if (!warned && r.subscribers === 0) {
        warned = true;
        // The message is kept: an id that subscribes later with --from earliest gets it.
        warn(`topic "${r.topic}" ${r.created ? "is new and " : ""}has no subscribers yet: the message is stored, but only an id that subscribes with --from earliest (or --from ${r.seq}) will receive it`);
      }
      const noun = r.subscribers === 1 ? "subscriber" : "subscribers";
      const note = r.duplicate ? " (duplicate: this msg-id was stored before, nothing stored now)" : r.created ? " (new topic)" : "";
      out += line(options, r, `${r.topic}: seq ${r.seq}, ${r.subscribers} ${noun}${note}`);
    };
    // The status lines are a report, the publishes the job: when the reader of stdout goes
    // away (`| head -1`), the rest of the input is still published, and the report dropped.
    let readerGone = false;
    const one: PublishOptions = { ...(options.msgId === undefined ? {} : { msgId: options.msgId }), ...options.delay };
    // With --lines every line gets them too; a plain publish passes no options object.
    const extra: PublishOptions | undefined = options.headers || options.ttlMs || options.delay ? { ...options.delay } : undefined;
    if (options.headers) one.headers = extra!.headers = options.headers;
    if (options.ttlMs) one.ttlMs = extra!.ttlMs = options.ttlMs;
    const flush = async () => {
      const text = out;
      out = "";
      if (readerGone) return;
      try {
        await writeStdout(text);
      } catch (err) {
        if (!(err instanceof StdoutClosedError)) {
          // Stored, and only the report failed (a full disk): say so, or a retry would publish it twice.
          if (!options.lines) throw new Error(`${(err as Error).message}; the message was stored (seq ${lastSeq}): only the report is lost, do not publish it again`, { cause: err });
          // --lines goes on publishing, as when the reader is gone, and says so at the end.
          reportLost = err as Error;
        }
        readerGone = true;
      }
    };
    if (options.message !== undefined) {
      report(await publishOne(mq, options, options.message, one));
      await flush();
      return Exit.Ok;
    }
    if (process.stdin.isTTY) {
      warn(options.lines ? "reading messages from the terminal, one per line: type them, then press Ctrl-D (or pipe them in)" : "reading the message from the terminal: type it, then press Ctrl-D (or give MESSAGE as an argument, or pipe it in)");
    }
    if (!options.lines) {
      let data = await readStdin(mq.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES);
      if (!options.raw && data.length > 0 && data[data.length - 1] === 10) data = data.subarray(0, data.length - 1);
      report(await publishOne(mq, options, data, one));
      await flush();
      return Exit.Ok;
    }
    // --lines: every line is one message, pipelined in order with a bounded window. Each has
    // a msg-id, the library's <producer>:N for line N (the producer is KEY with --msg-id), so
    // what the library sends again after a lost connection is stored once; and nothing after
    // a publish that failed is stored.
    const inFlight: Promise<PubResult>[] = [];
    let acknowledged = 0;
    let sent = 0;
    /** The line the library refused before sending it (above the size limit, or its topic failed already). */
    let refused = 0;
    const next = async () => {
      report(await inFlight.shift()!);
      acknowledged++;
    };
    // Typed at a terminal: each line's report as it is stored, not at Ctrl-D.
    const interactive = process.stdin.isTTY === true;
    const send = async (data: Uint8Array) => {
      sent++;
      const result = mq.publish(options.id, options.topic, data, extra);
      // When the broker goes away every publish in flight fails; the first one awaited is
      // reported, the others must not surface as unhandled rejections (one trace each).
      result.catch(() => {});
      inFlight.push(result);
      // Refused at once, unsent: the library would still send the lines after it, and they
      // would be stored without it. Stop reading; those in flight before it are awaited below.
      if (Bun.peek.status(result) === "rejected") refused = sent;
      else if (interactive) {
        while (inFlight.length > 0) await next();
        await flush();
      } else if (inFlight.length >= PUB_WINDOW) {
        await next();
        if (out.length >= 64 * 1024) await flush();
      }
    };
    // Ctrl-C (or SIGTERM) stops the reading between lines, not the publishes in flight: they are
    // awaited and reported, and the run ends saying how far it got (it died with its report
    // unprinted). A second signal ends mq at once (the handlers are gone by then).
    const reader = Bun.stdin.stream().getReader();
    let signalled: NodeJS.Signals | null = null;
    let inputEnded = false;
    let slowWait: Timer | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      signalled = sig;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      reader.cancel().catch(() => {});
      // Said only when the wait is long (the broker away, publishes being retried).
      slowWait = setTimeout(() => {
        if (inFlight.length > 0) warn(`interrupted: waiting for ${inFlight.length} ${inFlight.length === 1 ? "line" : "lines"} in flight${retryMs > 0 ? ` (retried for up to ${retryMs / 1000} s while the broker is away)` : ""}; ${sig === "SIGINT" ? "Ctrl-C" : sig} again ends mq at once, their report unprinted`);
      }, 1000);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    /** Stdin's chunks; Interrupted when a signal cancelled the read (the partial line after the last newline is not a line). */
    const chunks = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          if (signalled) throw new Interrupted();
          inputEnded = true;
          return;
        }
        yield value;
      }
    };
    try {
      try {
        for await (const data of splitLines(chunks(), mq.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES)) {
          if (signalled) break;
          await send(data);
          if (refused) break;
        }
      } catch (err) {
        if (!(err instanceof Interrupted)) throw err;
      }
      while (inFlight.length > 0) await next();
    } catch (err) {
      const first = acknowledged + 1;
      const again = options.msgId === undefined ? "give --msg-id KEY to make a run that can be repeated safely" : "run it again with the same --msg-id: lines already stored are not stored twice";
      // Refused by the library, or it reached no server (the local broker had none): not stored.
      const unsent = refused === first || (err instanceof MqError && err.unsent);
      if (unsent) {
        warn(`line ${first} was not ${refused === first ? "sent" : "stored"}, nor any line after it: ${first === 1 ? "nothing was stored" : first === 2 ? "line 1 is stored" : `lines 1-${first - 1} are stored`}; ${again}`);
        throw err;
      }
      const range = sent > first ? `lines ${first}-${sent} were` : `line ${first} was`;
      // The failed request may have been stored (its answer lost); nothing after it was sent.
      warn(`${range} not acknowledged: line ${first} and those sent in one request with it may be stored, the lines after them are not; ${again}`);
      throw err;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      clearTimeout(slowWait);
      reader.cancel().catch(() => {});
      // What was stored is printed even when a later publish failed.
      await flush();
    }
    const stored = acknowledged === 0 ? "no line is" : acknowledged === 1 ? "line 1 is" : `lines 1-${acknowledged} are`;
    // Set by callbacks: TypeScript's narrowing does not see those.
    const lost = reportLost as Error | null;
    const signal = signalled as NodeJS.Signals | null;
    if (lost) throw new Error(`${lost.message}; ${stored} stored (the last one seq ${lastSeq}): only their report is lost, do not publish them again`, { cause: lost });
    if (signal) {
      warn(`interrupted: ${stored} stored${inputEnded ? "" : `; the input after line ${sent} was not published`}`);
      return exitForSignal(signal);
    }
    return Exit.Ok;
  }, options.lines && options.msgId !== undefined ? { retryMs, producer: options.msgId } : { retryMs });
}

/**
 * One `mq pub`. UNAVAILABLE after the local broker took it (the server cut off or slow to
 * answer) does not say that nothing was stored: the server may have stored it before the
 * answer was lost. The error says so, and how to publish again without a copy. When it
 * reached no server (`unsent`: the local broker had none), it says that nothing was stored.
 */
async function publishOne(mq: MqClient, options: PubOptions, data: string | Uint8Array, one: PublishOptions): Promise<PubResult> {
  try {
    return await mq.publish(options.id, options.topic, data, one);
  } catch (err) {
    if (!(err instanceof MqError && err.code === Code.Unavailable)) throw err;
    if (err.unsent) throw new MqError(err.code, `${err.message}; the message was not stored: publish it again once the server is reachable`, { cause: err });
    const again = options.msgId === undefined ? "publish it again with --msg-id KEY to store it once from then on" : `publishing it again with --msg-id ${options.msgId} stores it once`;
    throw new MqError(err.code, `${err.message}; the message may have been stored all the same: check with \`mq topics\`, or ${again}`, { cause: err });
  }
}

/** A signal cancelled `pub --lines`' read of stdin. */
class Interrupted extends Error {}

/**
 * Lines of a byte stream, without their "\n" or "\r\n"; no empty message for a final newline.
 * A line longer than `maxLine` ends the lines: its first `maxLine + 1` bytes come last (the
 * publish refuses them as too large), not all of a stream without newlines read into memory.
 */
export async function* splitLines(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxLine = Infinity): AsyncGenerator<Uint8Array> {
  const line = (buf: Uint8Array, start: number, end: number) => buf.slice(start, end > start && buf[end - 1] === 13 ? end - 1 : end);
  let rest: Uint8Array = new Uint8Array(0);
  for await (const chunk of source) {
    const buf: Uint8Array = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, start)) {
      yield line(buf, start, i);
      start = i + 1;
    }
    rest = buf.slice(start);
    // + 1 for a "\r" before the newline still to come.
    if (rest.length > maxLine + 1) {
      yield rest.slice(0, maxLine + 1);
      return;
    }
  }
  // No newline came after it: a "\r" at its end is data, not half of a "\r\n".
  if (rest.length > 0) yield rest;
}

export interface SubOptions extends CommonOptions {
  id: number;
  topics: string[];
  from?: From;
  /** ms since the epoch (`--since`). */
  since?: number;
  group?: string;
  maxDeliver?: number;
  deadLetter?: string;
}

export async function sub(options: SubOptions): Promise<number> {
  for (const t of options.topics) checkPattern(t);
  if (options.deadLetter !== undefined) checkTopic(options.deadLetter);
  const { from, since, group, maxDeliver, deadLetter } = options;
  const result = await withClient(options, (mq) => mq.subscribe(options.id, options.topics, { from, since, group, maxDeliver, deadLetter }));
  const inGroup = group === undefined ? "" : ` in group ${group}`;
  const text = (r: SubResult) => {
    if (!r.pattern) return `subscribed ${options.id} to ${r.topic}${inGroup} from seq ${r.from}${r.created ? " (new topic)" : ""}`;
    const matched = r.matched ?? [];
    const now = matched.length === 0 ? "no topic yet" : matched.map((m) => `${m.topic} from seq ${m.from}`).join(", ");
    return `subscribed ${options.id} to pattern ${r.topic}: matches ${now}; topics created later are matched from their first message`;
  };
  // A topic, or a topic a pattern matches now, subscribed past its end: nothing comes until then.
  const past = (topic: string, from: number | undefined, next: number | undefined) => {
    if (from === undefined || next === undefined || from <= next) return;
    warn(`topic "${topic}": its next message gets seq ${next}, so ${options.id} receives nothing from it until seq ${from} is published (${from - next} ${from - next === 1 ? "message" : "messages"} from now)`);
  };
  for (const r of result) {
    past(r.topic, r.from, r.next);
    for (const m of r.matched ?? []) past(m.topic, m.from, m.next);
  }
  // `next` is for the warnings above; the output keeps its fields.
  const shown = result.map(({ next: _next, ...r }): SubResult => (r.matched ? { ...r, matched: r.matched.map(({ next: _n, ...m }) => m) } : r));
  await writeStdout(shown.map((r) => line(options, r, text(r))).join(""));
  return Exit.Ok;
}

export async function unsub(options: SubOptions): Promise<number> {
  for (const t of options.topics) checkPattern(t);
  const result = await withClient(options, (mq) => mq.unsubscribe(options.id, options.topics));
  // Not subscribed is not an error (as in NATS and Redis), but the output says so.
  const text = (r: { topic: string; unsubscribed: boolean; dropped?: string[] }) => {
    if (!r.unsubscribed) return `${options.id} was not subscribed to ${r.topic}`;
    if (!isPattern(r.topic) && r.dropped?.length === 0) return `unsubscribed ${options.id} from ${r.topic} (a pattern of ${options.id} still matches it: its messages keep coming)`;
    if (isPattern(r.topic)) return `unsubscribed ${options.id} from pattern ${r.topic}${r.dropped?.length ? ` (ended: ${r.dropped.join(", ")})` : ""}`;
    return `unsubscribed ${options.id} from ${r.topic}`;
  };
  await writeStdout(result.map((r) => line(options, r, text(r))).join(""));
  return Exit.Ok;
}

export interface RecvOptions extends CommonOptions {
  id: number;
  waitSeconds: number;
  follow: boolean;
  count?: number;
  raw: boolean;
}

/** `recv --count N`: how long to wait for a refill the local broker announced (`more`). */
const REFILL_WAIT_MS = 5000;
/** Said on stderr when `recv` found nothing while its local broker was cut off from the server. */
const AWAY_HINT = "the local broker is not connected to its server now: messages published since it lost the server have not reached it (they wait on the server); `mq stats` shows the server it tries";

/** `--follow` with push delivery: messages the local broker may push ahead of what is written. */
const FOLLOW_CREDITS = 1000;

/** How long one recv request of `--follow` waits before asking again. */
const FOLLOW_WAIT_MS = 30_000;

/** `--follow`: how long a signal lets the reader take the rest of a batch being written before the write is cut. */
const SIGNAL_WRITE_MS = 1000;

/**
 * Writes every message whole and exactly once, and acknowledges a batch only once the OS has
 * accepted all of its bytes. When the reader of stdout goes away (while writing or waiting)
 * it exits 141 at once, quietly: a batch not written whole is not acknowledged and stays
 * pending for the next recv. With `--follow`, `--wait S` is an idle timeout: exit 3 after S
 * seconds without a message.
 */
export async function recv(options: RecvOptions): Promise<number> {
  const format = options.json ? "json" : options.raw ? "raw" : "text";
  checkStdoutOpen("the messages would be acknowledged with nobody to read them, and lost");
  return withClient(options, async (mq) => {
    // Settles the wait in progress when recv must end: the reader left, or a signal came (--follow).
    const stop = new Stop<"reader" | "signal">();
    const stopWatching = watchStdoutReader(() => stop.fire("reader"));
    let signalled = false;
    const onSignal = () => {
      signalled = true;
      stop.fire("signal");
    };
    if (options.follow) {
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
    }
    /** The next batch, or why recv must end first. Messages of a request left behind go back when the connection closes. */
    const next = (max: number, waitMs: number): Promise<Received | "reader" | "signal"> => {
      const request = mq.recv(options.id, { max, waitMs });
      request.catch(() => {});
      return stop.race(request);
    };
    let pushed: Awaited<ReturnType<MqClient["follow"]>> | null = null;
    /** The next pushed batch, or why recv must end first. */
    const nextPushed = (stream: NonNullable<typeof pushed>, max: number, waitMs: number) => {
      const batch = stream.next({ max, waitMs });
      batch.catch(() => {});
      return stop.race(batch);
    };
    /**
     * Writes a batch, then acknowledges it; false when the reader is gone (the batch stays pending).
     * A signal mid-write gives the reader SIGNAL_WRITE_MS to take the rest, then cuts the write
     * (as it would end `cat`: the last line may be cut); the messages written whole are
     * acknowledged, the rest comes again.
     */
    const deliver = async (got: Pick<Received, "messages" | "ack">): Promise<boolean> => {
      const ends: number[] = [];
      const write = startStdoutWrite(renderMessages(got.messages, format, ends));
      write.done.catch(() => {});
      let whole = got.messages.length;
      try {
        const ended = await stop.race(write.done);
        if (ended === "reader") return false;
        if (ended === "signal") {
          // Not acknowledging what went whole would give it to the next reader a second time.
          let timer: ReturnType<typeof setTimeout> | undefined;
          const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, SIGNAL_WRITE_MS)));
          await Promise.race([write.done.catch(() => {}), late]);
          clearTimeout(timer);
          write.cut();
          const failed = await write.done.then(
            () => null,
            (err: unknown) => (err instanceof StdoutCutError ? null : err),
          );
          // The reader left meanwhile: as without a signal, the batch comes again whole (exit 0 all the same).
          if (failed instanceof StdoutClosedError) return true;
          if (failed) throw failed;
          const written = write.written();
          whole = 0;
          while (whole < ends.length && ends[whole]! <= written) whole++;
        }
      } catch (err) {
        if (err instanceof StdoutClosedError) return false;
        throw err;
      }
      // Acknowledged only once the OS has the bytes: a crash or a closed reader before this re-delivers.
      if (whole > 0) await got.ack(whole);
      return true;
    };
    try {
      if (!options.follow) {
        // What is pending may be more than the local broker holds (one credit window per
        // topic): while it says `more`, the server sends the rest as batches are acknowledged.
        let remaining = options.count ?? 1;
        let received = 0;
        let waitMs = options.waitSeconds * 1000;
        while (remaining > 0) {
          const got = await next(Math.min(remaining, 1000), waitMs);
          if (got === "reader" || got === "signal") return Exit.ReaderGone;
          if (got.messages.length === 0) {
            if (got.away) process.stderr.write(`mq: ${AWAY_HINT}\n`);
            break;
          }
          if (!(await deliver(got))) return Exit.ReaderGone;
          received += got.messages.length;
          remaining -= got.messages.length;
          if (!got.more) break;
          waitMs = REFILL_WAIT_MS;
        }
        return received > 0 ? Exit.Ok : Exit.Empty;
      }
      let remaining = options.count ?? Infinity;
      // --wait 0 (the default) means no idle timeout.
      const idleMs = options.waitSeconds * 1000;
      let idleUntil = performance.now() + idleMs;
      // Pushed by the local broker when it serves it (no request per batch), up to 1000
      // messages ahead; closed on the way out, which gives back what was not written.
      pushed = mq.serves("follow") ? await mq.follow(options.id, { credits: Math.min(remaining, FOLLOW_CREDITS) }) : null;
      while (remaining > 0 && !signalled) {
        let waitMs = FOLLOW_WAIT_MS;
        if (idleMs > 0) {
          const left = idleUntil - performance.now();
          if (left <= 0) return Exit.Empty;
          waitMs = Math.min(Math.ceil(left), FOLLOW_WAIT_MS);
        }
        // Batches of 100 at most, pushed or not: each ack frees the server's window for more
        // (1,024 messages at first) while the rest of it is still on its way.
        const got = pushed ? await nextPushed(pushed, Math.min(remaining, 100), waitMs) : await next(Math.min(remaining, 100), waitMs);
        if (got === "signal") break;
        if (got === "reader") return Exit.ReaderGone;
        if (got.messages.length === 0) continue;
        if (!(await deliver(got))) return Exit.ReaderGone;
        remaining -= got.messages.length;
        idleUntil = performance.now() + idleMs;
      }
      return Exit.Ok;
    } finally {
      await pushed?.close().catch(() => {}); // a lost connection gives back all the same
      stopWatching();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  });
}

export async function destroy(options: CommonOptions & { id: number }): Promise<number> {
  await withClient(options, (mq) => mq.destroy(options.id));
  await writeStdout(line(options, { id: options.id, destroyed: true }, `destroyed ${options.id}`));
  return Exit.Ok;
}

export async function topics(options: CommonOptions): Promise<number> {
  const list = await withClient(options, (mq) => mq.topics());
  if (options.json) {
    await writeStdout(list.map((t) => `${JSON.stringify(t)}\n`).join(""));
    return Exit.Ok;
  }
  const width = Math.max(5, ...list.map((t) => t.topic.length));
  const rows = [`${"TOPIC".padEnd(width)}  SUBSCRIBERS  MESSAGES`];
  for (const t of list) rows.push(`${t.topic.padEnd(width)}  ${String(t.subscribers).padStart(11)}  ${String(t.messages).padStart(8)}`);
  await writeStdout(`${rows.join("\n")}\n`);
  return Exit.Ok;
}

export async function stats(options: CommonOptions): Promise<number> {
  const s = await withClient(options, (mq) => mq.stats());
  // The server away: the local broker's part is shown, then the error, exit 4 (docs/cli.md).
  const serverAway = () => {
    const e = s.serverError;
    const why = !e ? `UNAVAILABLE: the local broker cannot reach its server (${s.local.server})` : `${e.code}: the local broker ${e.code === "UNAVAILABLE" ? "cannot reach its server" : "is refused by its server"}: ${e.message}`;
    process.stderr.write(`mq: ${why}; only the local broker's counters are shown\n`);
    return Exit.Unavailable;
  };
  // Why the server part is missing is said on stderr, as every command's error is.
  const { serverError: _why, ...shown } = s;
  if (options.json) {
    await writeStdout(`${JSON.stringify(shown.server ? shown : { ...shown, server: null })}\n`);
    return s.server ? Exit.Ok : serverAway();
  }
  const rows: string[] = [];
  const width = Math.max(14, ...Object.values(shown).flatMap((values) => Object.keys(values).map((k) => k.length)));
  for (const [section, values] of Object.entries(shown)) {
    rows.push(`${section}:`);
    for (const [k, v] of Object.entries(values)) {
      // A labelled counter (a list of entries): one row per entry, `none` when empty.
      if (Array.isArray(v)) {
        if (v.length === 0) rows.push(`  ${k.padEnd(width)} none`);
        for (const entry of v) rows.push(`  ${k.padEnd(width)} ${Object.entries(entry as object).map(([f, x]) => `${f}=${String(x)}`).join(" ")}`);
      } else rows.push(`  ${k.padEnd(width)} ${String(v)}`);
    }
  }
  await writeStdout(`${rows.join("\n")}\n`);
  return s.server ? Exit.Ok : serverAway();
}

