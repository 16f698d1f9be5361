/**
 * CPU per message of a topic log's append path (docs/benchmarks.md, "the publish path"):
 * batches of `--batch` payloads of 128 B with a run of ids (as a `pubs` of the library
 * stores them), appended to a FileTopicLog with fsync "never", `--count` messages, `--rounds`
 * rounds; prints the process CPU (user + sys) per message of each round. The disk and the
 * wire are out of it: what is left is the record encoding, the group commit, the tail cache.
 *
 *     ./node_modules/.bin/bun bench/append-cpu.ts [--count 400000] [--batch 64] [--rounds 5]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { FileTopicLog } from "../lib/store/topic-log.ts";

const { values } = parseArgs({ options: { count: { type: "string", default: "400000" }, batch: { type: "string", default: "64" }, rounds: { type: "string", default: "5" } } });
const count = Number(values.count);
const batch = Number(values.batch);
const rounds = Number(values.rounds);
const payloads = Array.from({ length: batch }, (_, i) => new Uint8Array(128).fill(i));
const fields = new Array(batch).fill(undefined);

for (let r = 0; r < rounds; r++) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-append-cpu-"));
  const log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 << 20 });
  const before = process.cpuUsage();
  const started = performance.now();
  // Several batches in flight, as from several connections' `pubs` in one turn.
  const inFlight: Promise<number[]>[] = [];
  for (let n = 0; n < count; n += batch) {
    inFlight.push(log.appendBatch(payloads, Date.now(), fields, { prefix: "bench:", from: n + 1 }));
    if (inFlight.length === 8) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
  const used = process.cpuUsage(before);
  const wall = performance.now() - started;
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`round ${r + 1}: ${(((used.user + used.system) * 1000) / count).toFixed(0)} ns CPU/msg, ${((count / wall) * 1000).toFixed(0)} msgs/s`);
}
