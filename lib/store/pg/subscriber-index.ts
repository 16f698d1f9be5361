/**
 * PgSubscriberIndex: one topic's rows of `mq_subscribers` (schema.ts), kept in memory and
 * written through. Adds and removes are durable when they resolve and notify `subscribers`;
 * cursor moves are lazy and written together by `writeMoved()` in one statement that only
 * ever raises a cursor (`greatest`), so a stale write from one server never undoes a later
 * ack seen by another. All writes of one index go in call order on one chain, so a cursor
 * write queued before a remove and a re-add cannot land after them.
 */
import type { SQL } from "bun";
import { logger } from "../../log.ts";
import type { SubscriberIndex } from "../types.ts";
import { encodeEvent } from "./events.ts";
import { EVENTS_CHANNEL } from "./schema.ts";

const log = logger("store");

export class PgSubscriberIndex implements SubscriberIndex {
  private readonly map = new Map<number, number>();
  /** Cursor moves not yet written. */
  private readonly moved = new Map<number, number>();
  /** The writes in call order; never rejects (each caller gets its own write's outcome). */
  private chain: Promise<unknown> = Promise.resolve();
  /** Ids added or removed here while a reload reads (the reload leaves them as they are here). */
  private readonly reloading = new Set<Set<number>>();
  /** Per id, how many adds and removes were called: a failed write is undone only if none came after it. */
  private readonly changes = new Map<number, number>();

  /** `cursors`: the topic's rows as read at open. */
  constructor(
    private readonly sql: SQL,
    private readonly topicId: number,
    private readonly topic: string,
    private readonly serverId: string,
    cursors: Iterable<[number, number]>,
  ) {
    for (const [id, cursor] of cursors) this.map.set(id, cursor);
  }

  /** The topic's rows: client id → cursor. */
  static async load(sql: SQL, topicId: number): Promise<Array<[number, number]>> {
    const rows = await sql`select client_id, cursor from mq_subscribers where topic_id = ${topicId}`;
    return rows.map((r: { client_id: string; cursor: string }) => [Number(r.client_id), Number(r.cursor)]);
  }

  get cursors(): ReadonlyMap<number, number> {
    return this.map;
  }

  /** Runs `write` after every write queued before it. */
  private enqueue<T>(write: () => Promise<T>): Promise<T> {
    const done = this.chain.then(write);
    this.chain = done.catch(() => {});
    return done;
  }

  /** Notes an add or remove of `id`; returns its number for `undo`. */
  private touched(id: number): number {
    for (const ids of this.reloading) ids.add(id);
    const n = (this.changes.get(id) ?? 0) + 1;
    this.changes.set(id, n);
    return n;
  }

  /**
   * Runs the write of an add or remove; when it fails and nothing changed `id` since, puts
   * the memory back as it was (so that a retry writes again, and memory says what is stored).
   */
  private async write(id: number, change: number, write: () => Promise<unknown>, undo: () => void): Promise<void> {
    try {
      await this.enqueue(write);
    } catch (err) {
      if (this.changes.get(id) === change) undo();
      throw err;
    } finally {
      // The writes before it are done too (one chain): the count starts over.
      if (this.changes.get(id) === change) this.changes.delete(id);
    }
  }

  private event(id: number): string {
    return encodeEvent(this.serverId, { kind: "subscribers", topic: this.topic, id });
  }

  async add(id: number, cursor: number): Promise<void> {
    // Already there: its row may still be on its way, so wait for the writes queued so far.
    if (this.map.has(id)) return this.enqueue(async () => {});
    this.map.set(id, cursor);
    const change = this.touched(id);
    await this.write(
      id,
      change,
      () => this.sql`
        with ins as (
          insert into mq_subscribers (topic_id, client_id, cursor) values (${this.topicId}, ${id}, ${cursor})
          on conflict do nothing returning 1
        )
        select pg_notify(${EVENTS_CHANNEL}, ${this.event(id)}) from ins`,
      () => {
        this.map.delete(id);
        this.moved.delete(id);
      },
    );
  }

  async remove(id: number): Promise<void> {
    if (!this.map.has(id)) return this.enqueue(async () => {});
    const cursor = this.map.get(id)!;
    this.map.delete(id);
    this.moved.delete(id);
    const change = this.touched(id);
    await this.write(
      id,
      change,
      () => this.sql`
        with del as (delete from mq_subscribers where topic_id = ${this.topicId} and client_id = ${id} returning 1)
        select pg_notify(${EVENTS_CHANNEL}, ${this.event(id)}) from del`,
      () => this.map.set(id, cursor),
    );
  }

  advance(id: number, cursor: number): void {
    const current = this.map.get(id);
    if (current === undefined || cursor <= current) return;
    this.map.set(id, cursor);
    this.moved.set(id, cursor);
  }

  /** Queues one statement writing every pending cursor move; a failed write keeps the moves for the next. */
  private writeMovedNow(): Promise<void> {
    if (this.moved.size === 0) return this.enqueue(async () => {});
    const ids = [...this.moved.keys()];
    const cursors = [...this.moved.values()];
    this.moved.clear();
    return this.enqueue(async () => {
      try {
        await this.sql`
          update mq_subscribers s set cursor = greatest(s.cursor, v.cursor)
          from unnest(${ids}::bigint[], ${cursors}::bigint[]) as v(client_id, cursor)
          where s.topic_id = ${this.topicId} and s.client_id = v.client_id`;
      } catch (err) {
        // Still subscribed and not moved further meanwhile: write it next time.
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i]!;
          if (this.map.has(id) && !this.moved.has(id)) this.moved.set(id, cursors[i]!);
        }
        throw err;
      }
    });
  }

  writeMoved(): void {
    // A failed cursor write only means a re-delivery after a crash; it is retried next time.
    this.writeMovedNow().catch((err) => log.warn(`topic ${this.topic}: cursor write failed:`, err));
  }

  async flush(): Promise<void> {
    await this.writeMovedNow();
  }

  /**
   * Re-reads the rows (after the writes queued here): ids added or removed by another server
   * appear or go, a cursor is the larger of this server's and the stored one.
   */
  async reload(): Promise<void> {
    const touched = new Set<number>();
    this.reloading.add(touched);
    try {
      const stored = await this.enqueue(() => PgSubscriberIndex.load(this.sql, this.topicId));
      const seen = new Set<number>();
      for (const [id, cursor] of stored) {
        seen.add(id);
        if (touched.has(id)) continue;
        const current = this.map.get(id);
        if (current === undefined || cursor > current) this.map.set(id, cursor);
        const pending = this.moved.get(id);
        if (pending !== undefined && pending <= cursor) this.moved.delete(id);
      }
      for (const id of [...this.map.keys()]) {
        if (!seen.has(id) && !touched.has(id)) {
          this.map.delete(id);
          this.moved.delete(id);
        }
      }
    } finally {
      this.reloading.delete(touched);
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
