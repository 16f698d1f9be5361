/**
 * The server's storage, behind two small interfaces so a second backend can slot in
 * without touching the protocol code. Every implementation runs tests/store/*.contract.ts.
 */

/** A message id stored with a message, with the message's seq and append time. */
export interface MsgIdRecord {
  msgId: string;
  seq: number;
  time: number;
}

/**
 * A message as stored: its seq in the topic, the append time (ms since the epoch), the payload;
 * `headers` and `expiresAt` (ms since the epoch) only when it was published with them.
 */
export interface StoredMessage {
  seq: number;
  time: number;
  data: Uint8Array;
  headers?: Record<string, string>;
  expiresAt?: number;
}

/** What is stored with a message beside its payload; each only when given. */
export interface AppendFields {
  /** The publisher's message id (dedupe). */
  msgId?: string;
  headers?: Record<string, string>;
  /** When the message expires, in ms since the epoch: it is never delivered from then on. */
  expiresAt?: number;
}

/**
 * The append-only log of one topic. Seqs start at 1, ascend, and are never handed out
 * twice. A log may have holes: seqs whose messages were lost to damaged storage (a file
 * log keeps the intact records around them, reports each hole once and counts it in
 * `lost`). A log that never loses anything (the memory log) has no holes.
 */
export interface TopicLog {
  /** Oldest seq still stored; equal to `nextSeq` when the log is empty. */
  readonly firstSeq: number;
  /** The seq the next append will get (counting only committed appends); above every seq ever handed out. */
  readonly nextSeq: number;
  /** Newest seq stored (committed), 0 when nothing is: a read from `s <= lastSeq` returns something. */
  readonly lastSeq: number;
  /** How many messages are stored. */
  readonly count: number;
  /** How many messages this log has lost to damage (counted once, kept across restarts). */
  readonly lost: number;
  /**
   * Appends one message; resolves with its seq once it is as durable as the fsync policy
   * says (appends in flight together share one write and one fsync). `fields` are stored
   * with it (a file log: in the record's optional fields) and read back with it, except the
   * message id, which only `recentMsgIds` returns.
   */
  append(data: Uint8Array, time: number, fields?: AppendFields): Promise<number>;
  /**
   * The message ids stored with committed messages appended at or after `since` (ms since
   * the epoch), oldest first; at most `limit`, the newest ones. A start rebuilds the server's
   * dedupe window from it. A file log reads only the segments that reach into the window.
   */
  recentMsgIds(since: number, limit: number): MsgIdRecord[];
  /**
   * Committed messages from `from` on, ascending, at most `maxCount` and about `maxBytes`
   * (always at least one if any is available). Lost seqs are skipped: a caller sees a hole
   * as a jump in seq. The payloads may share a read buffer: use them before the next call
   * or copy them.
   */
  read(from: number, maxCount: number, maxBytes: number): StoredMessage[];
  /**
   * Retention: deletes the oldest messages, all below `before` (every subscriber is past
   * them), while they are older than `policy.maxAgeMs` or the log is above `policy.maxBytes`.
   * A file log deletes whole segments and never the one being written. Returns how many
   * messages went.
   */
  trim(before: number, policy: RetentionPolicy, now: number): number;
  close(): Promise<void>;
}

export interface RetentionPolicy {
  maxAgeMs: number;
  maxBytes: number;
}

/** The subscribers of one topic and, for each, its acknowledged cursor (the next seq to deliver). */
export interface SubscriberIndex {
  /** Current subscribers: global id → cursor. */
  readonly cursors: ReadonlyMap<number, number>;
  /** Adds (or keeps) a subscriber; durable when the promise resolves. */
  add(id: number, cursor: number): Promise<void>;
  /** Removes a subscriber; durable when the promise resolves. */
  remove(id: number): Promise<void>;
  /**
   * Moves a cursor forward. Written lazily: after a crash a cursor may be older than the
   * last ack, which re-delivers (at least once) and never loses.
   */
  advance(id: number, cursor: number): void;
  /** Starts writing pending cursor moves, without waiting for the disk (called on a timer). */
  writeMoved(): void;
  /** Writes pending cursor moves and fsyncs. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export type FsyncPolicy = "always" | "interval" | "never";

export interface TopicStore {
  /** Names of the topics that exist. */
  topics(): string[];
  /** Opens a topic, creating it when `create` is true; null when absent and not created. */
  open(topic: string, create: boolean): Promise<{ log: TopicLog; subscribers: SubscriberIndex; created: boolean } | null>;
  /** Files of the topics open now and the most kept open (a store that holds no files has none). */
  openFiles?(): { open: number; max: number };
  close(): Promise<void>;
}
