/**
 * Would a commit that starts while the one before it is still in its fdatasync get durable
 * sooner? A paced writer (a batch of 128 B every `--every-us`, as a paced publisher's ticks
 * reach the group commit; paced by a timer) appends and fdatasyncs on the thread pool, two ways, alternating
 * run by run so that a noisy machine hurts both alike:
 *   serial   a batch that arrives during a sync waits for it, then goes in the next commit
 *            with the others that came meanwhile (lib/store/group-commit.ts)
 *   overlap  it is written and its own fdatasync starts at once (at most 2 in flight); it is
 *            durable when its sync and every earlier one returned
 * Prints, per way, the time from a batch's arrival to its durability: p50 / p90 / p99 / p99.9.
 *   bun bench/sync-overlap.ts [--dir /tmp/sync-overlap] [--batches 2000] [--every-us 1000] [--runs 4]
 */
import * as fs from "node:fs";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const dir = arg("dir", "/tmp/sync-overlap");
const batches = Number(arg("batches", "2000"));
const everyUs = Number(arg("every-us", "1000"));
const runs = Number(arg("runs", "4"));
const record = new Uint8Array(128).fill(65);
fs.mkdirSync(dir, { recursive: true });
const fdatasync = (fd: number) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));

async function run(overlap: boolean): Promise<number[]> {
  const file = `${dir}/${overlap ? "overlap" : "serial"}-${process.pid}.log`;
  const fd = fs.openSync(file, "a");
  const latencies: number[] = [];
  let waiting: number[] = []; // arrival times of batches not yet written
  let inFlight = 0;
  let lastDurable: Promise<void> = Promise.resolve();
  const { promise: done, resolve: finish } = Promise.withResolvers<void>();
  let durable = 0;
  const commit = () => {
    if (waiting.length === 0 || inFlight >= (overlap ? 2 : 1)) return;
    const arrived = waiting;
    waiting = [];
    for (let i = 0; i < arrived.length; i++) fs.writeSync(fd, record);
    inFlight++;
    const before = lastDurable;
    const synced = fdatasync(fd);
    // Durable once its own sync and every earlier one returned (acknowledged in order).
    lastDurable = Promise.all([before, synced]).then(() => {
      const now = performance.now();
      for (const t of arrived) latencies.push((now - t) * 1000);
      durable += arrived.length;
      if (durable === batches) finish();
    });
    synced.then(() => {
      inFlight--;
      commit();
    });
  };
  const start = performance.now();
  for (let n = 0; n < batches; n++) {
    // Paced by a timer, as the harness's publisher is (a late tick is made up for by the next ones, without spinning).
    const due = start + (n * everyUs) / 1000;
    const now = performance.now();
    if (now < due) await Bun.sleep(due - now);
    waiting.push(performance.now());
    queueMicrotask(commit);
  }
  await done;
  fs.closeSync(fd);
  fs.rmSync(file);
  return latencies;
}

const all: Record<string, number[][]> = { serial: [], overlap: [] };
for (let r = 0; r < runs; r++) {
  all.serial!.push(await run(false));
  all.overlap!.push(await run(true));
}
const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()} load ${load}; ${runs} runs x ${batches} batches, one every ${everyUs} µs; µs from arrival to durable, per run`);
for (const [name, perRun] of Object.entries(all)) {
  const text = perRun.map((xs) => {
    xs.sort((a, b) => a - b);
    const at = (q: number) => Math.round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!);
    return `${at(0.5)}/${at(0.9)}/${at(0.99)}/${at(0.999)}`;
  });
  console.log(`${name.padEnd(8)} p50/p90/p99/p99.9: ${text.join("  ")}`);
}
