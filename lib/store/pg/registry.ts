/**
 * The client registry on PostgreSQL (types.ts ClientRegistry): `mq_clients` (id → owning
 * local broker), ids from the sequence `mq_client_ids`, so servers sharing the database never
 * hand out one id twice. The table is kept in memory (lookups are synchronous), read at open
 * and written through; `reload()` re-reads what other servers changed, which each change
 * announces with a `client` or `destroyed` event. PostgreSQL loses nothing: no id is ever
 * lost, `lost()` is empty.
 *
 * `nextId` is what this server knows: above every id it has seen, not yet above an id
 * another server made since its last reload.
 */
import type { SQL } from "bun";
import { MemoryClientRegistry } from "../client-registry.ts";
import { notify } from "./shared.ts";

export class PgClientRegistry extends MemoryClientRegistry {
  /** Ids created or destroyed here while a reload reads the table: the reload leaves them as they are. */
  private touched: Set<number> | null = null;
  private reloads: Promise<void> = Promise.resolve();

  private constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
  ) {
    super(1);
  }

  static async open(sql: SQL, serverId: string): Promise<PgClientRegistry> {
    const registry = new PgClientRegistry(sql, serverId);
    await registry.reload();
    return registry;
  }

  /** Re-reads ids, owners and the sequence. Reloads run one after another. */
  reload(): Promise<void> {
    const run = this.reloads.then(() => this.readAll());
    this.reloads = run.catch(() => {});
    return run;
  }

  private async readAll(): Promise<void> {
    const touched = (this.touched = new Set());
    try {
      const rows = await this.sql`select id, owner from mq_clients`;
      // After the rows: every id they hold is below the sequence's next value.
      const [seq] = await this.sql`select last_value, is_called from mq_client_ids`;
      const live = new Map<number, string>();
      for (const row of rows) live.set(Number(row.id), row.owner as string);
      for (const id of [...this.owners.keys()]) if (!live.has(id) && !touched.has(id)) this.unset(id);
      for (const [id, owner] of live) if (!this.owners.has(id) && !touched.has(id)) this.set(id, owner);
      this.next = Math.max(this.next, Number(seq.last_value) + (seq.is_called ? 1 : 0));
    } finally {
      this.touched = null;
    }
  }

  override async create(owner: string): Promise<number> {
    const id = await this.sql.begin(async (tx) => {
      const [row] = await tx`insert into mq_clients (id, owner) values (nextval('mq_client_ids'), ${owner}) returning id`;
      const id = Number(row.id);
      await notify(tx, this.serverId, { kind: "client", id, owner });
      return id;
    });
    this.touched?.add(id);
    this.set(id, owner);
    this.next = Math.max(this.next, id + 1);
    return id;
  }

  override async destroy(id: number): Promise<void> {
    // Also when this server does not know the id (yet): another server may have made it.
    await this.sql.begin(async (tx) => {
      const gone = await tx`delete from mq_clients where id = ${id} returning id`;
      if (gone.length > 0) await notify(tx, this.serverId, { kind: "destroyed", id });
    });
    this.touched?.add(id);
    this.unset(id);
  }

  /**
   * An id named elsewhere at or above `nextId`: made by another server since the last reload
   * (the sequence is past it already), or the sequence was set back by hand; then it is
   * raised past `id` so that no id is handed out twice. Nothing is marked lost.
   */
  override async witness(id: number): Promise<void> {
    if (id < this.next) return;
    await this.sql`select setval('mq_client_ids', ${id}) from mq_client_ids where (case when is_called then last_value else last_value - 1 end) < ${id}`;
    this.next = Math.max(this.next, id + 1);
  }
}
