/**
 * PgTopicLog: one topic's messages as rows of `mq_messages` (schema.ts), shared by every
 * server on the database. Seqs are assigned by the database: an append batch is one
 * statement (so one transaction; several for a batch above MAX_STATEMENT_BYTES) that raises
 * the topic's `next_seq`, inserts the batch's rows numbered below it and notifies `appended`. The row lock on the topic serializes the
 * servers writing one topic, so batches commit in seq order and seqs stay dense (no holes:
 * nothing is ever lost, `lost` is 0). The extent (firstSeq, nextSeq) is kept in memory,
 * moved by this server's appends and trims and re-read by `refresh()`.
 */
import { type IdRun, idAt } from "../id-run.ts";
import type { SQL } from "bun";
import { GroupCommit } from "../group-commit.ts";
import type { AppendFields, MsgIdRecord, RetentionPolicy, StoredMessage, TopicLog } from "../types.ts";
import { encodeEvent } from "./events.ts";
import { EVENTS_CHANNEL } from "./schema.ts";

interface PendingAppend {
  data: Uint8Array;
  time: number;
  fields: AppendFields | undefined;
  /** appendOnce: not stored when the topic holds its msgId appended at or after this time. */
  since?: number;
}

export interface PgTopicLogOptions {
  /** false: `synchronous_commit off` for appends (acknowledged before PostgreSQL flushes its WAL). */
  synchronousCommit: boolean;
}

/**
 * jsonb cannot hold the character U+0000, which a header value may: such headers are stored
 * as `{"=": base64 of their JSON}` ("=" is never a header key, lib/wire/headers.ts).
 */
const NUL_HEADERS = "=";

function headersJson(headers: Record<string, string>): string {
  const json = JSON.stringify(headers);
  return json.includes("\\u0000") ? JSON.stringify({ [NUL_HEADERS]: Buffer.from(json).toString("base64") }) : json;
}

/** Payload bytes per append statement (more in one batch go in several). */
export const MAX_STATEMENT_BYTES = 16 * 1024 * 1024;

/** Bigger than any seq, count or byte total; PostgreSQL bigints hold it. */
const NO_LIMIT = Number.MAX_SAFE_INTEGER;

export class PgTopicLog implements TopicLog {
  private first: number;
  private next: number;
  private readonly commits: GroupCommit<PendingAppend, number>;
  /** The `appended` event's text around its lastSeq (encodeEvent decides the format). */
  private readonly eventPrefix: string;
  private readonly eventSuffix: string;
  private closed = false;

  /** PostgreSQL loses nothing it committed. */
  readonly lost = 0;

  /** `extent`: the topic row's first_seq and next_seq as read at open. */
  constructor(
    private readonly sql: SQL,
    /** mq_topics.id */
    readonly topicId: number,
    readonly topic: string,
    serverId: string,
    private readonly options: PgTopicLogOptions,
    extent: { firstSeq: number; nextSeq: number },
  ) {
    this.first = extent.firstSeq;
    this.next = extent.nextSeq;
    this.commits = new GroupCommit((batch) => this.commit(batch));
    const marker = 1234567;
    const sample = encodeEvent(serverId, { kind: "appended", topic, lastSeq: marker });
    const at = sample.indexOf(` ${marker} `);
    if (at < 0) throw new Error(`cannot place lastSeq in the appended event ${JSON.stringify(sample)}`);
    this.eventPrefix = sample.slice(0, at + 1);
    this.eventSuffix = sample.slice(at + 1 + String(marker).length);
  }

  get firstSeq(): number {
    return this.first;
  }

  get nextSeq(): number {
    return this.next;
  }

  get lastSeq(): number {
    return this.next > this.first ? this.next - 1 : 0;
  }

  /** Seqs are dense from first_seq to next_seq - 1 (batches commit whole and in order). */
  get count(): number {
    return this.next - this.first;
  }

  append(data: Uint8Array, time: number, fields?: AppendFields): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`topic ${this.topic}: the log is closed`));
    return this.commits.add({ data, time, fields });
  }

  /** A publish batch is one entry of the group commit: its rows go in the same statement. */
  appendBatch(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids?: IdRun): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error(`topic ${this.topic}: the log is closed`));
    const items = new Array<PendingAppend>(data.length);
    // A run of ids (lib/store/id-run.ts): the rows keep strings, so each gets its id here.
    for (let i = 0; i < data.length; i++) items[i] = { data: data[i]!, time, fields: ids ? { ...fields[i], msgId: idAt(ids, i) } : fields[i] };
    return this.commits.addMany(items);
  }

  /**
   * appendBatch, except that a message whose msgId the topic holds appended at or after
   * `since` is not stored again: it gets that message's seq, and its index is in
   * `duplicates`. Checked under the topic's row lock (mq_append_once, schema.ts), so one id
   * appended at once through two servers is stored once. A statement of such a batch
   * reports a duplicate's seq negated (seqs are >= 1), read back here.
   */
  async appendOnce(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids: IdRun | undefined, since: number): Promise<{ seqs: number[]; duplicates: number[] }> {
    if (this.closed) throw new Error(`topic ${this.topic}: the log is closed`);
    const items = new Array<PendingAppend>(data.length);
    for (let i = 0; i < data.length; i++) {
      const f = ids ? { ...fields[i], msgId: idAt(ids, i) } : fields[i];
      items[i] = { data: data[i]!, time, fields: f, since: f?.msgId !== undefined ? since : undefined };
    }
    const seqs = await this.commits.addMany(items);
    const duplicates: number[] = [];
    for (let i = 0; i < seqs.length; i++) {
      if (seqs[i]! > 0) continue;
      seqs[i] = -seqs[i]!;
      duplicates.push(i);
    }
    return { seqs, duplicates };
  }

  /** One batch, one statement (unless its payloads are huge). */
  private async commit(batch: PendingAppend[]): Promise<number[]> {
    // Payloads above MAX_STATEMENT_BYTES go as several statements, one after the other (each
    // a batch of its own: its transaction, its event): an array parameter must stay below
    // PostgreSQL's 1 GB per value, and one huge statement would hold the row lock long.
    const seqs: number[] = [];
    for (let start = 0; start < batch.length; ) {
      let end = start + 1;
      let once = batch[start]!.since !== undefined;
      for (let bytes = batch[start]!.data.length; end < batch.length && bytes + batch[end]!.data.length <= MAX_STATEMENT_BYTES; end++) {
        bytes += batch[end]!.data.length;
        if (batch[end]!.since !== undefined) once = true;
      }
      const part = start === 0 && end === batch.length ? batch : batch.slice(start, end);
      if (once) for (const seq of await this.commitOnceStatement(part)) seqs.push(seq);
      else {
        const first = await this.commitStatement(part);
        for (let seq = first; seq < first + end - start; seq++) seqs.push(seq);
      }
      start = end;
    }
    return seqs;
  }

  /** The columns of a statement's rows (arrays, and the payloads as one bytea cut by offset and length). */
  private columns(batch: PendingAppend[]) {
    const n = batch.length;
    const times = new Array<number>(n);
    const msgIds = new Array<string | null>(n);
    const headers = new Array<string | null>(n);
    const expires = new Array<number | null>(n);
    const payloads = new Array<Uint8Array>(n);
    const starts = new Array<number>(n);
    const lengths = new Array<number>(n);
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const { data, time, fields } = batch[i]!;
      times[i] = time;
      payloads[i] = data;
      starts[i] = bytes + 1; // substring counts from 1
      lengths[i] = data.length;
      bytes += data.length;
      msgIds[i] = fields?.msgId ?? null;
      headers[i] = fields?.headers !== undefined ? headersJson(fields.headers) : null;
      expires[i] = fields?.expiresAt ?? null;
    }
    return { times, msgIds, headers, expires, payload: Buffer.concat(payloads, bytes), starts, lengths };
  }

  /**
   * Commits appends some of which are kept once (`since`) through mq_append_once (schema.ts):
   * one round trip. Returns each one's seq, negated for one not stored (its msgId was).
   */
  private async commitOnceStatement(batch: PendingAppend[]): Promise<number[]> {
    const n = batch.length;
    const { times, msgIds, headers, expires, payload, starts, lengths } = this.columns(batch);
    const since = new Array<number | null>(n);
    for (let i = 0; i < n; i++) since[i] = batch[i]!.since ?? null;
    const rows = await this.sql`
      select o_next_seq, o_first_seq, dup_index, dup_seq from mq_append_once(${this.topicId}, ${times}::bigint[], ${msgIds}::text[],
        ${headers}::text[], ${expires}::bigint[], ${since}::bigint[], ${payload}::bytea, ${starts}::int[], ${lengths}::int[],
        ${EVENTS_CHANNEL}, ${this.eventPrefix}, ${this.eventSuffix}, ${this.options.synchronousCommit ? "on" : "off"})`;
    if (rows.length === 0 || rows[0].o_next_seq === null) throw new Error(`topic ${this.topic} is not in mq_topics`);
    const nextSeq = Number(rows[0].o_next_seq);
    this.moveExtent(Number(rows[0].o_first_seq), nextSeq);
    const dupIndex: Array<string | number> = rows[0].dup_index;
    const dupSeq: Array<string | number> = rows[0].dup_seq;
    const seqs = new Array<number>(n);
    let seq = nextSeq - (n - dupIndex.length);
    for (let i = 0, d = 0; i < n; i++) {
      if (d < dupIndex.length && Number(dupIndex[d]) === i + 1) seqs[i] = -Number(dupSeq[d++]);
      else seqs[i] = seq++;
    }
    return seqs;
  }

  /**
   * Commits appends in one statement; returns the first one's seq (the others follow). The
   * update takes the topic's row lock and hands out the seqs (the n below the new next_seq),
   * the insert numbers the rows with them (arrays, so any count is one statement of nine
   * parameters), pg_notify is delivered at commit. The payloads go as ONE bytea, cut by
   * offset and length in SQL: a bytea[] parameter is quoted element by element in the
   * client, which cost twice the CPU and time per statement (docs/benchmarks.md).
   */
  private async commitStatement(batch: PendingAppend[]): Promise<number> {
    const n = batch.length;
    const { times, msgIds, headers, expires, payload, starts, lengths } = this.columns(batch);
    // `set_config(…, true)` is `set local`: this statement's transaction commits without
    // waiting for the WAL flush, in the same round trip.
    const syncCommit = this.options.synchronousCommit ? "on" : "off";
    const rows = await this.sql`
      with t as (
        update mq_topics set next_seq = next_seq + ${n} where id = ${this.topicId} returning next_seq, first_seq
      ), ins as (
        insert into mq_messages (topic_id, seq, time, msg_id, headers, expires_at, payload)
        select ${this.topicId}, t.next_seq - ${n} + m.i - 1, m.time, m.msg_id, m.headers::jsonb, m.expires_at,
          substring(${payload}::bytea from m.start for m.length)
        from t, unnest(${times}::bigint[], ${msgIds}::text[], ${headers}::text[], ${expires}::bigint[], ${starts}::int[], ${lengths}::int[])
          with ordinality as m(time, msg_id, headers, expires_at, start, length, i)
      )
      select next_seq, first_seq,
        pg_notify(${EVENTS_CHANNEL}, ${this.eventPrefix} || (next_seq - 1) || ${this.eventSuffix}),
        set_config('synchronous_commit', ${syncCommit}, true)
      from t`;
    if (rows.length === 0) throw new Error(`topic ${this.topic} is not in mq_topics`);
    const nextSeq = Number(rows[0].next_seq);
    this.moveExtent(Number(rows[0].first_seq), nextSeq);
    return nextSeq - n;
  }

  /** The extent only grows at the end and shrinks at the start: stale reads never move it back. */
  private moveExtent(firstSeq: number, nextSeq: number): void {
    if (nextSeq > this.next) this.next = nextSeq;
    if (firstSeq > this.first) this.first = Math.min(firstSeq, this.next);
  }

  async refresh(): Promise<void> {
    const rows = await this.sql`select first_seq, next_seq from mq_topics where id = ${this.topicId}`;
    if (rows.length > 0) this.moveExtent(Number(rows[0].first_seq), Number(rows[0].next_seq));
  }

  async recentMsgIds(since: number, limit: number): Promise<MsgIdRecord[]> {
    const rows = await this.sql`
      select msg_id, seq, time from mq_messages
      where topic_id = ${this.topicId} and time >= ${since} and msg_id is not null
      order by seq desc limit ${Math.min(limit, NO_LIMIT)}`;
    const out = new Array<MsgIdRecord>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[rows.length - 1 - i];
      out[i] = { msgId: r.msg_id, seq: Number(r.seq), time: Number(r.time) };
    }
    return out;
  }

  async findMsgIds(msgIds: string[]): Promise<MsgIdRecord[]> {
    if (msgIds.length === 0) return [];
    // One probe of the msg_id index per id (the lateral subquery), whatever the statistics:
    // `msg_id = any(…)` was planned as a scan of all the topic's rows (5 ms for 256 ids among
    // 25,000 rows and growing with them, against 1.5 ms this way); `seq + 0` keeps the
    // (topic_id, seq) index out of the order by.
    const rows = await this.sql`
      select m.msg_id, s.seq, s.time from (select distinct unnest(${msgIds}::text[]) as msg_id) m
      cross join lateral (
        select x.seq, x.time from mq_messages x
        where x.topic_id = ${this.topicId} and x.msg_id = m.msg_id
        order by x.seq + 0 desc limit 1
      ) s`;
    return rows.map((r: { msg_id: string; seq: string; time: string }) => ({ msgId: r.msg_id, seq: Number(r.seq), time: Number(r.time) }));
  }

  /**
   * One select: at most maxCount rows from `from` on, then those whose preceding bytes are
   * below maxBytes (and always the first); payloads of the rows cut are not sent.
   */
  async read(from: number, maxCount: number, maxBytes: number): Promise<StoredMessage[]> {
    if (maxCount <= 0) return [];
    const rows = await this.sql`
      select seq, time, headers, expires_at, payload from (
        select seq, time, headers, expires_at, payload,
          row_number() over w as n,
          sum(octet_length(payload)) over w - octet_length(payload) as before
        from mq_messages
        where topic_id = ${this.topicId} and seq >= ${from}
        window w as (order by seq rows unbounded preceding)
        order by seq limit ${Math.min(maxCount, NO_LIMIT)}
      ) m
      where n = 1 or before < ${Math.min(maxBytes, NO_LIMIT)}
      order by seq`;
    const out = new Array<StoredMessage>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      const p: Buffer = r.payload;
      const m: StoredMessage = { seq: Number(r.seq), time: Number(r.time), data: new Uint8Array(p.buffer, p.byteOffset, p.byteLength) };
      if (r.headers !== null) m.headers = r.headers[NUL_HEADERS] === undefined ? r.headers : JSON.parse(Buffer.from(r.headers[NUL_HEADERS], "base64").toString());
      if (r.expires_at !== null) m.expiresAt = Number(r.expires_at);
      out[i] = m;
    }
    return out;
  }

  async seqAtTime(time: number): Promise<number> {
    // None that late: the stored next_seq (this server's may be behind another's appends).
    const [row] = await this.sql`
      select coalesce(
        (select seq from mq_messages where topic_id = ${this.topicId} and time >= ${time} order by time, seq limit 1),
        (select next_seq from mq_topics where id = ${this.topicId})
      ) as seq`;
    return Number(row.seq);
  }

  /**
   * Deletes the rows below the first seq to keep: below `before`, and below both the first
   * message young enough and the first of the newest messages that fit in maxBytes. The
   * topic's row is locked meanwhile, so no append commits between the delete and the new
   * first_seq.
   */
  async trim(before: number, policy: RetentionPolicy, now: number): Promise<number> {
    let keepFrom = Math.min(before, NO_LIMIT);
    if (keepFrom <= this.first) return 0;
    let byAge = NO_LIMIT;
    if (Number.isFinite(policy.maxAgeMs)) {
      const young = await this.sql`
        select seq from mq_messages where topic_id = ${this.topicId} and time >= ${now - policy.maxAgeMs}
        order by time, seq limit 1`;
      if (young.length > 0) byAge = Number(young[0].seq);
    } else byAge = 0;
    let bySize = 0;
    if (Number.isFinite(policy.maxBytes)) {
      const fits = await this.sql`
        select min(seq) as seq from (
          select seq, sum(octet_length(payload)) over (order by seq desc rows unbounded preceding) as newer
          from mq_messages where topic_id = ${this.topicId}
        ) m where newer <= ${Math.max(0, policy.maxBytes)}`;
      bySize = fits[0].seq === null ? NO_LIMIT : Number(fits[0].seq);
    }
    keepFrom = Math.min(keepFrom, Math.max(byAge, bySize));
    if (keepFrom <= this.first) return 0;
    const { deleted, firstSeq, nextSeq } = await this.sql.begin(async (tx) => {
      const [topic] = await tx`select next_seq from mq_topics where id = ${this.topicId} for update`;
      const cut = Math.min(keepFrom, Number(topic.next_seq));
      const gone = await tx`delete from mq_messages where topic_id = ${this.topicId} and seq < ${cut}`;
      const [moved] = await tx`
        update mq_topics set first_seq = greatest(first_seq, ${cut}) where id = ${this.topicId} returning first_seq, next_seq`;
      return { deleted: gone.count as number, firstSeq: Number(moved.first_seq), nextSeq: Number(moved.next_seq) };
    });
    this.moveExtent(firstSeq, nextSeq);
    return deleted;
  }

  /** Waits for the appends in flight; later appends are refused. */
  async close(): Promise<void> {
    this.closed = true;
    await this.commits.idle();
  }
}
