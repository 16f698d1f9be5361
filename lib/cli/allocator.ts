/**
 * The daemons run with mimalloc's purge off: MIMALLOC_PURGE_DELAY=-1.
 *
 * Bun allocates with mimalloc, which by default gives memory that stayed free for 10 ms back
 * to the kernel. A broker frees and takes again tens of MB a second (socket reads, commit
 * buffers, the blocks of the JavaScript heap), so nearly every reuse was a page fault and a
 * zeroed page: at 1 → 1 `--fsync never`, 100,000 page faults per 1,000,000 messages and half
 * of `mq up`'s CPU (docs/benchmarks.md, "mimalloc's purge"). Memory a daemon freed then stays
 * with it for its next burst; what a daemon holds is bounded by its budgets (docs/semantics.md).
 *
 * mimalloc reads its options only when the process starts, so a daemon started without the
 * variable executes itself again, once, with it added: execve(2) keeps the process id, the
 * open files, the arguments and the rest of the environment (on Linux byte for byte, from /proc). Setting MIMALLOC_PURGE_DELAY
 * yourself (10 is mimalloc's default) leaves the choice to you; where execve cannot be
 * reached (no bun:ffi, no known libc) the daemon runs on as it is. So does a daemon under Bun's
 * sampling profiler (`--cpu-prof`, also through BUN_OPTIONS): the profiler stops the main thread
 * with a signal (SIGPWR) now and then, and one still pending at the execve killed the new image,
 * whose handler is not installed yet (the signal's default action ends the process).
 */
import { ptr } from "bun:ffi";
import * as fs from "node:fs";
import { libc } from "../store/fsutil.ts";

const PURGE_DELAY = "MIMALLOC_PURGE_DELAY";

/** The argv that starts this same program again: the executable, the runtime's flags, the script (when run from source), the arguments. */
function ownArgv(): string[] {
  const script = process.argv[1] ?? "";
  // A compiled executable's script is inside the executable (/$bunfs/ on Unix): the executable alone runs it.
  const compiled = script.startsWith("/$bunfs/") || script.startsWith("B:/~BUN/");
  return [process.argv0, ...(compiled ? [] : [...process.execArgv, script]), ...process.argv.slice(2)];
}

/** The NULL-ended array of pointers to NUL-ended `strings` (which must outlive the call). */
function pointersTo(strings: Buffer[]): BigUint64Array {
  const pointers = new BigUint64Array(strings.length + 1);
  strings.forEach((b, i) => (pointers[i] = BigInt(ptr(b))));
  return pointers;
}

/**
 * The NUL-ended strings of /proc/self/cmdline or /proc/self/environ as the kernel holds them:
 * byte for byte, whatever their encoding (JavaScript strings would turn bytes that are not
 * UTF-8 into U+FFFD). Null where there is no /proc (macOS).
 */
function procStrings(file: "cmdline" | "environ"): Buffer[] | null {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(`/proc/self/${file}`);
  } catch {
    return null;
  }
  const strings: Buffer[] = [];
  for (let start = 0, i = bytes.indexOf(0); i >= 0; start = i + 1, i = bytes.indexOf(0, start)) strings.push(bytes.subarray(start, i + 1));
  return strings;
}

/**
 * Executes this daemon again with MIMALLOC_PURGE_DELAY=-1 unless the variable is set: does not
 * return when it worked. Returns why it did not (for a debug line), or null when nothing was to do.
 */
export function reexecWithoutPurge(): string | null {
  if (process.env[PURGE_DELAY] !== undefined) return null;
  if (process.execArgv.some((a) => a.startsWith("--cpu-prof"))) return "under Bun's sampling profiler (--cpu-prof), which an execve could kill; set MIMALLOC_PURGE_DELAY=-1 yourself for the daemon's usual allocator";
  const c = libc();
  if (c instanceof Error) return c.message;
  const cString = (s: string) => Buffer.from(`${s}\0`);
  const argv = procStrings("cmdline") ?? ownArgv().map(cString);
  const env = [...(procStrings("environ") ?? Object.entries(process.env).map(([k, v]) => cString(`${k}=${v}`))), cString(`${PURGE_DELAY}=-1`)];
  c.execve(cString(process.execPath), pointersTo(argv), pointersTo(env));
  return `execve ${process.execPath} failed (errno ${c.errno()})`;
}
