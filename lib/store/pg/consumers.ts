/**
 * The consumers on PostgreSQL (types.ts ConsumerStore): `mq_consumers`, one row per (id,
 * filter) holding the record as JSON. Not kept in memory: `list()` reads the table (at start,
 * and when another server's `consumers` event says it changed).
 */
import type { SQL } from "bun";
import { asRecord } from "../consumer-store.ts";
import type { ConsumerRecord, ConsumerStore } from "../types.ts";
import { notify } from "./shared.ts";

export class PgConsumerStore implements ConsumerStore {
  constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
  ) {}

  async list(): Promise<ConsumerRecord[]> {
    const rows = await this.sql`select record from mq_consumers order by client_id, filter`;
    return rows.map((row: { record: unknown }) => asRecord(row.record)).filter((r: ConsumerRecord | null): r is ConsumerRecord => r !== null);
  }

  async put(record: ConsumerRecord): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`insert into mq_consumers (client_id, filter, record) values (${record.id}, ${record.filter}, ${{ ...record }})
               on conflict (client_id, filter) do update set record = excluded.record`;
      await notify(tx, this.serverId, { kind: "consumers", id: record.id });
    });
  }

  async remove(id: number, filter: string): Promise<void> {
    await this.sql.begin(async (tx) => {
      const gone = await tx`delete from mq_consumers where client_id = ${id} and filter = ${filter} returning client_id`;
      if (gone.length > 0) await notify(tx, this.serverId, { kind: "consumers", id });
    });
  }

  async close(): Promise<void> {}
}
