/**
 * Queue groups shared by the servers of one PostgreSQL database (issue 12): which server
 * delivers which seq of a group, so that each message goes to ONE member across servers.
 *
 * `mq_group_cursors.next_seq` is the first seq no server has claimed; a claim moves it with one
 * `update … returning` (the row lock orders servers, as `mq_topics.next_seq` does appends) and
 * writes one `mq_group_claims` row per seq, owned by the claiming server, in the same
 * statement. An ack deletes the row; a nak clears its server (any server may claim it again,
 * its `deliveries` kept toward --max-deliver). The group's floor is its lowest claimed seq, or
 * `next_seq` when none is.
 *
 * A server is alive while it holds the advisory lock `server:ID` (SharedStore.holds, one
 * session for the life of the store): PostgreSQL frees a dead session's locks, so the claims
 * of a server that died are claimed again by the others (at least once: its member may have
 * processed them without its ack reaching the database).
 */
import type { SQL } from "bun";
import type { GroupClaim, GroupClaims, SharedStore } from "../types.ts";

export type { GroupClaim } from "../types.ts";

/** The SharedStore.holds job that says this server is alive. */
export function liveJob(serverId: string): string {
  return `server:${serverId}`;
}

export class PgGroupClaims implements GroupClaims {
  private constructor(
    private readonly sql: SQL,
    private readonly shared: SharedStore,
    readonly serverId: string,
  ) {}

  /** Takes this server's liveness lock (held for the life of `shared`). */
  static async open(sql: SQL, shared: SharedStore): Promise<PgGroupClaims> {
    if (!(await shared.holds(liveJob(shared.serverId)))) throw new Error(`cannot take the liveness lock of server ${shared.serverId} on the PostgreSQL store`);
    return new PgGroupClaims(sql, shared, shared.serverId);
  }

  /**
   * True while this server holds its liveness lock; taken again when its connection was lost
   * (meanwhile other servers may have claimed what it held: delivered twice, never lost).
   */
  alive(): Promise<boolean> {
    return this.shared.holds(liveJob(this.serverId));
  }

  async start(topic: string, grp: string, firstSeq: number): Promise<void> {
    await this.sql`insert into mq_group_cursors (topic, grp, next_seq) values (${topic}, ${grp}, ${firstSeq}) on conflict do nothing`;
  }

  /**
   * Up to `count` seqs of group `grp` on `topic` for this server: first those to deliver again
   * (naked, or claimed by a server that died), lowest first — unless `again` is false (the
   * caller knows of none) — then new ones from max(next_seq, `firstSeq`) up to `lastSeq`. A
   * group never claimed starts at `firstSeq`.
   */
  async claim(topic: string, grp: string, count: number, firstSeq: number, lastSeq: number, again = true): Promise<GroupClaim[]> {
    if (!Number.isSafeInteger(count) || count < 1) throw new Error(`claim: count must be a positive integer, got ${count}`);
    // Two statements, each atomic on its own (no transaction: one round trip each): a claim
    // that dies between them leaves rows of this server, taken over by others when it is dead.
    const claims = again ? await this.claimAgain(topic, grp, count) : [];
    const room = count - claims.length;
    if (room <= 0 || lastSeq < firstSeq) return claims;
    let range: { first: number; next: number } | null;
    try {
      range = await this.claimNew(topic, grp, room, firstSeq, lastSeq);
      if (!range) {
        await this.start(topic, grp, firstSeq); // a group never claimed starts at firstSeq
        range = await this.claimNew(topic, grp, room, firstSeq, lastSeq);
      }
    } catch (err) {
      // What was claimed again is this server's now: delivered, not left stranded; the new ones next time.
      if (claims.length > 0) return claims;
      throw err;
    }
    for (let seq = range?.first ?? 0; seq < (range?.next ?? 0); seq++) claims.push({ seq, deliveries: 1 });
    return claims;
  }

  /** Up to `count` seqs given back (server null) or held by a dead server, for this server, counted. */
  private async claimAgain(topic: string, grp: string, count: number): Promise<GroupClaim[]> {
    const rows = await this.sql`
      update mq_group_claims c set server = ${this.serverId}, deliveries = c.deliveries + 1
      where (c.topic, c.grp, c.seq) in (
        select topic, grp, seq from mq_group_claims x
        where x.topic = ${topic} and x.grp = ${grp}
          and (x.server is null or (x.server <> ${this.serverId} and not exists (
            select 1 from pg_locks l
            where l.locktype = 'advisory' and l.granted and l.objsubid = 1
              and l.classid = oid((hashtext('mq:server:' || x.server)::bigint >> 32) & 4294967295)
              and l.objid = oid(hashtext('mq:server:' || x.server)::bigint & 4294967295))))
        order by seq limit ${count} for update skip locked)
      returning c.seq, c.deliveries`;
    const claims: GroupClaim[] = rows.map((r: { seq: unknown; deliveries: unknown }) => ({ seq: Number(r.seq), deliveries: Number(r.deliveries) }));
    return claims.sort((x, y) => x.seq - y.seq); // `update … returning` keeps no order
  }

  /**
   * Up to `room` new seqs from the cursor (at least `firstSeq`) to `lastSeq`: the cursor moves
   * and the claim rows are written in one statement (the cursor's row lock orders servers).
   * Null when the group has no cursor yet.
   */
  private async claimNew(topic: string, grp: string, room: number, firstSeq: number, lastSeq: number): Promise<{ first: number; next: number } | null> {
    const [range] = await this.sql`
      with old as (select greatest(next_seq, ${firstSeq}) as first from mq_group_cursors where topic = ${topic} and grp = ${grp} for update),
      moved as (
        update mq_group_cursors c set next_seq = greatest(old.first, least(old.first + ${room}, ${lastSeq + 1}))
        from old where c.topic = ${topic} and c.grp = ${grp}
        returning old.first as first, c.next_seq as next),
      claimed as (
        insert into mq_group_claims (topic, grp, seq, server, deliveries)
        select ${topic}, ${grp}, s, ${this.serverId}, 1 from moved, generate_series(moved.first, moved.next - 1) s)
      select first, next from moved`;
    return range ? { first: Number(range.first), next: Number(range.next) } : null;
  }

  /** Acknowledges `seqs` this server holds (deleted); returns those it held. */
  async ack(topic: string, grp: string, seqs: number[]): Promise<number[]> {
    if (seqs.length === 0) return [];
    const rows = await this.sql`
      delete from mq_group_claims
      where topic = ${topic} and grp = ${grp} and server = ${this.serverId} and seq = any(string_to_array(${seqs.join(",")}, ',')::bigint[])
      returning seq`;
    return rows.map((r: { seq: unknown }) => Number(r.seq));
  }

  /**
   * `seqs` this server holds go back for any server to deliver again. `counted` false (never
   * sent, or only the local broker's session closed): that delivery does not count. Those at
   * `maxDeliver` deliveries stay this server's and are returned: it dead-letters them, then acks them.
   */
  async giveBack(topic: string, grp: string, seqs: number[], counted: boolean, maxDeliver: number | undefined): Promise<GroupClaim[]> {
    if (seqs.length === 0) return [];
    const limit = counted && maxDeliver !== undefined ? maxDeliver : 2 ** 31 - 1;
    const rows = await this.sql`
      update mq_group_claims
      set server = case when deliveries >= ${limit} then server else null end,
          deliveries = case when ${counted} or deliveries = 0 then deliveries else deliveries - 1 end
      where topic = ${topic} and grp = ${grp} and server = ${this.serverId} and seq = any(string_to_array(${seqs.join(",")}, ',')::bigint[])
      returning seq, deliveries, server`;
    return rows.filter((r: { server: unknown }) => r.server !== null).map((r: { seq: unknown; deliveries: unknown }) => ({ seq: Number(r.seq), deliveries: Number(r.deliveries) }));
  }

  /** The group's ack floor across servers: its lowest unacknowledged seq; `fallback` for a group never claimed. */
  async floor(topic: string, grp: string, fallback: number): Promise<number> {
    const [row] = await this.sql`
      select coalesce((select min(seq) from mq_group_claims where topic = ${topic} and grp = ${grp}),
                      (select next_seq from mq_group_cursors where topic = ${topic} and grp = ${grp})) as floor`;
    return row.floor === null ? fallback : Number(row.floor);
  }

  /** Forgets the group (its last member on every server left). */
  async forget(topic: string, grp: string): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`delete from mq_group_claims where topic = ${topic} and grp = ${grp}`;
      await tx`delete from mq_group_cursors where topic = ${topic} and grp = ${grp}`;
    });
  }

  /** Nothing of its own to close: the liveness lock ends with the shared store's session. */
  async close(): Promise<void> {}
}
