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
 * open files, the arguments and the rest of the environment. Setting MIMALLOC_PURGE_DELAY
 * yourself (10 is mimalloc's default) leaves the choice to you; where execve cannot be
 * reached (no bun:ffi, no known libc) the daemon runs on as it is.
 */
import { ptr } from "bun:ffi";
import { libc } from "../store/fsutil.ts";

export const PURGE_DELAY = "MIMALLOC_PURGE_DELAY";

/** The argv that starts this same program again: the executable, the runtime's flags, the script (when run from source), the arguments. */
export function ownArgv(): string[] {
  const script = process.argv[1] ?? "";
  // A compiled executable's script is inside the executable (/$bunfs/ on Unix): the executable alone runs it.
  const compiled = script.startsWith("/$bunfs/") || script.startsWith("B:/~BUN/");
  return [process.argv0, ...(compiled ? [] : [...process.execArgv, script]), ...process.argv.slice(2)];
}

/** NUL-ended bytes of each string, and the NULL-ended array of pointers to them (the bytes must outlive the call). */
function cStrings(strings: string[]): { bytes: Buffer[]; pointers: BigUint64Array } {
  const bytes = strings.map((s) => Buffer.from(`${s}\0`));
  const pointers = new BigUint64Array(bytes.length + 1);
  bytes.forEach((b, i) => (pointers[i] = BigInt(ptr(b))));
  return { bytes, pointers };
}

/**
 * Executes this daemon again with MIMALLOC_PURGE_DELAY=-1 unless the variable is set: does not
 * return when it worked. Returns why it did not (for a debug line), or null when nothing was to do.
 */
export function reexecWithoutPurge(): string | null {
  if (process.env[PURGE_DELAY] !== undefined) return null;
  const c = libc();
  if (c instanceof Error) return c.message;
  const env = Object.entries({ ...process.env, [PURGE_DELAY]: "-1" }).map(([k, v]) => `${k}=${v}`);
  const argv = cStrings(ownArgv());
  const envp = cStrings(env);
  c.execve(Buffer.from(`${process.execPath}\0`), argv.pointers, envp.pointers);
  return `execve ${process.execPath} failed (errno ${c.errno()})`;
}
