/**
 * A real EMFILE in the test process: lower the soft open-file limit (any user may) just
 * above the highest fd open, fill every free fd below it with /dev/null, run the code under
 * test, then give everything back. Linux only (it reads /proc/self/fd).
 */
import { dlopen, FFIType } from "bun:ffi";
import * as fs from "node:fs";

const RLIMIT_NOFILE = process.platform === "darwin" ? 8 : 7;

/** True where lowerFdLimit works: Linux with /proc and libc. */
export const fdLimitAvailable = process.platform === "linux" && fs.existsSync("/proc/self/fd");

function libc() {
  return dlopen("libc.so.6", {
    getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  }).symbols;
}

export interface FdLimit {
  /** Takes one filler fd out (the caller closes it): room for one more open. */
  spare(): number;
  /** Fills every free fd again. */
  refill(): void;
  /** Closes the fillers and puts the limit back. */
  restore(): void;
}

export function lowerFdLimit(): FdLimit {
  const c = libc();
  const saved = new BigUint64Array(2);
  if (c.getrlimit(RLIMIT_NOFILE, saved) !== 0) throw new Error("getrlimit failed");
  const highest = Math.max(...fs.readdirSync("/proc/self/fd").map(Number));
  const lowered = new BigUint64Array([BigInt(highest + 4), saved[1]!]);
  if (c.setrlimit(RLIMIT_NOFILE, lowered) !== 0) throw new Error("setrlimit failed");
  const fillers: number[] = [];
  const refill = () => {
    for (let i = 0; i < 100_000; i++) {
      try {
        fillers.push(fs.openSync("/dev/null", "r"));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EMFILE") return;
        throw err;
      }
    }
    throw new Error("the lowered fd limit was never reached");
  };
  try {
    refill();
  } catch (err) {
    for (const fd of fillers.splice(0)) fs.closeSync(fd);
    c.setrlimit(RLIMIT_NOFILE, saved);
    throw err;
  }
  return {
    spare: () => fillers.pop()!,
    refill,
    restore: () => {
      for (const fd of fillers.splice(0)) fs.closeSync(fd);
      c.setrlimit(RLIMIT_NOFILE, saved);
    },
  };
}
