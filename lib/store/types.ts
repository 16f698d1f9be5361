/**
 * The server's storage, behind small interfaces so that a second backend can slot in
 * without touching the protocol code: a Storage (lib/store/backend.ts makes one) holds the
 * topics, the client ids and the local brokers' credentials. Whatever a database would
 * have to fetch is async; what the server consults on every request (owners of ids, the
 * cursors, seqs) is kept in memory by every backend. Every implementation runs
 * tests/store/*.contract.ts.
 */

import type { IdRun } from "./id-run.ts";

/** A message id stored with a message, with the message's seq and append time. */
export interface MsgIdRecord {
  msgId: string;
  seq: number;
  time: number;
}

/**
 * `count` message ids stored with consecutive messages of one append: with `count` > 1 the
 * ids are a run, `msgId` = `P` + n (the library's `<producer>:<n>`) and the others P + (n + 1) …
 * with seqs seq + 1 …, all at `time`. What a start reads back without a string per message.
 */
export interface MsgIdRun extends MsgIdRecord {
  count: number;
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
   * Appends several messages as `append` would, all in one group commit (consecutive seqs),
   * with one promise for their seqs, in order: a publish batch costs one entry, not one per
   * message. `fields[i]` goes with `data[i]` (`fields` may be shorter, even empty: the rest have
   * none). Optional: a log without it is appended to
   * message by message (`appendAll`, lib/store/append-all.ts). `ids`: the messages' ids as a
   * run (`ids.prefix + (ids.from + i)` goes with `data[i]`; then no `fields[i].msgId`), stored as
   * if each were given in its fields.
   */
  appendBatch?(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids?: IdRun): Promise<number[]>;
  /**
   * The message ids stored with committed messages appended at or after `since` (ms since
   * the epoch), oldest first; at most `limit`, the newest ones. A start rebuilds the server's
   * dedupe window from it. A file log reads only the segments that reach into the window.
   */
  recentMsgIds(since: number, limit: number): Promise<MsgIdRecord[]>;
  /** recentMsgIds as runs (MsgIdRun; `limit` counts ids): optional, a log without it is read id by id. */
  recentMsgIdRuns?(since: number, limit: number): Promise<MsgIdRun[]>;
  /**
   * Committed messages from `from` on, ascending, at most `maxCount` and about `maxBytes`
   * (always at least one if any is available). Lost seqs are skipped: a caller sees a hole
   * as a jump in seq. The payloads are the log's: read them, never change them (a later
   * read does not overwrite them, so reads may overlap).
   */
  read(from: number, maxCount: number, maxBytes: number): Promise<StoredMessage[]>;
  /**
   * Set by the server: the lowest seq that any reader of the topic reads next. A log that keeps
   * its newest messages in memory (a file log's tail cache) lets those below it go, so memory
   * holds what subscribers have yet to read, not the last 8 MiB; a read below it still works
   * (from storage). Unset: the log keeps what its own bounds allow.
   */
  readFloor?: () => number;
  /**
   * Set by the server: called when a commit's messages became readable before their fsync
   * returned (a file log with `--deliver-after write`), so that they are pushed while the disk
   * works; returns whether pushes of them are under way to consumers that keep up (one that is
   * away takes a window of pushes and acks none: nothing is gained then by keeping the event
   * loop free). Unset, or a log that makes its messages
   * readable only when their append resolves: the server pushes after the append.
   */
  onWritten?: () => boolean;
  /**
   * The seq of the first committed message appended at or after `time` (ms since the epoch);
   * `nextSeq` when there is none (replay by time starts there). Append times rise with seqs.
   * A file log finds the segment by binary search and scans only within it.
   */
  seqAtTime(time: number): Promise<number>;
  /**
   * Retention: deletes the oldest messages, all below `before` (every subscriber is past
   * them), while they are older than `policy.maxAgeMs` or the log is above `policy.maxBytes`.
   * A file log deletes whole segments and never the one being written. Returns how many
   * messages went.
   */
  trim(before: number, policy: RetentionPolicy, now: number): Promise<number>;
  /**
   * A log several servers share (postgres): re-reads the extent (firstSeq, nextSeq, lastSeq,
   * count) that appends and trims of other servers changed. Never moves nextSeq back.
   */
  refresh?(): Promise<void>;
  /**
   * A log several servers share: the stored messages with these ids (dedupe across servers,
   * for an id this server's window has not seen). Any order; at most one record per id.
   */
  findMsgIds?(msgIds: string[]): Promise<MsgIdRecord[]>;
  /**
   * A log several servers share: `appendBatch`, except that a message whose msgId the topic
   * holds appended at or after `since` (ms since the epoch: the start of the dedupe window)
   * is not stored again; it gets that message's seq and its index is in `duplicates`. Exact
   * across servers: the same id appended at once through two is stored once. The ids of one
   * call and of the calls in flight together on one log are distinct (the server's window
   * sees to it: an id in flight is waited for, not appended again).
   */
  appendOnce?(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids: IdRun | undefined, since: number): Promise<{ seqs: number[]; duplicates: number[] }>;
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
  /**
   * An index several servers share: re-reads the subscribers and cursors as stored (ids
   * added or removed elsewhere appear or go; a cursor only moves forward: the larger of
   * this server's and the stored one is kept).
   */
  reload?(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A delayed message waiting in the schedule (lib/store/schedule.ts) until it is due, then
 * appended to its topic.
 */
export interface ScheduledMessage {
  /** Acceptance number: ascending in the order the server accepted delayed messages, never handed out twice. */
  n: number;
  topic: string;
  /** When it is due, ms since the epoch (server clock). */
  due: number;
  data: Uint8Array;
  /** The publisher's message id, if it gave one. */
  msgId?: string;
  /** Its headers, if it has any. */
  headers?: Record<string, string>;
  /** Its TTL in ms, if it has one: it expires that long after its append (when due), not after its acceptance. */
  ttlMs?: number;
}

/** The durable schedule of delayed messages: what was accepted and is not yet appended to its topic. */
export interface ScheduleStore {
  /** The pending messages read at open, in acceptance order. */
  pending(): ScheduledMessage[];
  /** Adds messages, numbered in the order given; durable when the promise resolves. */
  add(messages: Array<Omit<ScheduledMessage, "n">>): Promise<ScheduledMessage[]>;
  /**
   * Removes messages that were appended to their topic. Written without waiting for an
   * fsync: a removal lost in a crash is found again at start (the topic stored the message).
   */
  remove(ns: number[]): Promise<void>;
  /** A schedule several servers share: the pending messages as stored now (accepted by any server, not yet delivered), in acceptance order. */
  reload?(): Promise<ScheduledMessage[]>;
  close(): Promise<void>;
}

export type FsyncPolicy = "always" | "interval" | "never";

/**
 * When a file log's messages become readable (and so pushed) under `--fsync always`: `write`,
 * once written (in the page cache: they survive the process being killed), while their fsync
 * runs; `fsync`, only once that fsync returned. The publisher's answer waits for the fsync
 * either way (docs/durability.md, "Delivery before the fsync").
 */
export type DeliverAfter = "write" | "fsync";

export interface TopicStore {
  /** Names of the topics that exist, sorted. */
  topics(): Promise<string[]>;
  /** Opens a topic, creating it when `create` is true; null when absent and not created. */
  open(topic: string, create: boolean): Promise<{ log: TopicLog; subscribers: SubscriberIndex; created: boolean } | null>;
  /** Files of the topics open now and the most kept open (a store that holds no files has none). */
  openFiles?(): { open: number; max: number };
  /** Bytes of recent messages held in memory for their readers (a file store's tail caches). */
  cachedBytes?(): number;
  close(): Promise<void>;
}

/** A consumer as stored (lib/server/consumer.ts without the start position, which is spent at subscribe). */
export interface ConsumerRecord {
  id: number;
  filter: string;
  /** Where it started in the topics that existed when it was made; and when that was (ms since the epoch). */
  from?: "earliest" | "latest" | number | { since: number };
  createdAt?: number;
  group?: string;
  ackPolicy?: "cumulative" | "explicit";
  maxDeliver?: number;
  deadLetter?: string;
}

/**
 * The consumers the subscriber indexes cannot say: patterns (which must match topics created
 * later, also after a restart) and the exact filters a pattern of the same id overlaps.
 */
export interface ConsumerStore {
  list(): ConsumerRecord[] | Promise<ConsumerRecord[]>;
  /** Adds or replaces the consumer (id, filter); durable when the promise resolves. */
  put(record: ConsumerRecord): Promise<void>;
  /** Removes the consumer (id, filter), if there is one; durable when the promise resolves. */
  remove(id: number, filter: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * The global client ids and the local broker that owns each. Ids are never handed out
 * twice. Lookups are synchronous (every request checks its id): a backend keeps the table
 * in memory and writes through.
 */
export interface ClientRegistry {
  /** How many ids are live. */
  readonly size: number;
  /** The id the next create gets: above every id ever handed out. */
  readonly nextId: number;
  /** The owning local broker of `id`, or undefined when there is no such id. */
  owner(id: number): string | undefined;
  /** Ids owned by one local broker (a copy: safe to hold across awaits). */
  ownedBy(broker: string): number[];
  /** How many ids one local broker owns. */
  countOwnedBy(broker: string): number;
  /** True when `id` is not live because its record was lost (damaged storage). */
  isLost(id: number): boolean;
  /** The ids whose records were lost, as `[lo, hi, …]` (empty when nothing was lost). */
  lost(): number[];
  /** Allocates a new id for `owner`; durable (and live) when the promise resolves. */
  create(owner: string): Promise<number>;
  /** Removes an id (an unknown one is a no-op); durable when the promise resolves. */
  destroy(id: number): Promise<void>;
  /**
   * Another store names `id` (a subscriber index): when it is at or above `nextId` the
   * registry lost it, so ids up to it are marked lost and never handed out.
   */
  witness(id: number): Promise<void>;
  /** A registry several servers share: re-reads the ids and owners (ids made or destroyed elsewhere). */
  reload?(): Promise<void>;
  close(): Promise<void>;
}

/** `bound`: first contact, now recorded durably; `match`: the known secret; `mismatch`: another one. */
export type CredentialCheck = "bound" | "match" | "mismatch";

/** The secret each local broker identity proved at first contact (trust on first use). */
export interface BrokerCredentials {
  /** Identities bound so far. */
  readonly size: number;
  /** Compares `secret` with the one bound to `identity`, or binds it (durably) if the identity is new. */
  check(identity: string, secret: string): Promise<CredentialCheck>;
  close(): Promise<void>;
}

/** One queue group as the server keeps it (lib/server/group.ts). */
export interface GroupRecord {
  topic: string;
  /** null: the private group of one subscription with --max-deliver. */
  group: string | null;
  /** Every seq below it is done (acknowledged, dead-lettered, expired). */
  floor: number;
  /**
   * Absent in files of older versions, and when nothing was delivered above the floor: the
   * first seq never delivered, and the runs [first, last] of seqs in [floor, next) not done
   * (in flight, to deliver again, being dead-lettered). Every other seq below `next` is done.
   * Not on a store several servers share (its claims hold that).
   */
  next?: number;
  undone?: Array<[number, number]>;
  maxDeliver?: number;
  deadLetter?: string;
  members: number[];
}

/** The queue groups: read once at start, written whole on each change (a few groups, small records). */
export interface GroupStore {
  load(): Promise<GroupRecord[]>;
  /** Replaces what is stored by `records`; durable when the promise resolves. Writes happen in call order. */
  save(records: GroupRecord[]): Promise<void>;
  /**
   * A store several servers share (postgres): the one member of `record` joins its group (made
   * with the record's floor and options when absent; the options are set), what the other
   * servers stored stays. The server then calls this instead of `save`.
   */
  join?(record: GroupRecord): Promise<void>;
  /** A store several servers share: member `id` leaves the group (`group` null: its private one); a group left empty goes. */
  leave?(topic: string, group: string | null, id: number): Promise<void>;
  /** Where the groups are kept, for log lines. */
  describe(): string;
  close(): Promise<void>;
}

/**
 * Everything the server stores, from one factory (`openStorage`, lib/store/backend.ts),
 * which also owns the data directory's lock. A new member is one more field here, built
 * by each backend in backend.ts and closed by `close`.
 */
export interface Storage {
  /** `file` or `memory`, for log lines. */
  readonly kind: StoreKind;
  readonly topics: TopicStore;
  readonly clients: ClientRegistry;
  readonly credentials: BrokerCredentials;
  /** Wildcard consumers (and the exact filters they overlap). */
  readonly consumers: ConsumerStore;
  /** Delayed messages not yet appended. */
  readonly schedule: ScheduleStore;
  /** Queue groups: floors, options and members. */
  readonly groups: GroupStore;
  /** Present when several servers share the store (postgres): their events and singleton jobs. */
  readonly shared?: SharedStore;
  /** Present with `shared`: which server delivers which seq of a queue group (lib/server/shared-group.ts). */
  readonly groupClaims?: GroupClaims;
  /** Closes every member, then releases the data directory. */
  close(): Promise<void>;
}

export type StoreKind = "file" | "memory" | "postgres";

/**
 * What a store several servers share tells each of them (lib/store/pg/events.ts): hints to
 * re-read, never the data itself. They are not durable: after `resync` (the listening
 * connection came back) anything may have been missed, so everything is re-read.
 */
export type StoreEvent =
  | { kind: "appended"; topic: string; lastSeq: number }
  | { kind: "topic"; topic: string }
  | { kind: "client"; id: number; owner: string }
  | { kind: "destroyed"; id: number }
  | { kind: "subscribers"; topic: string; id: number }
  | { kind: "consumers"; id: number }
  | { kind: "groups" }
  | { kind: "resync" };

/** The part of a Storage that several servers share (postgres). */
export interface SharedStore {
  /** This server's name in the events it causes (unique per process). */
  readonly serverId: string;
  /** Events caused by other servers (a server's own are not passed back), and `resync`. */
  onEvent(listener: (event: StoreEvent) => void): void;
  /**
   * True while this server holds the lock of a job only one server may run at a time
   * (`scheduler`, `retention`); takes it when it is free. Released when this server's
   * connection to the store ends (a dead server's jobs pass to another).
   */
  holds(job: string): Promise<boolean>;
}

/** A seq of a queue group given to this server: `deliveries` counts this delivery. */
export interface GroupClaim {
  seq: number;
  deliveries: number;
}

/**
 * Queue groups shared by the servers of one store (lib/store/pg/group-claims.ts): each seq of
 * a group is claimed by one server at a time; `grp` is the group's key (its name, or `#ID`
 * for the private group of one subscription with --max-deliver).
 */
export interface GroupClaims {
  /** Makes the group start at `firstSeq` unless it exists (a group made elsewhere keeps its position). */
  start(topic: string, grp: string, firstSeq: number): Promise<void>;
  /** Up to `count` seqs for this server: given back or left by a dead server first (unless `again` is false), then new ones up to `lastSeq`. */
  claim(topic: string, grp: string, count: number, firstSeq: number, lastSeq: number, again?: boolean): Promise<GroupClaim[]>;
  /** Acknowledges `seqs` this server holds; returns those it held. */
  ack(topic: string, grp: string, seqs: number[]): Promise<number[]>;
  /** `seqs` go back for any server; returns those at `maxDeliver` (still this server's, to dead-letter). */
  giveBack(topic: string, grp: string, seqs: number[], counted: boolean, maxDeliver: number | undefined): Promise<GroupClaim[]>;
  /** The group's lowest unacknowledged seq across servers. */
  floor(topic: string, grp: string, fallback: number): Promise<number>;
  /** Forgets the group (no member left on any server). */
  forget(topic: string, grp: string): Promise<void>;
  /** Keeps this server's liveness (taken again after its connection was lost); false when it is not held. */
  alive(): Promise<boolean>;
  close(): Promise<void>;
}

