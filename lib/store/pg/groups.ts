/**
 * The queue groups on PostgreSQL (types.ts GroupStore): all of them in the one row of
 * `mq_groups`, as JSON, with a `groups` event for the other servers. Several servers share
 * it, each knowing perhaps not every member yet: a server changes one membership at a time
 * (`join`, `leave`) under the row's lock, so that no server undoes another's.
 */
import type { SQL } from "bun";
import { logger } from "../../log.ts";
import { isGroupRecord } from "../group-store.ts";
import type { GroupRecord, GroupStore } from "../types.ts";
import { notify } from "./shared.ts";

const log = logger("server");

export class PgGroupStore implements GroupStore {
  /** The writes, one after another. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
    /** HOST:PORT/DB, for describe(). */
    private readonly location: string,
  ) {}

  /** The groups as stored; an invalid record is logged and left out (the next write drops it). */
  async load(): Promise<GroupRecord[]> {
    const [row] = await this.sql`select records from mq_groups where key = 1`;
    return this.valid(row?.records);
  }

  private valid(records: unknown): GroupRecord[] {
    const valid: GroupRecord[] = [];
    for (const r of Array.isArray(records) ? records : []) {
      if (isGroupRecord(r)) valid.push(r);
      else log.error(`${this.describe()}: a queue group record is not valid and is dropped: ${JSON.stringify(r).slice(0, 200)}`);
    }
    return valid;
  }

  save(records: GroupRecord[]): Promise<void> {
    return this.change(() => records);
  }

  join(record: GroupRecord): Promise<void> {
    return this.change((stored) => withMember(stored, record));
  }

  leave(topic: string, group: string | null, id: number): Promise<void> {
    return this.change((stored) => withoutMember(stored, topic, group, id));
  }

  /** Replaces the stored records by `apply(stored)`, under the row's lock. */
  private change(apply: (stored: GroupRecord[]) => GroupRecord[]): Promise<void> {
    const write = this.writing.then(() =>
      this.sql.begin(async (tx) => {
        // The row exists before it is locked: two first writes at once apply both.
        await tx`insert into mq_groups (key, records) values (1, '[]'::jsonb) on conflict do nothing`;
        const [row] = await tx`select records from mq_groups where key = 1 for update`;
        const records = apply(this.valid(row?.records));
        // An object, not an array: Bun would send a JS array as a PostgreSQL array.
        await tx`update mq_groups set records = (${{ groups: records }}::jsonb)->'groups' where key = 1`;
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

/** The record of `r`'s group among `records`: the same topic and name; a private group (null) is its member's own. */
function sameGroup(r: GroupRecord, topic: string, group: string | null, member: number): boolean {
  return r.topic === topic && r.group === group && (group !== null || r.members[0] === member);
}

/** `stored` with the one member of `record` in its group, whose options become the record's (one group, one policy: the server checked them). */
export function withMember(stored: GroupRecord[], record: GroupRecord): GroupRecord[] {
  const id = record.members[0]!;
  const i = stored.findIndex((r) => sameGroup(r, record.topic, record.group, id));
  if (i < 0) return [...stored, record];
  const old = stored[i]!;
  const joined: GroupRecord = { topic: old.topic, group: old.group, floor: old.floor, members: old.members.includes(id) ? old.members : [...old.members, id] };
  if (record.maxDeliver !== undefined) joined.maxDeliver = record.maxDeliver;
  if (record.deadLetter !== undefined) joined.deadLetter = record.deadLetter;
  return stored.map((r, k) => (k === i ? joined : r));
}

/** `stored` without member `id` of the group; a group left without members goes. */
export function withoutMember(stored: GroupRecord[], topic: string, group: string | null, id: number): GroupRecord[] {
  return stored
    .map((r) => (sameGroup(r, topic, group, id) ? { ...r, members: r.members.filter((m) => m !== id) } : r))
    .filter((r) => r.members.length > 0);
}
