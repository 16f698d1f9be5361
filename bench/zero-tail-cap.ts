/**
 * What the cap of the zeros written ahead (lib/store/zero-tail.ts) costs and saves: 170 B
 * records written then fdatasynced on the thread pool one at a time (one publish in flight
 * under --fsync always), the file extended as FileTopicLog does (records + zeros in one
 * pwritev when a write passes the end, growth doubling up to the cap), for several caps
 * and for plain appends (cap 0), interleaved in rounds. With --falloc, each cap is also run
 * with the region given by fallocate(2) instead of written zeros (Linux).
 *   bun bench/zero-tail-cap.ts [--dir /tmp/zero-tail-cap] [--count 3000] [--rounds 3] [--caps 0,65536,262144,1048576] [--size 170]
 */
import { dlopen, FFIType } from "bun:ffi";
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
const falloc = argv.includes("--falloc");
const libc = falloc ? dlopen("libc.so.6", { fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 } }) : null;
const BLOCK = 4096;
const record = new Uint8Array(Number(arg("size", "170"))).fill(65);
const zeros = new Uint8Array(Math.max(...caps) + BLOCK);
fs.mkdirSync(dir, { recursive: true });
const fdatasync = (fd: number) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));

async function run(cap: number, out: number[], useFalloc: boolean): Promise<void> {
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
      if (useFalloc) {
        if (libc!.symbols.fallocate(fd, 0, allocated, to - allocated) !== 0) throw new Error("fallocate failed");
        fs.writeSync(fd, record, 0, record.length, end);
      } else fs.writevSync(fd, [record, zeros.subarray(0, to - writeEnd)], end);
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

const ways: Array<{ name: string; cap: number; useFalloc: boolean }> = [];
for (const cap of caps) {
  ways.push({ name: cap === 0 ? "append" : `cap ${cap / 1024} KiB`, cap, useFalloc: false });
  if (falloc && cap > 0) ways.push({ name: `falloc ${cap / 1024} KiB`, cap, useFalloc: true });
}
const samples = new Map<string, number[]>(ways.map((w) => [w.name, []]));
for (let r = 0; r < rounds; r++) for (const w of ways) await run(w.cap, samples.get(w.name)!, w.useFalloc);
const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()} load ${load}; ${rounds} rounds x ${count} writes of ${record.length} B + fdatasync each way; µs`);
for (const [name, xs] of samples) {
  xs.sort((a, b) => a - b);
  const at = (q: number) => Math.round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!);
  const mean = Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  console.log(`${name.padEnd(18)} p50 ${at(0.5)}  p90 ${at(0.9)}  p99 ${at(0.99)}  p99.9 ${at(0.999)}  max ${Math.round(xs.at(-1)!)}  mean ${mean}  (${Math.round(1e6 / mean)}/s)`);
}
