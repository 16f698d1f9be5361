/**
 * What the cross-server msg-id check costs in the PostgreSQL append (docs/benchmarks.md,
 * "PostgreSQL: msg ids checked in the append"): batches of 256 messages of 128 B with a run
 * of ids each (as the library sends them), appended by `appendBatch` (one statement, no
 * check: before) and by `appendOnce` (mq_append_once: the topic's row lock, then the ids
 * looked up on the msg_id index, then the insert: after), alternating per round on a fresh
 * database each, BATCHES in flight. Then one topic of 100,000 stored ids (the lookups hit a
 * bigger index) the same way.
 *
 *   bun bench/pg-append-once.ts [ROUNDS=5] [MESSAGES=51200] [BATCHES=8]
 *
 * Runs a throwaway PostgreSQL (tests/pg-kit.ts) on this machine: its figures include it.
 */
import { SQL } from "bun";
import { migrate } from "../lib/store/pg/schema.ts";
import { PgTopicStore } from "../lib/store/pg/topic-store.ts";
import type { TopicLog } from "../lib/store/types.ts";
import { startPostgres } from "../tests/pg-kit.ts";

const rounds = Number(process.argv[2] ?? 5);
const messages = Number(process.argv[3] ?? 51_200);
const inFlight = Number(process.argv[4] ?? 8);
const BATCH = 256;
const body = new Uint8Array(128).fill(7);
const data = Array.from({ length: BATCH }, () => body);
const fields = data.map(() => undefined);

type Way = "appendBatch" | "appendOnce";

/** Appends `messages` in batches of BATCH with fresh ids from `from` on, `inFlight` batches at once; msgs/s. */
async function rate(log: TopicLog, way: Way, from: number): Promise<number> {
  let next = 0;
  const batches = Math.ceil(messages / BATCH);
  const started = performance.now();
  const worker = async () => {
    while (next < batches) {
      const ids = { prefix: "bench:", from: from + next++ * BATCH };
      if (way === "appendOnce") await log.appendOnce!(data, Date.now(), fields, ids, Date.now() - 120_000);
      else await log.appendBatch!(data, Date.now(), fields, ids);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (batches * BATCH) / ((performance.now() - started) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en");

await using pg = await startPostgres();
for (const preload of [0, 100_000]) {
  const results: Record<Way, number[]> = { appendBatch: [], appendOnce: [] };
  for (let round = 0; round < rounds; round++) {
    for (const way of ["appendBatch", "appendOnce"] as const) {
      const sql = new SQL(await pg.database(), { max: 8 });
      await migrate(sql);
      const store = new PgTopicStore(sql, "b1", { synchronousCommit: true });
      const { log } = (await store.open("t", true))!;
      // Ids of the preload: another prefix, so none is a duplicate of what follows.
      for (let i = 0; i < preload; i += BATCH * 16) await Promise.all(Array.from({ length: 16 }, (_, k) => log.appendBatch!(data, Date.now(), fields, { prefix: "old:", from: i + k * BATCH })));
      const r = await rate(log, way, 1);
      results[way].push(r);
      console.log(`preload ${preload}, round ${round + 1}, ${way}: ${fmt(r)} msgs/s (load ${(await Bun.file("/proc/loadavg").text()).split(" ")[0]})`);
      await store.close();
      await sql.close();
    }
  }
  for (const way of ["appendBatch", "appendOnce"] as const) {
    const xs = results[way];
    console.log(`preload ${preload}, ${way}: median ${fmt(median(xs))} msgs/s (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}), ${rounds} rounds, ${BATCH} per batch, ${inFlight} batches in flight`);
  }
}
