/**
 * The queue groups on PostgreSQL (types.ts GroupStore): all of them in the one row of
 * `mq_groups`, as JSON, with a `groups` event for the other servers. Several servers save
 * their groups there, each knowing perhaps not all members yet: a save applies only what
 * changed since this server last loaded or saved (members that joined or left here) to the
 * stored records, under the row's lock, so that no server undoes another's.
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
  /** The groups as this server last loaded or saved them: a save stores the difference to these. */
  private known: GroupRecord[] = [];

  constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
    /** HOST:PORT/DB, for describe(). */
    private readonly location: string,
  ) {}

  /** The groups as stored; an invalid record is logged and left out (the next save drops it). */
  async load(): Promise<GroupRecord[]> {
    const [row] = await this.sql`select records from mq_groups where key = 1`;
    const valid = this.valid(row?.records);
    this.known = valid;
    return valid;
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
    const write = this.writing.then(async () => {
      await this.sql.begin(async (tx) => {
        // The row exists before it is locked: two first saves at once then merge too.
        await tx`insert into mq_groups (key, records) values (1, '[]'::jsonb) on conflict do nothing`;
        const [row] = await tx`select records from mq_groups where key = 1 for update`;
        const merged = mergeGroupRecords(this.valid(row?.records), this.known, records);
        // An object, not an array: Bun would send a JS array as a PostgreSQL array.
        await tx`insert into mq_groups (key, records) values (1, (${{ groups: merged }}::jsonb)->'groups')
                 on conflict (key) do update set records = excluded.records`;
        await notify(tx, this.serverId, { kind: "groups" });
      });
      this.known = records;
    });
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

/** A named group is one record; a private one (group null) is its member's own. */
function groupKey(r: GroupRecord, member: number): string {
  return r.group === null ? `${r.topic}\0#${member}` : `${r.topic}\0${r.group}`;
}

/**
 * `stored` with the members that are in `after` and not in `before` added (their group's
 * options as `after` has them) and those in `before` and not in `after` removed; a group
 * left without members goes. What other servers stored meanwhile stays.
 */
export function mergeGroupRecords(stored: GroupRecord[], before: GroupRecord[], after: GroupRecord[]): GroupRecord[] {
  const memberships = (records: GroupRecord[]) => {
    const out = new Map<string, { record: GroupRecord; member: number }>();
    for (const r of records) for (const member of r.members) out.set(`${groupKey(r, member)}\0${member}`, { record: r, member });
    return out;
  };
  const was = memberships(before);
  const now = memberships(after);
  const groups = new Map<string, GroupRecord>();
  for (const r of stored) groups.set(groupKey(r, r.members[0]!), { ...r, members: [...r.members] });
  for (const [key, { record, member }] of was) {
    if (now.has(key)) continue;
    const g = groups.get(groupKey(record, member));
    if (g) g.members = g.members.filter((m) => m !== member);
  }
  for (const [key, { record, member }] of now) {
    if (was.has(key)) continue;
    const gk = groupKey(record, member);
    const g = groups.get(gk);
    const { members: _, ...options } = record;
    if (!g || g.members.length === 0) groups.set(gk, { ...options, members: [member] });
    else {
      // The options of the group as this server joined it (one group, one policy: the server checked them).
      const { maxDeliver, deadLetter } = record;
      const updated: GroupRecord = { ...g, members: g.members.includes(member) ? g.members : [...g.members, member] };
      delete updated.maxDeliver;
      delete updated.deadLetter;
      if (maxDeliver !== undefined) updated.maxDeliver = maxDeliver;
      if (deadLetter !== undefined) updated.deadLetter = deadLetter;
      groups.set(gk, updated);
    }
  }
  return [...groups.values()].filter((g) => g.members.length > 0);
}
