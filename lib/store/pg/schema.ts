/**
 * The PostgreSQL store's tables (`mq server --store postgres://…`): several servers share one
 * database. Created at open when absent, under an advisory lock so that servers starting
 * together do not race; `mq_meta.schema` names the version, and a database of another
 * version is refused rather than guessed at.
 *
 * Seqs: a topic's `next_seq` row is updated in the same transaction as the rows it numbers,
 * so appends from several servers to one topic serialize on that row lock and commit in seq
 * order (a reader never sees seq n+1 before n). Times are ms since the epoch.
 */
import type { SQL } from "bun";

export const SCHEMA_VERSION = 1;

/** Any number, fixed: the advisory lock held while the schema is created. */
const SCHEMA_LOCK = 0x6d710001;

/** The channel of the store's events (lib/store/pg/events.ts): wake-up hints, never the data itself. */
export const EVENTS_CHANNEL = "mq_events";

/**
 * An append batch with message ids to keep once (PgTopicLog.appendOnce): rows whose
 * `since` is not null are not stored when the topic holds their msg_id appended at or
 * after it; they are answered with that message's seq (in `dup_index`, 1-based, and
 * `dup_seq`), the others are stored under dense seqs as by the one-statement append.
 * A function because the check must see what the previous holder of the topic's row lock
 * committed: in one statement every read uses the snapshot taken before the lock was
 * granted, while each statement of a (volatile) function takes a new one. So: the lock
 * first, then the check, then next_seq, the rows and the event — one round trip.
 */
const APPEND_ONCE_FUNCTION = `
create or replace function mq_append_once(
  p_topic bigint, p_times bigint[], p_msg_ids text[], p_headers text[], p_expires bigint[], p_since bigint[],
  p_payloads bytea, p_starts int[], p_lengths int[], p_channel text, p_event_prefix text, p_event_suffix text, p_sync text,
  out o_next_seq bigint, out o_first_seq bigint, out dup_index bigint[], out dup_seq bigint[])
language plpgsql
as $$
declare
  fresh int;
begin
  perform set_config('synchronous_commit', p_sync, true);
  select t.next_seq, t.first_seq into o_next_seq, o_first_seq from mq_topics t where t.id = p_topic for update;
  if not found then return; end if;
  -- One probe of the msg_id index per id, whatever the statistics say: the subquery's
  -- aggregate keeps it per row (no join of the topic's rows), and min(seq + 0), time + 0 are
  -- served by no other index. (A join on msg_id = any(…) was planned as a scan of the
  -- topic's rows while the table had no statistics: 45 ms a batch at 25,000 rows.)
  select coalesce(array_agg(m.i order by m.i), '{}'), coalesce(array_agg(s.seq order by m.i), '{}') into dup_index, dup_seq
  from unnest(p_msg_ids, p_since) with ordinality as m(msg_id, since, i)
  cross join lateral (
    select min(x.seq + 0) as seq from mq_messages x
    where x.topic_id = p_topic and x.msg_id = m.msg_id and x.time + 0 >= m.since
  ) s
  where m.since is not null and s.seq is not null;
  fresh := cardinality(p_times) - cardinality(dup_index);
  if fresh = 0 then return; end if;
  update mq_topics t set next_seq = t.next_seq + fresh where t.id = p_topic returning t.next_seq, t.first_seq into o_next_seq, o_first_seq;
  insert into mq_messages (topic_id, seq, time, msg_id, headers, expires_at, payload)
  select p_topic, o_next_seq - fresh + row_number() over (order by m.i) - 1, m.time, m.msg_id, m.headers::jsonb, m.expires_at,
    substring(p_payloads from m.start for m.length)
  from unnest(p_times, p_msg_ids, p_headers, p_expires, p_starts, p_lengths) with ordinality as m(time, msg_id, headers, expires_at, start, length, i)
  where m.i <> all(dup_index);
  perform pg_notify(p_channel, p_event_prefix || (o_next_seq - 1) || p_event_suffix);
end $$;
`;

export const DDL = `
create table if not exists mq_meta (
  key text primary key,
  value text not null
);
create table if not exists mq_topics (
  id bigint generated always as identity primary key,
  name text not null unique,
  next_seq bigint not null default 1,   -- the seq the next append gets
  first_seq bigint not null default 1,  -- the oldest seq still stored (raised by retention)
  created_at bigint not null
);
create table if not exists mq_messages (
  topic_id bigint not null references mq_topics(id) on delete cascade,
  seq bigint not null,
  time bigint not null,
  msg_id text,
  headers jsonb,
  expires_at bigint,
  payload bytea not null,
  primary key (topic_id, seq)
);
create index if not exists mq_messages_msg_id on mq_messages (topic_id, msg_id) where msg_id is not null;
create index if not exists mq_messages_time on mq_messages (topic_id, time);
create table if not exists mq_subscribers (
  topic_id bigint not null references mq_topics(id) on delete cascade,
  client_id bigint not null,
  cursor bigint not null,
  primary key (topic_id, client_id)
);
create index if not exists mq_subscribers_client on mq_subscribers (client_id);
create sequence if not exists mq_client_ids start 1;
create table if not exists mq_clients (
  id bigint primary key,
  owner text not null
);
create index if not exists mq_clients_owner on mq_clients (owner);
create table if not exists mq_brokers (
  identity text primary key,
  secret text not null
);
create table if not exists mq_consumers (
  client_id bigint not null,
  filter text not null,
  record jsonb not null,
  primary key (client_id, filter)
);
create table if not exists mq_scheduled (
  n bigint generated always as identity primary key,
  topic text not null,
  due bigint not null,
  data bytea not null,
  msg_id text,
  headers jsonb,
  ttl_ms bigint
);
create table if not exists mq_groups (
  key int primary key default 1 check (key = 1),
  records jsonb not null
);
-- Queue groups shared by servers (group-claims.ts): the next seq no server has claimed yet,
-- and one row per seq claimed and not yet acknowledged.
create table if not exists mq_group_cursors (
  topic text not null,
  grp text not null,
  next_seq bigint not null,
  primary key (topic, grp)
);
create table if not exists mq_group_claims (
  topic text not null,
  grp text not null,
  seq bigint not null,
  server text,               -- the serverId delivering it; null: to deliver again
  deliveries int not null,   -- counted toward --max-deliver
  primary key (topic, grp, seq)
);
${APPEND_ONCE_FUNCTION}`;

/** Creates the tables when absent; refuses a database made by another schema version. */
export async function migrate(sql: SQL): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${SCHEMA_LOCK})`;
    await tx.unsafe(DDL);
    const rows = await tx`select value from mq_meta where key = 'schema'`;
    if (rows.length === 0) {
      await tx`insert into mq_meta (key, value) values ('schema', ${String(SCHEMA_VERSION)})`;
    } else if (rows[0].value !== String(SCHEMA_VERSION)) {
      throw new Error(`the database holds mq schema version ${rows[0].value}, this mq uses ${SCHEMA_VERSION}: use another database or an mq of that version`);
    }
  });
}
