/**
 * Delayed delivery (`pub` with `delayMs` or `at`): accepted messages wait in the durable
 * schedule (lib/store/schedule.ts); one timer is armed for the earliest due time, and when
 * it fires every due message is appended to its topic by the normal append path, in order
 * of due time (ties: order of acceptance), then removed from the schedule.
 *
 * A crash between the append and the removal must not deliver twice: each message is
 * appended with a message id, its delivery key (the publisher's msgId, or
 * `SCHEDULED_ID_PREFIX + n`), and at start an entry whose key its topic stored at or after
 * its due time is dropped instead of delivered again.
 *
 * Headers and the TTL are kept with the message; its expiry is computed at the append, so
 * the TTL counts from when it is due, as for a message published then.
 */
import { MAX_DELAY_MS } from "../config.ts";
import { logger, errorText } from "../log.ts";
import { Code, MqError } from "../errors.ts";
import type { ScheduledMessage, ScheduleStore } from "../store/types.ts";
import { hasHeaders, type Headers } from "../wire/headers.ts";

const log = logger("server");

/** Message ids of this form are the server's own (the delivery keys of delayed messages without a msgId). */
export const SCHEDULED_ID_PREFIX = "\u0000mq.scheduled:";
/** Largest payload of a delayed message: a schedule record holds it whole (record-file.ts). */
export const MAX_SCHEDULED_BYTES = 1024 * 1024;
/** Messages appended per round: a backlog that fell due at once goes out in bounded steps. */
const ROUND = 1024;
/** After a failed append (disk full…), the due messages are tried again this much later. */
const RETRY_MS = 1000;
/** setTimeout's largest delay (about 24.8 days): a later due time re-arms on the way. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Headers (one map per payload, `{}` for one without) and TTL of delayed messages; each only when some message has it. */
export interface ScheduledFields {
  headers?: Headers[];
  ttlMs?: number;
}

/** What the scheduler needs of the server. */
export interface SchedulerHooks {
  /**
   * Appends messages to a topic (created if needed) in the order given, with their message
   * ids, and `fields` when given (their expiry: the append time plus `ttlMs`); resolves once
   * stored, to how many were stored (the dedupe window may drop some).
   */
  append(topic: string, payloads: Uint8Array[], msgIds: string[], fields: ScheduledFields | undefined): Promise<number>;
  /** Message id → append time of what `topic` stored at or after `since`; null when the topic does not exist. */
  storedIds(topic: string, since: number): Promise<Map<string, number> | null>;
  /**
   * A store several servers share (lib/server/cluster.ts): true while this server is the one
   * that delivers (checked before each round; when false, due messages wait and it asks again
   * RETRY_MS later).
   */
  mayDeliver?(): Promise<boolean>;
}

/** Most delayed messages pending and most payload bytes they hold (0: no limit). */
export interface ScheduleLimits {
  maxScheduled: number;
  maxScheduledBytes: number;
}

/** The message id a delayed message is appended with. */
export function deliveryKey(e: ScheduledMessage): string {
  return e.msgId ?? `${SCHEDULED_ID_PREFIX}${e.n}`;
}

/**
 * The due time of a publish with `delayMs` (relative to the server's clock, so the
 * publisher's clock does not matter) or `at` (ms since the epoch; in the past: due now).
 * BAD_REQUEST for both, or for a time beyond MAX_DELAY_MS.
 */
export function dueTime(when: { delayMs?: number; at?: number }, now: number): number {
  if (when.delayMs !== undefined && when.at !== undefined) throw new MqError(Code.BadRequest, 'pub: give "delayMs" or "at", not both');
  const due = when.delayMs !== undefined ? now + when.delayMs : Math.max(when.at!, now);
  if (due - now > MAX_DELAY_MS) {
    const asked = when.delayMs !== undefined ? `delayMs ${when.delayMs}` : `at ${when.at} (${new Date(when.at!).toISOString()})`;
    throw new MqError(Code.BadRequest, `pub: ${asked} is more than ${MAX_DELAY_MS / 86_400_000} days ahead; delayed messages wait at most that long`);
  }
  return due;
}

export class Scheduler {
  private readonly queue = new DueQueue();
  /** Acceptance numbers in `queue`: an entry read back from a shared store while its accept was finishing is queued once. */
  private readonly queued = new Set<number>();
  /** Pending messages with a msgId, by topic and msgId: a publish sent again is scheduled once. */
  private readonly byMsgId = new Map<string, ScheduledMessage>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerDue = Infinity;
  private running: Promise<void> | null = null;
  private stopped = false;
  /** Messages and payload bytes held: pending, or being accepted (counted before the store's write, so concurrent publishes cannot both pass a limit). */
  private held = 0;
  private heldBytes = 0;
  /** Delayed messages appended to their topics since the start (not those the dedupe window dropped). */
  delivered = 0;

  constructor(
    private readonly store: ScheduleStore,
    private readonly hooks: SchedulerHooks,
    private readonly limits: ScheduleLimits = { maxScheduled: 0, maxScheduledBytes: 0 },
  ) {}

  /** Payload bytes of the pending delayed messages. */
  get pendingBytes(): number {
    return this.heldBytes;
  }

  /**
   * Pending delayed messages, as --max-scheduled counts them: a due one counts until its
   * append is done (the queue lets go of it before), so the stat never shows room the limit
   * does not give.
   */
  get pending(): number {
    return this.held;
  }

  /**
   * Loads the schedule; an entry already due whose key its topic stored at or after its due
   * time was appended before a crash that lost its removal: it is removed, not delivered again.
   * Call once the topics are open, then `start`.
   */
  async load(now: number): Promise<void> {
    const entries = this.store.pending();
    const dueByTopic = new Map<string, ScheduledMessage[]>();
    for (const e of entries) {
      if (e.due > now) continue;
      let list = dueByTopic.get(e.topic);
      if (!list) dueByTopic.set(e.topic, (list = []));
      list.push(e);
    }
    const done = new Set<number>();
    for (const [topic, list] of dueByTopic) {
      const stored = await this.hooks.storedIds(topic, Math.min(...list.map((e) => e.due)));
      if (!stored) continue;
      for (const e of list) if ((stored.get(deliveryKey(e)) ?? -1) >= e.due) done.add(e.n);
    }
    if (done.size > 0) {
      log.info(`schedule: ${done.size} delayed message(s) were appended to their topics before the last stop; removed from the schedule, not delivered again`);
      await this.store.remove([...done]);
    }
    for (const e of entries) {
      if (done.has(e.n)) continue;
      this.enqueue(e);
      this.hold(1, e.data.length);
    }
    if (this.queue.size > 0) log.info(`schedule: ${this.queue.size} delayed message(s) pending, the first due ${new Date(this.queue.peek()!.due).toISOString()}`);
  }

  start(): void {
    this.arm();
  }

  /**
   * Accepts delayed messages for one topic, all due at `due`, with their headers and TTL
   * (`fields`); resolves once they are durable.
   * Returns the indexes of those whose msgId is pending already (not scheduled again).
   */
  async schedule(topic: string, payloads: Uint8Array[], msgIds: Array<string | undefined> | undefined, due: number, fields?: ScheduledFields): Promise<{ duplicates: number[]; firstDuplicateDue?: number }> {
    const duplicates: number[] = [];
    // When the message already pending for the first duplicate id is due: that, not this request's time, is when it comes.
    let firstDuplicateDue: number | undefined;
    const fresh: Array<Omit<ScheduledMessage, "n">> = [];
    const seen = new Set<string>();
    for (let i = 0; i < payloads.length; i++) {
      const msgId = msgIds?.[i];
      if (msgId !== undefined) {
        const key = `${topic}\u0000${msgId}`;
        if (this.byMsgId.has(key) || seen.has(key)) {
          duplicates.push(i);
          firstDuplicateDue ??= this.byMsgId.get(key)?.due ?? due;
          continue;
        }
        seen.add(key);
      }
      // A copy: the payload may share the buffer of the frame it came in.
      const entry: Omit<ScheduledMessage, "n"> = { topic, due, data: payloads[i]!.slice() };
      if (msgId !== undefined) entry.msgId = msgId;
      const headers = fields?.headers?.[i];
      if (hasHeaders(headers)) entry.headers = headers;
      if (fields?.ttlMs !== undefined) entry.ttlMs = fields.ttlMs;
      fresh.push(entry);
    }
    if (fresh.length > 0) {
      const bytes = fresh.reduce((sum, e) => sum + e.data.length, 0);
      this.checkLimits(fresh.length, bytes);
      this.hold(fresh.length, bytes);
      let added: ScheduledMessage[];
      try {
        added = await this.store.add(fresh);
      } catch (err) {
        this.hold(-fresh.length, -bytes);
        throw err;
      }
      for (const e of added) this.enqueue(e);
      this.arm();
    }
    return firstDuplicateDue === undefined ? { duplicates } : { duplicates, firstDuplicateDue };
  }

  /** Stops the timer and waits for a round in progress (its appends finish before the store closes). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    await this.store.close();
  }

  /** LIMIT_EXCEEDED when `count` more messages of `bytes` would pass --max-scheduled or --max-scheduled-bytes. */
  private checkLimits(count: number, bytes: number): void {
    const { maxScheduled, maxScheduledBytes } = this.limits;
    if (maxScheduled > 0 && this.held + count > maxScheduled) {
      throw new MqError(Code.LimitExceeded, `Cannot schedule ${count} more delayed message(s): ${this.held} are pending and --max-scheduled is ${maxScheduled}; publish without a delay, wait for some to fall due, or raise --max-scheduled on the server`);
    }
    if (maxScheduledBytes > 0 && this.heldBytes + bytes > maxScheduledBytes) {
      throw new MqError(Code.LimitExceeded, `Cannot schedule ${bytes} more bytes of delayed messages: ${this.heldBytes} bytes are pending and --max-scheduled-bytes is ${maxScheduledBytes}; publish without a delay, wait for some to fall due, or raise --max-scheduled-bytes on the server`);
    }
  }

  private hold(count: number, bytes: number): void {
    this.held += count;
    this.heldBytes += bytes;
  }

  /**
   * A schedule several servers share: `entries` (what the store holds now) replace the pending
   * messages, so this server delivers what others accepted and forgets what others delivered.
   * Skipped (false) while a round is being delivered.
   */
  replacePending(entries: ScheduledMessage[]): boolean {
    if (this.running || this.stopped) return false;
    this.queue.clear();
    this.queued.clear();
    this.byMsgId.clear();
    this.held = 0;
    this.heldBytes = 0;
    for (const e of entries) {
      this.enqueue(e);
      this.hold(1, e.data.length);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerDue = Infinity;
    this.arm();
    return true;
  }

  private enqueue(e: ScheduledMessage): void {
    if (this.queued.has(e.n)) return;
    this.queued.add(e.n);
    this.queue.push(e);
    if (e.msgId !== undefined) this.byMsgId.set(`${e.topic}\u0000${e.msgId}`, e);
  }

  /** One timer, for the earliest due time (re-armed only when that moves earlier). */
  private arm(delayFloor = 0): void {
    if (this.stopped || this.running) return;
    const first = this.queue.peek();
    if (!first) return;
    const due = Math.max(first.due, Date.now() + delayFloor);
    if (this.timer && this.timerDue <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerDue = Infinity;
      this.running = this.deliverDue().finally(() => {
        this.running = null;
      });
    }, Math.min(Math.max(0, due - Date.now()), MAX_TIMER_MS));
  }

  /** Appends what is due, round after round, then arms the timer for the next due time. */
  private async deliverDue(): Promise<void> {
    let retry = false;
    while (!this.stopped && !retry) {
      if (this.hooks.mayDeliver && this.queue.size > 0 && !(await this.hooks.mayDeliver())) {
        retry = true;
        break;
      }
      const now = Date.now();
      const round: ScheduledMessage[] = [];
      while (round.length < ROUND && (this.queue.peek()?.due ?? Infinity) <= now) {
        const e = this.queue.pop()!;
        this.queued.delete(e.n);
        round.push(e);
      }
      if (round.length === 0) break;
      // Per topic in due order; topics side by side. A round ends before the next starts.
      const byTopic = new Map<string, ScheduledMessage[]>();
      for (const e of round) {
        let list = byTopic.get(e.topic);
        if (!list) byTopic.set(e.topic, (list = []));
        list.push(e);
      }
      await Promise.all(
        [...byTopic].map(async ([topic, list]) => {
          // One append per run of messages with the same TTL (an append has one), one run after the other.
          const runs = runsOfEqualTtl(list);
          for (let k = 0; k < runs.length; k++) {
            const run = runs[k]!;
            let stored: number;
            try {
              stored = await this.hooks.append(
                topic,
                run.map((e) => e.data),
                run.map(deliveryKey),
                fieldsOf(run),
              );
            } catch (err) {
              // Still pending, with the runs after it: tried again (in the same order) after a pause.
              const left = runs.slice(k).flat();
              log.error(`schedule: cannot append ${left.length} delayed message(s) to topic ${topic}, trying again in ${RETRY_MS} ms: ${errorText(err)}`);
              for (const e of left) this.enqueue(e);
              retry = true;
              return;
            }
            this.delivered += stored;
            this.hold(-run.length, -run.reduce((sum, e) => sum + e.data.length, 0));
            for (const e of run) if (e.msgId !== undefined) this.byMsgId.delete(`${e.topic}\u0000${e.msgId}`);
            try {
              await this.store.remove(run.map((e) => e.n));
            } catch (err) {
              // Appended already: at the next start the topic's stored id says so.
              log.warn(`schedule: cannot record the delivery of ${run.length} delayed message(s) of topic ${topic}: ${errorText(err)}`);
            }
          }
        }),
      );
    }
    this.running = null;
    this.arm(retry ? RETRY_MS : 0);
  }
}

/** `list` cut into runs of consecutive messages with the same TTL (one run when none has a TTL). */
export function runsOfEqualTtl(list: ScheduledMessage[]): ScheduledMessage[][] {
  const runs: ScheduledMessage[][] = [];
  let run: ScheduledMessage[] = [];
  for (const e of list) {
    if (run.length > 0 && run[0]!.ttlMs !== e.ttlMs) {
      runs.push(run);
      run = [];
    }
    run.push(e);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** The fields of the append of `run` (one TTL); undefined when it has neither headers nor a TTL, as a plain publish. */
export function fieldsOf(run: ScheduledMessage[]): ScheduledFields | undefined {
  const ttlMs = run[0]!.ttlMs;
  const withHeaders = run.some((e) => e.headers !== undefined);
  if (!withHeaders && ttlMs === undefined) return undefined;
  const fields: ScheduledFields = {};
  if (withHeaders) fields.headers = run.map((e) => e.headers ?? {});
  if (ttlMs !== undefined) fields.ttlMs = ttlMs;
  return fields;
}

/** Pending messages by (due, n): a binary min-heap. */
class DueQueue {
  private readonly heap: ScheduledMessage[] = [];

  get size(): number {
    return this.heap.length;
  }

  clear(): void {
    this.heap.length = 0;
  }

  peek(): ScheduledMessage | undefined {
    return this.heap[0];
  }

  push(e: ScheduledMessage): void {
    const h = this.heap;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  pop(): ScheduledMessage | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < h.length && before(h[l]!, h[min]!)) min = l;
      if (r < h.length && before(h[r]!, h[min]!)) min = r;
      if (min === i) break;
      [h[i], h[min]] = [h[min]!, h[i]!];
      i = min;
    }
    return top;
  }
}

function before(a: ScheduledMessage, b: ScheduledMessage): boolean {
  return a.due < b.due || (a.due === b.due && a.n < b.n);
}
