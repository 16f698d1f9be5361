/**
 * What an fdatasync costs when the write does not change the file's size: 128 B written then
 * fdatasynced on the thread pool (as a segment's commit does), one at a time, two ways,
 * interleaved in rounds so that a noisy machine hurts both alike:
 *   append     at the end of the file: the size changes, so the fdatasync commits the
 *              file system's journal too (what a segment does now)
 *   prezeroed  into a file written full of zeros (and fdatasynced) beforehand: the blocks and
 *              the size are on disk already, so the fdatasync writes the data alone
 *   fallocated into a file given its blocks by fallocate(2) (and fdatasynced) beforehand: the
 *              size is on disk, but the blocks are unwritten extents, converted (a journal
 *              commit) by the first write into each (Linux only; left out elsewhere)
 *   bun bench/sync-prezeroed.ts [--dir /tmp/sync-prezeroed] [--count 500] [--rounds 4]
 */
import { dlopen, FFIType } from "bun:ffi";
import * as fs from "node:fs";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1]! : d;
};
const dir = arg("dir", "/tmp/sync-prezeroed");
const count = Number(arg("count", "500"));
const rounds = Number(arg("rounds", "4"));
const record = new Uint8Array(128).fill(65);
fs.mkdirSync(dir, { recursive: true });

const appendFile = `${dir}/append-${process.pid}.log`;
const appendFd = fs.openSync(appendFile, "a");
const zeroFile = `${dir}/prezeroed-${process.pid}.log`;
const zeroFd = fs.openSync(zeroFile, "w+");
// Room for every write of every round, written out (not a sparse file) and made durable once.
const zeros = new Uint8Array(1024 * 1024);
for (let at = 0; at < rounds * count * record.length; at += zeros.length) fs.writeSync(zeroFd, zeros, 0, zeros.length, at);
fs.fsyncSync(zeroFd);
let zeroAt = 0;
// fallocate(fd, 0, 0, len) from libc: the blocks allocated, not written.
let fallocFd = -1;
const fallocFile = `${dir}/fallocated-${process.pid}.log`;
if (process.platform === "linux") {
  const libc = dlopen("libc.so.6", { fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 } });
  fallocFd = fs.openSync(fallocFile, "w+");
  if (libc.symbols.fallocate(fallocFd, 0, 0, rounds * count * record.length + 4096) !== 0) throw new Error("fallocate failed");
  fs.fsyncSync(fallocFd);
}
let fallocAt = 0;

const fdatasync = (fd: number) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
const ways: Record<string, () => Promise<void>> = {
  append: () => {
    fs.writeSync(appendFd, record);
    return fdatasync(appendFd);
  },
  prezeroed: () => {
    fs.writeSync(zeroFd, record, 0, record.length, zeroAt);
    zeroAt += record.length;
    return fdatasync(zeroFd);
  },
};
if (fallocFd >= 0) {
  ways.fallocated = () => {
    fs.writeSync(fallocFd, record, 0, record.length, fallocAt);
    fallocAt += record.length;
    return fdatasync(fallocFd);
  };
}
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [name, write] of Object.entries(ways)) {
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      await write();
      samples[name]!.push((performance.now() - t) * 1000);
    }
  }
}
for (const fd of [appendFd, zeroFd, fallocFd]) if (fd >= 0) fs.closeSync(fd);
for (const f of [appendFile, zeroFile, fallocFile]) fs.rmSync(f, { force: true });
const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()} load ${load}; ${rounds} rounds x ${count} writes of 128 B each way, fdatasync on the thread pool; µs per write + fdatasync`);
for (const [name, xs] of Object.entries(samples)) {
  xs.sort((a, b) => a - b);
  const at = (q: number) => Math.round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!);
  const mean = Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  console.log(`${name.padEnd(10)} p50 ${at(0.5)}  p90 ${at(0.9)}  p99 ${at(0.99)}  p99.9 ${at(0.999)}  mean ${mean}  (${Math.round(1e6 / mean)}/s)`);
}
