/**
 * The cost of the thread hop of an fsync: append 128 B + sync, one at a time, four ways,
 * interleaved in rounds so that a noisy machine hurts all of them alike:
 *   fsync-pool      fs.fsync (thread pool, back through the event loop): what the log did
 *   fdatasync-pool  fs.fdatasync (thread pool)
 *   fdatasync-sync  fs.fdatasyncSync on the event loop (blocks it for the disk's time)
 *   fsync-sync      fs.fsyncSync on the event loop
 *   bun bench/sync-hop.ts [--dir /tmp/sync-hop] [--count 500] [--rounds 4]
 */
import * as fs from "node:fs";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const dir = arg("dir", "/tmp/sync-hop");
const count = Number(arg("count", "500"));
const rounds = Number(arg("rounds", "4"));
fs.mkdirSync(dir, { recursive: true });
const file = `${dir}/append-${process.pid}.log`;
const fd = fs.openSync(file, "a");
const record = new Uint8Array(128).fill(65);

const ways: Record<string, () => Promise<void> | void> = {
  "fsync-pool": () => new Promise<void>((res, rej) => fs.fsync(fd, (e) => (e ? rej(e) : res()))),
  "fdatasync-pool": () => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res()))),
  "fdatasync-sync": () => fs.fdatasyncSync(fd),
  "fsync-sync": () => fs.fsyncSync(fd),
};
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [name, sync] of Object.entries(ways)) {
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      fs.writeSync(fd, record);
      await sync();
      samples[name]!.push((performance.now() - t) * 1000);
    }
  }
}
fs.closeSync(fd);
fs.rmSync(file);
const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()} load ${load}; ${rounds} rounds x ${count} appends of 128 B each way; µs per append + sync`);
for (const [name, xs] of Object.entries(samples)) {
  xs.sort((a, b) => a - b);
  const at = (q: number) => Math.round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!);
  const mean = Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  console.log(`${name.padEnd(15)} p50 ${at(0.5)}  p90 ${at(0.9)}  p99 ${at(0.99)}  mean ${mean}  (${Math.round(1e6 / mean)}/s)`);
}
