/**
 * PgTopicStore: the topics of `mq_topics` (schema.ts), each opened once per store as a
 * PgTopicLog and a PgSubscriberIndex. A topic made here notifies `topic` in the statement
 * that inserts it; one made by another server is found by `open` (its row is there).
 * Holds no files. The SQL pool is the caller's: `close` leaves it open.
 */
import type { SQL } from "bun";
import { OneOpenAtATime } from "../open-once.ts";
import type { SubscriberIndex, TopicLog, TopicStore } from "../types.ts";
import { encodeEvent } from "./events.ts";
import { EVENTS_CHANNEL } from "./schema.ts";
import { PgSubscriberIndex } from "./subscriber-index.ts";
import { PgTopicLog } from "./topic-log.ts";

interface OpenTopic {
  log: PgTopicLog;
  subscribers: PgSubscriberIndex;
}

export class PgTopicStore implements TopicStore {
  private readonly opened = new Map<string, OpenTopic>();
  /** Opens under way: a second open of the same topic meanwhile waits for the first. */
  private readonly opening = new OneOpenAtATime();

  constructor(
    private readonly sql: SQL,
    private readonly serverId: string,
    private readonly options: { synchronousCommit: boolean },
  ) {}

  async topics(): Promise<string[]> {
    const rows = await this.sql`select name from mq_topics`;
    // Sorted here: by code unit, as the file store sorts (a database collation may differ).
    return rows.map((r: { name: string }) => r.name).sort();
  }

  async open(topic: string, create: boolean): Promise<{ log: TopicLog; subscribers: SubscriberIndex; created: boolean } | null> {
    const known = this.opened.get(topic);
    if (known) return { ...known, created: false };
    return this.opening.run(topic, () => this.openOrCreate(topic, create), () => this.open(topic, create));
  }

  private async openOrCreate(topic: string, create: boolean): Promise<(OpenTopic & { created: boolean }) | null> {
    let created = false;
    let rows = create
      ? await this.sql`
          with ins as (
            insert into mq_topics (name, created_at) values (${topic}, ${Date.now()})
            on conflict (name) do nothing returning id, first_seq, next_seq
          )
          select id, first_seq, next_seq, pg_notify(${EVENTS_CHANNEL}, ${encodeEvent(this.serverId, { kind: "topic", topic })}) from ins`
      : [];
    if (rows.length > 0) created = true;
    else rows = await this.sql`select id, first_seq, next_seq from mq_topics where name = ${topic}`;
    if (rows.length === 0) return null;
    const id = Number(rows[0].id);
    const cursors = created ? [] : await PgSubscriberIndex.load(this.sql, id);
    const entry: OpenTopic = {
      log: new PgTopicLog(this.sql, id, topic, this.serverId, this.options, { firstSeq: Number(rows[0].first_seq), nextSeq: Number(rows[0].next_seq) }),
      subscribers: new PgSubscriberIndex(this.sql, id, topic, this.serverId, cursors),
    };
    this.opened.set(topic, entry);
    return { ...entry, created };
  }

  /** Waits for the appends in flight and writes the pending cursor moves of every open topic. */
  async close(): Promise<void> {
    const open = [...this.opened.values()];
    this.opened.clear();
    await Promise.all(open.flatMap(({ log, subscribers }) => [log.close(), subscribers.close()]));
  }
}
