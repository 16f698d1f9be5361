/**
 * One framed, pipelined connection, the same on every hop: an incremental decoder on the
 * way in, a coalescing outbound queue with a byte count on the way out, and a table of
 * requests in flight matched by `rid`. Server, local broker and client all build on it.
 */
import { logger } from "../log.ts";
import { Code, MqError, isCode, toMqError } from "../errors.ts";
import { decodeMap, encode, validate } from "./codec.ts";
import { FrameDecoder } from "./frame.ts";
import { FrameWriter } from "./hot-frames.ts";
import { Heartbeat } from "./heartbeat.ts";
import { framesIn } from "./frames-in.ts";
import type { ErrorFrame, Frame, OkFrame, Outgoing } from "./messages.ts";

const log = logger("wire");

/** The part of a Bun socket (TCP, TLS or Unix) a Connection uses. */
export interface SocketLike {
  write(data: Uint8Array): number;
  end(): void;
  /** Closes at once, dropping what is unsent (Bun sockets have it): for a peer known to be dead. */
  terminate?(): void;
  readonly remoteAddress?: string;
  /** Bytes taken and not yet handed to the peer, when the socket keeps any (an in-process one). */
  readonly queuedBytes?: number;
  /**
   * A socket to a Connection of this same process (lib/wire/memory-link.ts) may take a frame
   * as it is, not encoded, and hand it to the peer's `onFrameObject`; false: encode it.
   */
  sendFrame?(frame: object): boolean;
}

/** Why a connection ended, set once and logged once. */
export const CloseReason = {
  PeerClosed: "peer closed",
  ProtocolError: "protocol error",
  HelloTimeout: "no hello in time",
  FrameTimeout: "a frame took too long to arrive",
  SlowConsumer: "the peer does not read its answers",
  HeartbeatTimeout: "no sign of life within the heartbeat timeout",
  /** Only a session that is closed or silent is replaced (see the server's hello). */
  Replaced: "silent, replaced by a new connection of the same local broker",
  Shutdown: "shutting down",
  LocalClose: "closed",
} as const;
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];

export interface ConnectionHandler {
  /**
   * A request or push from the peer. For a frame with `rid` the returned value (or promise)
   * becomes the `ok` reply's fields, a throw becomes an `error` reply.
   */
  frame(conn: Connection, frame: Frame): unknown;
  /** The outbound queue drained below its budget: producers paused on `writable` may go on. */
  drain?(conn: Connection): void;
  closed?(conn: Connection, reason: CloseReason): void;
  /**
   * A frame without a rid that does not decode or validate. Without this hook the peer gets
   * an error and the frame is dropped; a local broker closes instead (a dropped push would lose messages).
   */
  invalid?(conn: Connection, err: MqError): void;
  /**
   * True for an op whose synchronous `ok` reply may wait for the connection's next write (at
   * the latest the next turn of the event loop) instead of a write of its own: a client's
   * `ack` pipelined with a `recv` then goes out with that recv's answer when it comes in the
   * same turn.
   */
  lazyReply?(op: string): boolean;
}

export interface ConnectionOptions {
  maxFrameBytes: number;
  /** For log lines: who is on the other end. */
  label: string;
  /** Close the connection when no hello arrives in this many ms (servers only). */
  helloTimeoutMs?: number;
  /** Close the connection when one frame takes longer than this to arrive (slowloris); see `checkStall`. */
  frameTimeoutMs?: number;
  /** Most requests of the peer being served at once; more are refused until answers go out. */
  maxInFlight?: number;
  /**
   * A listener's connection, whose peer asks and is answered: its frames are held while it
   * does not read its answers (HOLD_ABOVE_BYTES). Not the side that asks (the local broker
   * toward the server, a client): what it receives are answers and pushes, which it must take.
   */
  answersPeer?: boolean;
  /** A close with answers unread ends the socket after this long even if the peer never reads (CLOSE_FLUSH_MS). */
  closeFlushMs?: number;
}

interface Pending {
  resolve(frame: OkFrame): void;
  reject(err: MqError): void;
  deadline: number;
}

/** Above this many queued outbound bytes the connection reports itself not writable. */
export const OUTBOUND_BUDGET_BYTES = 4 * 1024 * 1024;
/**
 * Above this many queued outbound bytes the peer's frames (`answersPeer`) are held, as bytes,
 * not served, until it has read what it was answered: backpressure, as a TCP window gives.
 * Above the budget, so that pushes (which stop at the budget) never make a connection hold;
 * what crosses it is answers (a `topics` of many topics, a peer asking faster than it reads).
 */
export const HOLD_ABOVE_BYTES = 2 * OUTBOUND_BUDGET_BYTES;
/**
 * A peer that has this many frames, or this many bytes, waiting while its own answers wait
 * unread is cut off as a slow consumer before it can grow our memory without bound. Above
 * what a local broker keeps in flight to its server at most (its forward window: 4,096
 * requests, 64 MiB; lib/local/forward-window.ts), with room for its acks.
 */
export const HOLD_MAX_FRAMES = 16_384;
export const HOLD_MAX_BYTES = 64 * 1024 * 1024;
/**
 * An answer that finds HOLD_ABOVE_BYTES unread already and takes the unread past this cuts the
 * connection as a slow consumer (answers of requests served before the peer fell behind: they
 * are not held). One answer alone may be larger (a `topics` of a million topics).
 */
export const MAX_UNREAD_BYTES = 64 * 1024 * 1024;
/** A connection closed with answers unread ends after this long even if the peer never reads them. */
export const CLOSE_FLUSH_MS = 10_000;

export class Connection {
  /** Names the peer in every log line; the server renames it once the hello says which broker it is. */
  label: string;
  /** Anything the owner wants to hang on the connection (session, client ids…). */
  state: unknown;
  helloDone = false;
  private readonly decoder: FrameDecoder;
  /** Frames queued this turn, length-prefixed, encoded straight into one reused buffer. */
  private readonly out = new FrameWriter();
  private backlog: Uint8Array | null = null;
  private flushScheduled = false;
  /** A lazy reply is in `out`, to be written at the next turn if nothing else writes it first. */
  private lazyFlushScheduled = false;
  private nextRid = 1;
  private readonly pending = new Map<number, Pending>();
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private helloTimer: ReturnType<typeof setTimeout> | null = null;
  private closeReason: CloseReason | null = null;
  private endAfterFlush = false;
  /** Since when a frame has been partly received (0: none). */
  private partialSince = 0;
  /** Requests of the peer whose answers are still being worked out. */
  private serving = 0;
  /**
   * Frames of the peer received while its answers piled up unread (`held[heldHead..]`), served
   * in order once it reads: as copies of their bytes (decoded then), so that what is held is
   * what is counted (a small frame decodes to much more, and a view keeps its whole socket read).
   */
  private held: Array<{ frame: Uint8Array | Frame; bytes: number }> = [];
  private heldHead = 0;
  private heldBytes = 0;
  private releasing = false;
  /** Set by serveHeldNow: nothing is held any more. */
  private noHold = false;
  private readonly answersPeer: boolean;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly closeFlushMs: number;
  /** Frames received so far: a completed frame restarts the frame deadline. */
  private framesIn = 0;
  private peerError: MqError | null = null;
  /** When bytes last arrived, or the peer last took bytes we had queued (ms since the epoch). */
  lastHeardAt = Date.now();
  private heartbeat: Heartbeat | null = null;
  private lifeWaiters: Array<(alive: boolean) => void> = [];
  /** A listener's connection: nothing but hello is served before hello (pings included). */
  private readonly expectsHello: boolean;
  private readonly frameTimeoutMs: number;
  private readonly maxInFlight: number;
  /**
   * The socket keeps bytes of its own (`queuedBytes`, an in-process one). A boolean read on
   * every connection, so that `pendingBytes` reads `queuedBytes` only where it is a number: one
   * read that met a number on some connections and undefined on others (a Bun socket) made the
   * JIT throw its code away (docs/benchmarks.md).
   */
  private readonly socketQueues: boolean;

  constructor(
    private readonly socket: SocketLike,
    private readonly handler: ConnectionHandler,
    options: ConnectionOptions,
  ) {
    this.label = options.label;
    this.frameTimeoutMs = options.frameTimeoutMs ?? 0;
    this.expectsHello = Boolean(options.helloTimeoutMs);
    this.maxInFlight = options.maxInFlight ?? Infinity;
    this.answersPeer = options.answersPeer ?? false;
    this.closeFlushMs = options.closeFlushMs ?? CLOSE_FLUSH_MS;
    this.socketQueues = socket.queuedBytes !== undefined;
    this.decoder = new FrameDecoder(
      {
        frame: (payload) => this.onFrame(payload),
        invalid: (reason, length) => {
          const err =
            reason === "too-large"
              ? new MqError(Code.FrameTooLarge, `frame of ${length} bytes is above the limit of ${options.maxFrameBytes}`, { fatal: true })
              : new MqError(Code.BadRequest, "frame of length 0", { fatal: true });
          this.fail(undefined, err);
        },
      },
      options.maxFrameBytes,
    );
    if (options.helloTimeoutMs) {
      this.helloTimer = setTimeout(() => {
        if (!this.helloDone) this.close(CloseReason.HelloTimeout);
      }, options.helloTimeoutMs);
    }
  }

  get closed(): boolean {
    return this.closeReason !== null;
  }

  /** The largest frame accepted from the peer. */
  get maxFrameBytes(): number {
    return this.decoder.maxFrameBytes;
  }

  set maxFrameBytes(value: number) {
    this.decoder.maxFrameBytes = value;
  }

  /** Outbound bytes not yet handed to the kernel. */
  get pendingBytes(): number {
    return this.out.pos + (this.backlog?.length ?? 0) + (this.socketQueues ? this.socket.queuedBytes! : 0);
  }

  get writable(): boolean {
    return !this.closed && this.pendingBytes < OUTBOUND_BUDGET_BYTES;
  }

  // --- socket events, called by the Bun socket handlers of the owner ---

  onData(chunk: Uint8Array): void {
    if (this.closed) return;
    this.life();
    const before = this.framesIn;
    this.decoder.push(chunk);
    if (this.frameTimeoutMs > 0) {
      // The deadline is per frame: it runs from the start of the frame now partly received.
      if (!this.decoder.partial) this.partialSince = 0;
      else if (this.partialSince === 0 || this.framesIn !== before) this.partialSince = Date.now();
    }
  }

  /** Closes the connection if a frame has been arriving for longer than `frameTimeoutMs`; called from a shared timer. */
  checkStall(now: number): void {
    if (this.partialSince > 0 && now - this.partialSince > this.frameTimeoutMs) this.close(CloseReason.FrameTimeout);
  }

  onDrain(): void {
    // The peer took bytes off a full socket: it is reading, however slowly. Our pings queue
    // behind a large backlog, so without this a slow reader would look dead.
    if (!this.closed) this.life();
    if (this.backlog) {
      const n = this.socket.write(this.backlog);
      if (n < this.backlog.length) {
        this.backlog = this.backlog.subarray(Math.max(n, 0));
        // Read in part: what waits may be served, once what is left unread is under the mark.
        if (this.heldHead < this.held.length) this.serveHeld();
        return;
      }
      this.backlog = null;
    }
    this.flush();
    if (!this.backlog && this.endAfterFlush) {
      if (this.closeTimer) clearTimeout(this.closeTimer);
      this.socket.end();
    }
    if (this.writable) this.handler.drain?.(this);
  }

  /** Serves the held frames, in order, while the peer's unread answers stay under HOLD_ABOVE_BYTES (`all`: whatever they are). */
  private serveHeld(all = false): void {
    if (this.releasing) return; // a frame served below wrote synchronously: the loop goes on
    this.releasing = true;
    try {
      while (this.heldHead < this.held.length && !this.closed && (all || (!this.endAfterFlush && this.pendingBytes <= HOLD_ABOVE_BYTES))) {
        const { frame, bytes } = this.held[this.heldHead]!;
        this.held[this.heldHead++] = undefined as never;
        this.heldBytes -= bytes;
        if (frame instanceof Uint8Array) this.decodeAndDispatch(frame);
        else this.dispatch(frame);
      }
    } finally {
      this.releasing = false;
    }
    if (this.heldHead === this.held.length) {
      this.held = [];
      this.heldHead = 0;
    } else if (this.heldHead > 1024 && this.heldHead * 2 > this.held.length) {
      this.held = this.held.slice(this.heldHead);
      this.heldHead = 0;
    }
  }

  /** True when the peer's frames are to wait: it has not read HOLD_ABOVE_BYTES of answers, or frames wait already. */
  private holding(): boolean {
    return this.answersPeer && !this.noHold && (this.heldHead < this.held.length || this.pendingBytes > HOLD_ABOVE_BYTES);
  }

  private hold(frame: Uint8Array | Frame, bytes: number): void {
    if (this.held.length - this.heldHead >= HOLD_MAX_FRAMES || this.heldBytes + bytes > HOLD_MAX_BYTES) return this.close(CloseReason.SlowConsumer);
    this.held.push({ frame, bytes });
    this.heldBytes += bytes;
  }

  /**
   * Serves what is held now, whatever the peer has not read, and holds nothing more: called
   * before a clean stop, so that its acks count (the connection is about to close; its
   * answers need not reach it).
   */
  serveHeldNow(): void {
    this.noHold = true;
    this.serveHeld(true);
  }

  onClose(): void {
    this.finish(CloseReason.PeerClosed);
  }

  // --- liveness ---

  /**
   * Pings the peer when it has been silent for `intervalMs`, and closes the connection
   * (`HeartbeatTimeout`) after `maxMissed` silent intervals in a row (see Heartbeat).
   * Any bytes received count as a sign of life, as does the peer taking queued bytes.
   */
  startHeartbeat(intervalMs: number, maxMissed: number): void {
    this.heartbeat?.stop();
    if (this.closed || intervalMs <= 0) return;
    this.heartbeat = new Heartbeat({ ping: () => this.send({ op: "ping" }), dead: () => this.close(CloseReason.HeartbeatTimeout) }, intervalMs, maxMissed);
  }

  /**
   * Pings the peer and resolves true at its next sign of life, false when the connection
   * closes or nothing comes within `timeoutMs`.
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => {
      const i = this.lifeWaiters.indexOf(done);
      if (i >= 0) this.lifeWaiters.splice(i, 1);
      resolve(false);
    }, timeoutMs);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      resolve(alive);
    };
    this.lifeWaiters.push(done);
    this.send({ op: "ping" });
    return promise;
  }

  private life(): void {
    this.lastHeardAt = Date.now();
    this.heartbeat?.alive();
    if (this.lifeWaiters.length > 0) for (const w of this.lifeWaiters.splice(0)) w(true);
  }

  // --- sending ---

  /** Queues one frame; frames sent in the same tick go out in one write. */
  send(frame: object): void {
    if (this.closed && !this.endAfterFlush) return;
    if (this.socket.sendFrame) {
      // In-process: what is encoded already goes first, then this frame as it is.
      if (this.out.pos > 0) this.flush();
      if (this.socket.sendFrame(frame)) return;
    }
    this.out.frame(frame, encode);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /**
   * Sends a request and resolves with the `ok` reply, or rejects with the `error` reply as an
   * MqError. `sent` is called when the frame is queued for the peer: not for one that waited
   * under `maxOutstanding` and failed with the connection before it went.
   */
  request(frame: Outgoing, timeoutMs = 0, sent?: () => void): Promise<OkFrame> {
    if (this.closed) return Promise.reject(new MqError(Code.Unavailable, `connection to ${this.label} is closed`));
    const { promise, resolve, reject } = Promise.withResolvers<OkFrame>();
    // Beyond what the peer serves at once: held here, in order, not refused there (LIMIT_EXCEEDED).
    if (this.waiting.length > this.waitingHead || this.pending.size >= this.maxOutstanding) this.waiting.push({ frame, timeoutMs, resolve, reject, sent });
    else this.sendRequest(frame, timeoutMs, resolve, reject, sent);
    return promise;
  }

  /**
   * Requests this side may have unanswered at once: the peer's limit (its hello says it);
   * more wait here and go as answers come. Infinity: no limit (the server hop has its own window).
   */
  maxOutstanding = Infinity;
  /** Requests waiting for room under `maxOutstanding`: `waiting[waitingHead..]`. */
  private waiting: Array<{ frame: Outgoing; timeoutMs: number; resolve: (frame: OkFrame) => void; reject: (err: MqError) => void; sent: (() => void) | undefined }> = [];
  private waitingHead = 0;

  private sendRequest(frame: Outgoing, timeoutMs: number, resolve: (frame: OkFrame) => void, reject: (err: MqError) => void, sent: (() => void) | undefined): void {
    sent?.();
    const rid = this.nextRid++;
    this.pending.set(rid, { resolve, reject, deadline: timeoutMs > 0 ? Date.now() + timeoutMs : Infinity });
    if (timeoutMs > 0 && !this.sweepTimer) this.sweepTimer = setInterval(() => this.sweep(), 250);
    this.send({ ...frame, rid });
  }

  /** Sends what waited for room, as far as there is room now. */
  private sendWaiting(): void {
    while (this.waitingHead < this.waiting.length && this.pending.size < this.maxOutstanding && !this.closed) {
      const w = this.waiting[this.waitingHead]!;
      this.waiting[this.waitingHead++] = undefined as never;
      this.sendRequest(w.frame, w.timeoutMs, w.resolve, w.reject, w.sent);
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    }
  }

  /** Sends an error frame; a fatal one closes the connection once it is written. */
  fail(rid: number | undefined, err: MqError): void {
    const frame: ErrorFrame = { op: "error", code: err.code, message: err.message };
    if (rid !== undefined) frame.rid = rid;
    if (err.unsent) frame.unsent = true;
    this.send(frame);
    if (err.fatal) this.close(CloseReason.ProtocolError);
  }

  /** Closes after the queued frames are written; a peer that stopped answering is cut off at once. */
  close(reason: CloseReason = CloseReason.LocalClose): void {
    if (this.closed) return;
    if ((reason === CloseReason.HeartbeatTimeout || reason === CloseReason.Replaced) && this.socket.terminate) {
      // The peer stopped answering: nothing queued would reach it, and an end() would wait on it.
      this.finish(reason);
      this.socket.terminate();
      return;
    }
    this.endAfterFlush = true;
    this.flush();
    this.finish(reason);
    if (!this.backlog) this.socket.end();
    else if (this.socket.terminate) {
      // A peer that never reads what is left would keep the socket (and its backlog) for ever.
      const socket = this.socket;
      this.closeTimer = setTimeout(() => socket.terminate!(), this.closeFlushMs);
      this.closeTimer.unref?.();
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (!this.backlog && out.pos > 0) {
      // Bun's sockets copy what they take and keep nothing (no buffering): the buffer is free again at once.
      const n = this.socket.write(out.buf.subarray(0, out.pos));
      if (n < out.pos) this.backlog = out.buf.slice(Math.max(n, 0), out.pos);
      out.reset();
    }
    // Also when the peer took bytes (onDrain): frames held behind them may be served now.
    if (this.heldHead < this.held.length) this.serveHeld();
  }

  private finish(reason: CloseReason): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.heartbeat?.stop();
    for (const w of this.lifeWaiters.splice(0)) w(false);
    const err = this.peerError ?? new MqError(Code.Unavailable, `connection to ${this.label} closed (${reason})`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (let i = this.waitingHead; i < this.waiting.length; i++) this.waiting[i]!.reject(new MqError(Code.Unavailable, `connection to ${this.label} closed (${reason}) before the request was sent`));
    this.waiting = [];
    this.waitingHead = 0;
    this.held = [];
    this.heldHead = 0;
    this.heldBytes = 0;
    if (reason !== CloseReason.PeerClosed) log.debug(`${this.label}: closing: ${reason}`);
    this.handler.closed?.(this, reason);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [rid, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(rid);
      p.reject(new MqError(Code.Unavailable, `${this.label} did not answer in time`));
    }
    if (this.waitingHead < this.waiting.length) this.sendWaiting();
  }

  // --- receiving ---

  private onFrame(payload: Uint8Array): void {
    if (this.closed) return;
    this.framesIn++;
    framesIn.count++;
    // Every frame waits, whatever it is (a ping, one that does not decode): each would add an answer.
    if (this.holding()) return this.hold(payload.slice(), payload.length);
    this.decodeAndDispatch(payload);
  }

  private decodeAndDispatch(payload: Uint8Array): void {
    let map: Record<string, unknown> | undefined;
    let frame: Frame;
    try {
      map = decodeMap(payload);
      frame = validate(map);
    } catch (err) {
      const rid = map && Number.isSafeInteger(map.rid) ? (map.rid as number) : undefined;
      if (rid === undefined && this.handler.invalid) return this.handler.invalid(this, toMqError(err));
      this.fail(rid, toMqError(err));
      return;
    }
    this.dispatch(frame);
  }

  /**
   * A frame a Connection of this process handed over as it is (lib/wire/memory-link.ts): no
   * bytes, so nothing to decode or validate; served as one that arrived encoded.
   */
  onFrameObject(frame: Frame): void {
    if (this.closed) return;
    this.life();
    this.framesIn++;
    // Our own process made it (lib/wire/memory-link.ts): held as it is, counted by its payloads.
    if (this.holding()) return this.hold(frame, objectFrameBytes(frame));
    this.dispatch(frame);
  }

  private dispatch(frame: Frame): void {
    if (frame.op === "ok" || frame.op === "error") return this.onReply(frame);
    if ((frame.op === "ping" || frame.op === "pong") && (this.helloDone || !this.expectsHello)) {
      if (frame.op === "ping") this.send({ op: "pong" });
      return;
    }
    if (this.helloTimer && frame.op === "hello") clearTimeout(this.helloTimer);
    const rid = "rid" in frame ? frame.rid : undefined;
    if (rid !== undefined && this.serving >= this.maxInFlight) {
      return this.fail(rid, new MqError(Code.LimitExceeded, `too many requests in flight on this connection (limit ${this.maxInFlight}); wait for answers before sending more`));
    }
    let result: unknown;
    try {
      result = this.handler.frame(this, frame);
    } catch (err) {
      return this.answerError(rid, err);
    }
    if (rid === undefined) return;
    if (result instanceof Promise) {
      this.serving++;
      result.then(
        (fields) => {
          this.serving--;
          this.answer(rid, fields);
        },
        (err) => {
          this.serving--;
          this.answerError(rid, err);
        },
      );
    } else if (this.handler.lazyReply?.(frame.op)) this.answerLazily(rid, result);
    else this.answer(rid, result);
  }

  private answer(rid: number, fields: unknown): void {
    if (this.closed) return; // an asynchronous answer after the close: nothing more is written
    const unread = this.answersPeer ? this.pendingBytes : 0;
    this.send(fields && typeof fields === "object" ? { ...fields, op: "ok", rid } : { op: "ok", rid });
    // Answers of requests served before the peer fell behind are not held: bounded here.
    if (unread > HOLD_ABOVE_BYTES && this.pendingBytes > MAX_UNREAD_BYTES) this.close(CloseReason.SlowConsumer);
  }

  /** `answer`, written with whatever this connection writes next, or at the next turn (no write of its own in between). */
  private answerLazily(rid: number, fields: unknown): void {
    if (this.socket.sendFrame || this.flushScheduled) return this.answer(rid, fields);
    if (this.closed && !this.endAfterFlush) return;
    this.out.frame(fields && typeof fields === "object" ? { ...fields, op: "ok", rid } : { op: "ok", rid }, encode);
    if (!this.lazyFlushScheduled) {
      this.lazyFlushScheduled = true;
      setImmediate(() => {
        this.lazyFlushScheduled = false;
        this.flush();
      });
    }
  }

  private answerError(rid: number | undefined, err: unknown): void {
    const e = toMqError(err);
    if (e.code === Code.Internal) log.error(`${this.label}: request${rid === undefined ? "" : ` ${rid}`} failed with an internal error:`, e.cause ?? e);
    this.fail(rid, e);
  }

  private onReply(frame: OkFrame | ErrorFrame): void {
    const p = frame.rid === undefined ? undefined : this.pending.get(frame.rid);
    if (!p) {
      // An error without a rid is the peer telling us why it is closing: the requests in
      // flight fail with that reason rather than a bare "closed". (A late answer to a
      // request that timed out has a rid and is dropped.)
      if (frame.op === "error" && frame.rid === undefined) {
        log.debug(`${this.label}: the peer is closing the connection: ${frame.code}: ${frame.message}`);
        this.peerError = new MqError(isCode(frame.code) ? frame.code : Code.Internal, frame.message);
      }
      return;
    }
    this.pending.delete(frame.rid!);
    if (this.waitingHead < this.waiting.length) this.sendWaiting();
    if (frame.op === "ok") p.resolve(frame);
    else p.reject(new MqError(isCode(frame.code) ? frame.code : Code.Internal, frame.message, { unsent: frame.unsent === true }));
  }
}

/** About what a frame handed over as an object (lib/wire/memory-link.ts) would take encoded: its payloads and a little more. */
export function objectFrameBytes(frame: Frame): number {
  const { data, payloads } = frame as { data?: Uint8Array; payloads?: Uint8Array[] };
  let bytes = 64 + (data?.length ?? 0);
  if (payloads) for (const p of payloads) bytes += p.length + 2;
  return bytes;
}
