/**
 * The PostgreSQL topic store on its own (no broker): appends/s at several concurrencies with
 * synchronous_commit on and off (and the file log with fsync always, for reference), two stores ("servers") on one topic and on two topics,
 * reads of 64, and what retention's delete costs next to dropping a partition (a TRUNCATE
 * of a table holding the same rows stands in for it).
 *
 *   bun bench/pg-topic.ts [messages per run, default 20000]
 *
 * Runs a throwaway PostgreSQL (tests/pg-kit.ts) on this machine: its figures include it.
 */
import { SQL } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileTopicLog } from "../lib/store/topic-log.ts";
import { migrate } from "../lib/store/pg/schema.ts";
import { PgTopicStore } from "../lib/store/pg/topic-store.ts";
import type { TopicLog } from "../lib/store/types.ts";
import { startPostgres } from "../tests/pg-kit.ts";

const total = Number(process.argv[2] ?? 20_000);
const body = new Uint8Array(128).fill(7);

/** Appends `count` messages keeping `inFlight` in flight; returns msgs/s. */
async function appendRate(log: TopicLog, count: number, inFlight: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await log.append(body, Date.now());
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return count / ((performance.now() - started) / 1000);
}

const fmt = (n: number) => Math.round(n).toLocaleString("en");

await using pg = await startPostgres();
for (const inFlight of [1, 16, 256]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-bench-file-"));
  const log = FileTopicLog.open(dir, { fsync: "always", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
  const count = inFlight === 1 ? Math.min(total, 2000) : total;
  console.log(`file log, fsync always, ${inFlight} in flight: ${fmt(await appendRate(log, count, inFlight))} msgs/s`);
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
for (const synchronousCommit of [true, false]) {
  for (const inFlight of [1, 16, 256]) {
    const sql = new SQL(await pg.database(), { max: 8 });
    await migrate(sql);
    const store = new PgTopicStore(sql, "b1", { synchronousCommit });
    const { log } = (await store.open("t", true))!;
    const count = inFlight === 1 ? Math.min(total, 2000) : total;
    console.log(`append 128 B, synchronous_commit ${synchronousCommit ? "on" : "off"}, ${inFlight} in flight: ${fmt(await appendRate(log, count, inFlight))} msgs/s`);
    await store.close();
    await sql.close();
  }
}

// Two servers, 256 in flight each: on one topic (they take turns on its row) and on two.
for (const topics of [["t", "t"], ["t1", "t2"]]) {
  const url = await pg.database();
  const pools = [new SQL(url, { max: 8 }), new SQL(url, { max: 8 })];
  await migrate(pools[0]!);
  const stores = pools.map((sql, i) => new PgTopicStore(sql, `b${i}`, { synchronousCommit: true }));
  const logs = await Promise.all(stores.map(async (s, i) => (await s.open(topics[i]!, true))!.log));
  const started = performance.now();
  await Promise.all(logs.map((log) => appendRate(log, total, 256)));
  console.log(`two stores, ${topics[0] === topics[1] ? "one topic" : "two topics"}, 256 in flight each: ${fmt((2 * total) / ((performance.now() - started) / 1000))} msgs/s in all`);
  for (const s of stores) await s.close();
  for (const sql of pools) await sql.close();
}

// Reads of 64 from a topic of `total` messages; then retention of half of it.
{
  const sql = new SQL(await pg.database(), { max: 8 });
  await migrate(sql);
  const store = new PgTopicStore(sql, "b1", { synchronousCommit: false });
  const { log } = (await store.open("t", true))!;
  await appendRate(log, total, 256);
  let started = performance.now();
  let read = 0;
  for (let from = 1; ; ) {
    const got = await log.read(from, 64, 1 << 20);
    if (got.length === 0) break;
    read += got.length;
    from = got[got.length - 1]!.seq + 1;
  }
  console.log(`read 64 at a time: ${fmt(read / ((performance.now() - started) / 1000))} msgs/s`);

  await sql`create table copy_of_half as select * from mq_messages where seq <= ${total / 2}`;
  started = performance.now();
  const removed = await log.trim(total / 2 + 1, { maxAgeMs: 0, maxBytes: Infinity }, Date.now() + 1000);
  const trimMs = performance.now() - started;
  started = performance.now();
  await sql`truncate copy_of_half`;
  const truncateMs = performance.now() - started;
  console.log(`trim of ${fmt(removed)} messages: ${trimMs.toFixed(0)} ms (${fmt(removed / (trimMs / 1000))} rows/s); truncate of a table of the same rows: ${truncateMs.toFixed(0)} ms`);
  await store.close();
  await sql.close();
}
