/**
 * What the cap of the zeros written ahead (lib/store/zero-tail.ts) costs and saves: 170 B
 * records written then fdatasynced on the thread pool one at a time (one publish in flight
 * under --fsync always), the file extended as FileTopicLog does (records + zeros in one
 * pwritev when a write passes the end, growth doubling up to the cap), for several caps
 * and for plain appends (cap 0), interleaved in rounds.
 *   bun bench/zero-tail-cap.ts [--dir /tmp/zero-tail-cap] [--count 3000] [--rounds 3] [--caps 0,65536,262144,1048576]
 */
import * as fs from "node:fs";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const dir = arg("dir", "/tmp/zero-tail-cap");
const count = Number(arg("count", "3000"));
const rounds = Number(arg("rounds", "3"));
const caps = arg("caps", "0,65536,262144,1048576").split(",").map(Number);
const BLOCK = 4096;
const record = new Uint8Array(170).fill(65);
const zeros = new Uint8Array(Math.max(...caps) + BLOCK);
fs.mkdirSync(dir, { recursive: true });
const fdatasync = (fd: number) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));

async function run(cap: number, out: number[]): Promise<void> {
  const file = `${dir}/cap-${cap}-${process.pid}.log`;
  const fd = fs.openSync(file, "w+");
  let end = 0;
  let allocated = 0;
  let growth = 0;
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const writeEnd = end + record.length;
    if (cap > 0 && writeEnd > allocated) {
      const to = Math.ceil((writeEnd + growth) / BLOCK) * BLOCK;
      fs.writevSync(fd, [record, zeros.subarray(0, to - writeEnd)], end);
      allocated = to;
      growth = Math.min(cap, Math.max(BLOCK, growth * 2));
    } else fs.writeSync(fd, record, 0, record.length, end);
    end = writeEnd;
    await fdatasync(fd);
    out.push((performance.now() - t) * 1000);
  }
  fs.closeSync(fd);
  fs.rmSync(file);
}

const samples = new Map<number, number[]>(caps.map((c) => [c, []]));
for (let r = 0; r < rounds; r++) for (const cap of caps) await run(cap, samples.get(cap)!);
const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()} load ${load}; ${rounds} rounds x ${count} writes of 170 B + fdatasync each way; µs`);
for (const [cap, xs] of samples) {
  xs.sort((a, b) => a - b);
  const at = (q: number) => Math.round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!);
  const mean = Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  console.log(`${(cap === 0 ? "append" : `cap ${cap / 1024} KiB`).padEnd(14)} p50 ${at(0.5)}  p90 ${at(0.9)}  p99 ${at(0.99)}  p99.9 ${at(0.999)}  max ${Math.round(xs.at(-1)!)}  mean ${mean}  (${Math.round(1e6 / mean)}/s)`);
}
