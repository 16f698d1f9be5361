/**
 * PgTopicLog.appendOnce (lib/store/pg/topic-log.ts, mq_append_once in schema.ts): a message
 * id appended at once through two stores ("servers") on one database is stored once, both
 * callers get its seq, and seqs stay dense; the window is a time (`since`); ids of plain
 * appends are not checked. On a real PostgreSQL (tests/pg-kit.ts).
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { migrate } from "../../lib/store/pg/schema.ts";
import { PgTopicStore } from "../../lib/store/pg/topic-store.ts";
import type { TopicLog } from "../../lib/store/types.ts";
import { noPostgres, postgresForTests } from "../pg-kit.ts";
import { payload } from "./topic-log.contract.ts";

const ALL = Number.MAX_SAFE_INTEGER;

/** Two stores, each on its own pool, on a fresh migrated database; `reopen(i)` gives store i a new pool and store. */
async function twoStores(url: string) {
  const pools: SQL[] = [];
  const stores: PgTopicStore[] = [];
  const open = (i: number) => {
    pools[i] = new SQL(url, { max: 4 });
    stores[i] = new PgTopicStore(pools[i]!, `s${i}`, { synchronousCommit: true });
  };
  open(0);
  open(1);
  await migrate(pools[0]!);
  const log = async (i: number, topic = "t"): Promise<TopicLog> => (await stores[i]!.open(topic, true))!.log;
  return {
    log,
    sql: () => pools[0]!,
    async reopen(i: number) {
      await stores[i]!.close();
      await pools[i]!.close();
      open(i);
    },
    async [Symbol.asyncDispose]() {
      for (const s of stores) await s.close().catch(() => {});
      for (const p of pools) await p.close().catch(() => {});
    },
  };
}

describe(`PgTopicLog.appendOnce${noPostgres}`, () => {
  const postgres = postgresForTests();

  test.skipIf(Boolean(noPostgres))("the same ids appended at once through two stores: each stored once, both callers get its seq, seqs dense", async () => {
    await using s = await twoStores(await postgres.current().database());
    const logs = [await s.log(0), await s.log(1)];
    const rounds = 30;
    const perRound = 20;
    for (let round = 0; round < rounds; round++) {
      const time = 1000 + round;
      // Both with the same ids (a run, as the library sends them), each with its own payloads.
      const ids = { prefix: "p:", from: round * perRound + 1 };
      const [a, b] = await Promise.all(
        logs.map((log, server) => {
          const data = Array.from({ length: perRound }, (_, i) => Uint8Array.of(server, ...payload(8, round * perRound + i)));
          return log.appendOnce!(data, time, data.map(() => undefined), ids, time - 60_000);
        }),
      );
      expect(a!.seqs).toEqual(b!.seqs);
      // Each id is a duplicate for exactly one of the two.
      expect([...a!.duplicates, ...b!.duplicates].sort((x, y) => x - y)).toEqual(Array.from({ length: perRound }, (_, i) => i));
    }
    const total = rounds * perRound;
    const rows = await s.sql()`select seq, msg_id from mq_messages order by seq`;
    expect(rows.map((r: { seq: string }) => Number(r.seq))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(new Set(rows.map((r: { msg_id: string }) => r.msg_id)).size).toBe(total);
    for (const log of logs) {
      await log.refresh!();
      expect([log.firstSeq, log.nextSeq]).toEqual([1, total + 1]);
    }
    // The payload under each seq is the one of the caller that stored it.
    const read = await logs[0]!.read(1, ALL, ALL);
    expect(read.map((m) => Buffer.from(m.data.subarray(1)).equals(Buffer.from(payload(8, m.seq - 1))))).toEqual(read.map(() => true));
  });

  test.skipIf(Boolean(noPostgres))("the window is a time: an id stored before `since` is stored again; ids of plain appends are not checked; a reopened store still finds the ids", async () => {
    await using s = await twoStores(await postgres.current().database());
    let log = await s.log(0);
    expect(await log.appendBatch!([payload(4, 1)], 100, [{ msgId: "k" }])).toEqual([1]);
    // Appended at 100: outside a window from 101, inside one from 100.
    expect(await log.appendOnce!([payload(4, 2)], 200, [{ msgId: "k" }], undefined, 101)).toEqual({ seqs: [2], duplicates: [] });
    expect(await log.appendOnce!([payload(4, 3)], 201, [{ msgId: "k" }], undefined, 100)).toEqual({ seqs: [1], duplicates: [0] });
    // In one batch: no id (always stored), a stored id, a new id, headers kept.
    const mixed = await log.appendOnce!([payload(4, 4), payload(4, 5), payload(4, 6)], 202, [{ headers: { h: "1" } }, { msgId: "k" }, { msgId: "new", headers: { h: "3" } }], undefined, 150);
    expect(mixed).toEqual({ seqs: [3, 2, 4], duplicates: [1] });
    // A plain append is not checked: the id is stored once more.
    expect(await log.appendBatch!([payload(4, 7)], 203, [{ msgId: "new" }])).toEqual([5]);
    // Only duplicates: nothing stored, nextSeq unchanged.
    expect(await log.appendOnce!([payload(4, 8)], 204, [{ msgId: "new" }], undefined, 0)).toEqual({ seqs: [4], duplicates: [0] });
    expect(log.nextSeq).toBe(6);

    await s.reopen(0);
    log = await s.log(0);
    // A run of ids (q:1, q:2) as the library sends them, beside the stored "new".
    expect(await log.appendBatch!([payload(4, 9)], 205, [undefined], { prefix: "q:", from: 1 })).toEqual([6]);
    expect(await log.appendOnce!([payload(4, 10), payload(4, 11)], 206, [undefined, undefined], { prefix: "q:", from: 1 }, 0)).toEqual({ seqs: [6, 7], duplicates: [0] });
    expect(await log.appendOnce!([payload(4, 12)], 207, [{ msgId: "new" }], undefined, 0)).toEqual({ seqs: [4], duplicates: [0] });
    const read = await log.read(1, ALL, ALL);
    const sent = [1, 2, 4, 6, 7, 9, 11];
    expect(read.map((m) => [m.seq, Buffer.from(m.data).equals(Buffer.from(payload(4, sent[m.seq - 1]!))), m.headers?.h])).toEqual([
      [1, true, undefined],
      [2, true, undefined],
      [3, true, "1"],
      [4, true, "3"],
      [5, true, undefined],
      [6, true, undefined],
      [7, true, undefined],
    ]);
    // Another topic's ids are not this one's.
    expect(await (await s.log(1, "other")).appendOnce!([payload(4, 13)], 208, [{ msgId: "k" }], undefined, 0)).toEqual({ seqs: [1], duplicates: [] });
  });
});
