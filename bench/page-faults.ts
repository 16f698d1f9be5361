/**
 * What a page of fresh memory costs this machine (docs/benchmarks.md, "a growing daemon's page
 * faults"): first touched by a write (a page fault each) against mapped in bulk by
 * madvise(MADV_POPULATE_WRITE) before use, then written. Linux 5.14 or later, glibc.
 *   MIMALLOC_PURGE_DELAY=-1 ./node_modules/.bin/bun bench/page-faults.ts [MiB (default 256)] [rounds (default 3)]
 */
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";

const MiB = 2 ** 20;
const size = Number(process.argv[2] ?? 256) * MiB;
const rounds = Number(process.argv[3] ?? 3);
const lib = dlopen("libc.so.6", {
  madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  getpagesize: { args: [], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
});
const c = {
  madvise: (at: number, length: number, advice: number) => lib.symbols.madvise(at, length, advice) as number,
  errno: () => read.i32(lib.symbols.__errno_location() as Pointer, 0),
};
const page = lib.symbols.getpagesize() as number;
const faults = () => process.resourceUsage().minorPageFault;

/** A fresh allocation of `size` bytes (this large, mimalloc takes it from the kernel untouched), page-aligned inside. */
function fresh(): { bytes: Uint8Array; from: number; pages: number } {
  const bytes = new Uint8Array(size + page);
  const from = Math.ceil(ptr(bytes) / page) * page - ptr(bytes);
  return { bytes, from, pages: Math.floor((size - from) / page) };
}

function touch(bytes: Uint8Array, from: number, pages: number): void {
  for (let p = 0; p < pages; p++) bytes[from + p * page] = 1;
}

const keep: Uint8Array[] = [];
for (let round = 1; round <= rounds; round++) {
  const a = fresh();
  keep.push(a.bytes);
  let f = faults();
  let t = performance.now();
  touch(a.bytes, a.from, a.pages);
  const touchUs = ((performance.now() - t) * 1000) / a.pages;
  const touchFaults = faults() - f;

  const b = fresh();
  keep.push(b.bytes);
  f = faults();
  t = performance.now();
  const rc = c.madvise(ptr(b.bytes) + b.from, b.pages * page, 23 /* MADV_POPULATE_WRITE */);
  const populateUs = ((performance.now() - t) * 1000) / b.pages;
  if (rc !== 0) throw new Error(`madvise(MADV_POPULATE_WRITE) failed with errno ${c.errno()} (Linux 5.14 or later)`);
  const populateFaults = faults() - f;
  t = performance.now();
  touch(b.bytes, b.from, b.pages);
  const afterUs = ((performance.now() - t) * 1000) / b.pages;
  console.log(
    `round ${round}: ${a.pages} pages of ${page} B — first touch ${touchUs.toFixed(2)} µs a page (${touchFaults} faults); ` +
      `MADV_POPULATE_WRITE ${populateUs.toFixed(2)} µs a page (${populateFaults} faults counted), then touching them ${afterUs.toFixed(3)} µs a page`,
  );
}
