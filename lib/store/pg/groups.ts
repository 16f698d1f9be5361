/**
 * The queue groups on PostgreSQL (types.ts GroupStore): all of them in the one row of
 * `mq_groups`, as JSON, replaced whole on each save (a few small records), with a `groups`
 * event for the other servers.
 */
import type { SQL } from "bun";
import { logger } from "../../log.ts";
import { isGroupRecord } from "../group-store.ts";
import type { GroupRecord, GroupStore } from "../types.ts";
import { notify } from "./shared.ts";

const log = logger("server");

export class PgGroupStore implements GroupStore {
  /** The saves, one after another (each writes the records it was given). */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
    /** HOST:PORT/DB, for describe(). */
    private readonly location: string,
  ) {}

  /** The groups as stored; an invalid record is logged and left out (the next save drops it). */
  async load(): Promise<GroupRecord[]> {
    const [row] = await this.sql`select records from mq_groups where key = 1`;
    const valid: GroupRecord[] = [];
    for (const r of Array.isArray(row?.records) ? row.records : []) {
      if (isGroupRecord(r)) valid.push(r);
      else log.error(`${this.describe()}: a queue group record is not valid and is dropped: ${JSON.stringify(r).slice(0, 200)}`);
    }
    return valid;
  }

  save(records: GroupRecord[]): Promise<void> {
    const write = this.writing.then(() =>
      this.sql.begin(async (tx) => {
        // An object, not an array: Bun would send a JS array as a PostgreSQL array.
        await tx`insert into mq_groups (key, records) values (1, (${{ groups: records }}::jsonb)->'groups')
                 on conflict (key) do update set records = excluded.records`;
        await notify(tx, this.serverId, { kind: "groups" });
      }),
    );
    this.writing = write.catch(() => {});
    return write;
  }

  describe(): string {
    return `table mq_groups of postgres ${this.location}`;
  }

  async close(): Promise<void> {
    await this.writing;
  }
}
