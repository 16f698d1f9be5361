/**
 * The TypeScript client: talks to the local broker over its Unix socket. The CLI is built
 * on it. Ids are local ids; errors are MqError with a stable `code`. The package entry is
 * `index.ts`; docs/library.md is the guide.
 *
 *     await using mq = await connect();
 *     const id = await mq.create();
 *     await mq.subscribe(id, ["orders"]);
 *     await mq.publish(id, "orders", '{"total": 12}');
 *     for await (const m of mq.messages(id)) console.log(m.topic, m.seq, m.json());
 */
import type { Socket } from "bun";
import { defaultSocketPath, maxFrameBytes } from "../config.ts";
import { Code, MqError } from "../errors.ts";
import { Connection, type ConnectionHandler } from "../wire/connection.ts";
import { PROTOCOL_VERSION, type From, type Message as WireMessage, type PubResult, type Outgoing, type TopicInfo } from "../wire/messages.ts";
import { Message } from "./message.ts";

export type { From, PubResult, TopicInfo };

export interface ConnectOptions {
  /** Unix socket of the local broker; default `$MQ_SOCKET`, else the default path. */
  socket?: string;
}

/** A batch from `recv`: the messages, and the ack that tells the broker they reached the user. */
export interface Received {
  messages: Message[];
  /**
   * Acknowledges the batch; until then a crash of this process gives them to the next recv.
   * With `count`, only the first `count` messages reached the user: the rest go back to the
   * front of the id's queue, for the next recv. Call it once per batch.
   */
  ack(count?: number): Promise<void>;
  /** More messages are pending: held by the local broker, or on the server beyond the credit window (they come after `ack`). */
  more: boolean;
}

const encoder = new TextEncoder();
const ANSWER_TIMEOUT_MS = 15_000;
/** A batch of publishes stays well inside the frame limit and the server's `msgs` bound. */
const MAX_BATCH_MESSAGES = 1024;
const MAX_BATCH_BYTES = 256 * 1024;
/** CBOR header of one payload in the `payloads` array, rounded up. */
const PAYLOAD_OVERHEAD = 9;

interface PubBatch {
  id: number;
  topic: string;
  payloads: Uint8Array[];
  bytes: number;
  waiters: Array<{ resolve(r: PubResult): void; reject(err: unknown): void }>;
}

export class MqClient {
  private readonly batches = new Map<string, PubBatch>();
  /** A batch fits in one frame: the server's frame limit is its message limit + 64 KiB. */
  private readonly maxBatchBytes: number;
  private batchTimer: ReturnType<typeof setImmediate> | null = null;

  private constructor(
    private readonly conn: Connection,
    /** Largest message the server accepts, learned from the hello. */
    readonly maxMessageBytes: number,
  ) {
    // Room for the request's other fields within maxFrameBytes(maxMessageBytes) = limit + 64 KiB.
    this.maxBatchBytes = maxMessageBytes > 0 ? Math.min(MAX_BATCH_BYTES, maxMessageBytes + 60 * 1024) : 60 * 1024;
  }

  /** Connects to the local broker; UNAVAILABLE (with the path) when none is listening. */
  static async connect(options: ConnectOptions = {}): Promise<MqClient> {
    const socketPath = options.socket ?? process.env.MQ_SOCKET ?? defaultSocketPath();
    const handler: ConnectionHandler = { frame: () => undefined };
    let socket: Socket<Connection>;
    try {
      socket = await Bun.connect<Connection>({
        unix: socketPath,
        socket: {
          open: (s) => {
            s.data = new Connection(s, handler, { maxFrameBytes: maxFrameBytes(1024 * 1024 * 1024), label: `local broker at ${socketPath}` });
          },
          data: (s, chunk) => s.data?.onData(chunk),
          drain: (s) => s.data?.onDrain(),
          close: (s) => s.data?.onClose(),
          error: () => {},
        },
      });
    } catch (err) {
      throw new MqError(Code.Unavailable, `no local broker at ${socketPath} (start one with \`mq local\` or \`mq up\`)`, { cause: err });
    }
    const conn = socket.data;
    const hello = await conn.request({ op: "hello", version: PROTOCOL_VERSION }, ANSWER_TIMEOUT_MS);
    return new MqClient(conn, typeof hello.maxMessageBytes === "number" ? hello.maxMessageBytes : 0);
  }

  /**
   * One request. The local broker answers within seconds even when the server is away;
   * the timeout only guards against a local broker that accepts and then hangs.
   */
  private async call(frame: Outgoing, timeoutMs = ANSWER_TIMEOUT_MS): Promise<Record<string, unknown>> {
    // Publishes waiting to be batched go first: requests keep the order they were made in.
    if (frame.op !== "pub" && frame.op !== "pubs" && this.batches.size > 0) this.sendBatches();
    return this.conn.request(frame, timeoutMs);
  }

  /** A new client id (the local id on this host). */
  async create(): Promise<number> {
    return (await this.call({ op: "create" })).id as number;
  }

  /** Appends `data` to `topic` durably; the topic is created if it does not exist. */
  /**
   * Publishes made together (before the event loop turns) to the same id and topic travel
   * as one `pubs` request, like a Kafka producer's batch: each still resolves with its own
   * seq, in call order.
   */
  publish(id: number, topic: string, data: Uint8Array | string): Promise<PubResult> {
    // A copy: the batch goes out later, and the caller may reuse its buffer at once.
    const bytes = typeof data === "string" ? encoder.encode(data) : data.slice();
    // Checked here too: a message far above the limit would otherwise be cut off by the frame limit.
    if (this.maxMessageBytes > 0 && bytes.length > this.maxMessageBytes) {
      return Promise.reject(new MqError(Code.MessageTooLarge, `message of ${bytes.length} bytes is above the server's limit of ${this.maxMessageBytes}`));
    }
    const key = `${id}\u0000${topic}`;
    let batch = this.batches.get(key);
    if (batch && (batch.payloads.length >= MAX_BATCH_MESSAGES || batch.bytes + bytes.length + PAYLOAD_OVERHEAD > this.maxBatchBytes)) {
      this.sendBatch(key, batch);
      batch = undefined;
    }
    if (!batch) {
      batch = { id, topic, payloads: [], bytes: 0, waiters: [] };
      this.batches.set(key, batch);
      if (!this.batchTimer) this.batchTimer = setImmediate(() => this.sendBatches());
    }
    batch.payloads.push(bytes);
    batch.bytes += bytes.length + PAYLOAD_OVERHEAD;
    const { promise, resolve, reject } = Promise.withResolvers<PubResult>();
    batch.waiters.push({ resolve, reject });
    return promise;
  }

  private sendBatches(): void {
    this.batchTimer = null;
    for (const [key, batch] of this.batches) this.sendBatch(key, batch);
  }

  private sendBatch(key: string, batch: PubBatch): void {
    this.batches.delete(key);
    const { id, topic, payloads, waiters } = batch;
    const request: Promise<Record<string, unknown>> =
      payloads.length === 1
        ? this.call({ op: "pub", id, topic, data: payloads[0]! }).then((r) => ({ ...r, seqs: [r.seq as number] }))
        : this.call({ op: "pubs", id, topic, payloads });
    request.then(
      (r) => {
        const seqs = r.seqs as number[];
        const subscribers = r.subscribers as number;
        // The topic was created by the first message of the batch.
        for (let i = 0; i < waiters.length; i++) waiters[i]!.resolve({ topic, seq: seqs[i]!, subscribers, created: i === 0 && r.created === true });
      },
      (err) => {
        for (const w of waiters) w.reject(err);
      },
    );
  }

  /** Subscribes `id` to `topics`; `from` applies to new subscriptions (default "latest"). */
  async subscribe(id: number, topics: string[], options: { from?: From } = {}): Promise<Array<{ topic: string; from: number; created: boolean }>> {
    const frame: Extract<Outgoing, { op: "sub" }> = { op: "sub", id, topics };
    if (options.from !== undefined) frame.from = options.from;
    return (await this.call(frame)).topics as Array<{ topic: string; from: number; created: boolean }>;
  }

  /** Unsubscribes `id` from `topics`; `unsubscribed` is false for a topic it was not subscribed to. */
  async unsubscribe(id: number, topics: string[]): Promise<Array<{ topic: string; unsubscribed: boolean }>> {
    return (await this.call({ op: "unsub", id, topics })).topics as Array<{ topic: string; unsubscribed: boolean }>;
  }

  /**
   * Up to `max` pending messages of `id`, waiting up to `waitMs` for the first one.
   * An empty batch means none came in time. Call `ack()` once they reached the user.
   */
  async recv(id: number, options: { max?: number; waitMs?: number } = {}): Promise<Received> {
    const wait = Math.max(0, Math.floor(options.waitMs ?? 0));
    const r = await this.call({ op: "recv", id, max: options.max ?? 1, wait }, wait + ANSWER_TIMEOUT_MS);
    const wire = (r.messages as WireMessage[] | undefined) ?? [];
    const messages = new Array<Message>(wire.length);
    for (let i = 0; i < wire.length; i++) {
      const m = wire[i]!;
      messages[i] = new Message(m.topic, m.seq, m.time, m.data, m.lost);
    }
    const tag = r.tag as number | undefined;
    return {
      messages,
      more: r.more === true,
      ack: async (count?: number) => {
        if (count !== undefined && !(Number.isSafeInteger(count) && count >= 0 && count <= messages.length)) {
          throw new RangeError(`Cannot acknowledge ${count} messages of a batch of ${messages.length}: count must be an integer from 0 to ${messages.length}`);
        }
        if (tag === undefined) return;
        // Without count, the whole batch (and the frame stays as it was before count existed).
        await this.call(count === undefined || count === messages.length ? { op: "ack", id, tag } : { op: "ack", id, tag, count });
      },
    };
  }

  /**
   * Every message of `id` as it arrives, until the loop breaks or the connection closes.
   * A batch is acknowledged when the loop asks for the message after its last one. Leaving
   * the loop (`break`, `return`, or a throw in its body) acknowledges the messages it was
   * given and puts the rest of the batch back, so the next read gets them next, in order.
   */
  async *messages(id: number, options: { batch?: number } = {}): AsyncGenerator<Message, void, undefined> {
    while (!this.conn.closed) {
      const got = await this.recv(id, { max: options.batch ?? 100, waitMs: 30_000 });
      let given = 0;
      let finished = false;
      try {
        for (const m of got.messages) {
          given++; // counted before the yield: a loop that leaves now has seen m
          yield m;
        }
        finished = true;
      } finally {
        // Left early: ack what the loop saw, put back the rest. On a closed connection the
        // ack cannot go out, and need not: the broker puts back all it had not acknowledged.
        if (!finished) {
          try {
            await got.ack(given);
          } catch (err) {
            if (!this.conn.closed) throw err;
          }
        }
      }
      await got.ack();
    }
  }

  async destroy(id: number): Promise<void> {
    await this.call({ op: "destroy", id });
  }

  async topics(): Promise<TopicInfo[]> {
    return (await this.call({ op: "topics" })).topics as TopicInfo[];
  }

  async stats(): Promise<{ local: Record<string, unknown>; server: Record<string, unknown> }> {
    const r = await this.call({ op: "stats" });
    return { local: r.local as Record<string, unknown>, server: r.server as Record<string, unknown> };
  }

  /** Closes the connection; publishes not yet answered fail with UNAVAILABLE (they may have been stored). */
  close(): void {
    if (this.batchTimer) clearImmediate(this.batchTimer);
    this.sendBatches();
    this.conn.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Connects to the local broker at `options.socket`, else `$MQ_SOCKET`, else the default
 * socket path; fails with MqError UNAVAILABLE when none is listening. Same as `MqClient.connect`.
 */
export function connect(options: ConnectOptions = {}): Promise<MqClient> {
  return MqClient.connect(options);
}
