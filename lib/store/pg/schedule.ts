/**
 * The schedule of delayed messages on PostgreSQL (types.ts ScheduleStore): `mq_scheduled`,
 * numbered by its identity column (ascending in the order accepted, never handed out twice).
 * The pending messages are read at open and kept in memory like the file schedule's.
 */
import type { SQL } from "bun";
import { logger } from "../../log.ts";
import { headersProblem, type Headers } from "../../wire/headers.ts";
import { MemorySchedule } from "../schedule.ts";
import type { ScheduledMessage } from "../types.ts";

const log = logger("store");

export class PgSchedule extends MemorySchedule {
  private constructor(private readonly sql: SQL) {
    super();
  }

  static async open(sql: SQL): Promise<PgSchedule> {
    const schedule = new PgSchedule(sql);
    for (const row of await sql`select n, topic, due, data, msg_id, headers, ttl_ms from mq_scheduled order by n`) schedule.put(toEntry(row));
    return schedule;
  }

  override async add(messages: Array<Omit<ScheduledMessage, "n">>): Promise<ScheduledMessage[]> {
    if (messages.length === 0) return [];
    const rows = messages.map((m) => ({ topic: m.topic, due: m.due, data: m.data, msg_id: m.msgId ?? null, headers: m.headers ?? null, ttl_ms: m.ttlMs ?? null }));
    // One insert numbers the rows in the order given; sorted in case they come back in another.
    const inserted = await this.sql`insert into mq_scheduled ${this.sql(rows)} returning n`;
    const ns = inserted.map((r: { n: string }) => Number(r.n)).sort((a: number, b: number) => a - b);
    return messages.map((m, i) => this.put({ ...m, n: ns[i]! }));
  }

  /** What every server accepted and none delivered yet (the scheduler holder delivers it, lib/server/cluster.ts); `pending()` follows. */
  async reload(): Promise<ScheduledMessage[]> {
    const rows = await this.sql`select n, topic, due, data, msg_id, headers, ttl_ms from mq_scheduled order by n`;
    this.entries.clear();
    for (const row of rows) this.put(toEntry(row));
    return this.pending();
  }

  override async remove(ns: number[]): Promise<void> {
    const gone = ns.filter((n) => this.entries.delete(n));
    if (gone.length === 0) return;
    await this.sql`delete from mq_scheduled where n in ${this.sql(gone)}`;
  }
}

interface ScheduledRow {
  n: string;
  topic: string;
  due: string;
  data: Uint8Array;
  msg_id: string | null;
  headers: unknown;
  ttl_ms: string | null;
}

function toEntry(row: ScheduledRow): ScheduledMessage {
  const entry: ScheduledMessage = { n: Number(row.n), topic: row.topic, due: Number(row.due), data: new Uint8Array(row.data) };
  if (row.msg_id !== null) entry.msgId = row.msg_id;
  // Written only valid; anything else is not ours to deliver, so it is left out (and said).
  if (row.headers !== null) {
    const problem = headersProblem(row.headers);
    if (problem === null) entry.headers = row.headers as Headers;
    else log.error(`delayed message ${entry.n} of topic "${entry.topic}": its stored headers are not valid (expected ${problem}); delivered without them`);
  }
  if (row.ttl_ms !== null && Number(row.ttl_ms) >= 1) entry.ttlMs = Number(row.ttl_ms);
  return entry;
}
