/** Small crash-safety helpers over node:fs shared by the files of the store. */
import { dlopen, FFIType } from "bun:ffi";
import * as fs from "node:fs";
import * as path from "node:path";
import { Code, MqError } from "../errors.ts";

/** fsync on the thread pool, so that other connections go on while the disk works. */
export function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** The errno code (`ENOSPC`, `EMFILE`…) of a file-system error, also when it is the `cause` of another error; undefined when there is none. */
export function errnoCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

/** Makes a rename or a new file in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces `file` atomically: write a temp file, fsync it, rename it over, fsync the directory. */
export function writeFileAtomic(file: string, data: Uint8Array | string, mode = 0o600): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/**
 * writeFileAtomic off the event loop (the fsyncs run on the thread pool). With `syncDir`
 * false the caller fsyncs the directory, once for several files.
 */
export async function writeFileAtomicAsync(file: string, data: Uint8Array | string, options: { mode?: number; syncDir?: boolean } = {}): Promise<void> {
  const tmp = `${file}.tmp`;
  const handle = await fs.promises.open(tmp, "w", options.mode ?? 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(tmp, file);
  if (options.syncDir ?? true) await fsyncDirAsync(path.dirname(file));
}

/** fsyncDir off the event loop. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes all of `buf` at `position` (writeSync may write less than asked). */
export function writeAllSync(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
export function readAtSync(fd: number, length: number, position: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

const LOCK_EX = 2;
const LOCK_NB = 4;

interface Libc {
  flock(fd: number, op: number): number;
  /** poll(2) on an 8-byte `struct pollfd` array. */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  /** getrlimit(2) into a 16-byte `struct rlimit` (two 64-bit rlim_t). */
  getrlimit(resource: number, out: Uint8Array): number;
}
let libcFns: Libc | null | undefined;

/** The few libc calls Node's API lacks, through bun:ffi; null where libc cannot be loaded. */
function libc(): Libc | null {
  if (libcFns === undefined) {
    try {
      const darwin = process.platform === "darwin";
      const lib = dlopen(darwin ? "libc.dylib" : "libc.so.6", {
        flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
        // nfds_t is unsigned long on Linux, unsigned int on macOS.
        poll: { args: [FFIType.ptr, darwin ? FFIType.u32 : FFIType.u64, FFIType.i32], returns: FFIType.i32 },
        getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
      });
      libcFns = {
        flock: (fd, op) => lib.symbols.flock(fd, op) as number,
        poll: (fds, nfds, timeoutMs) => lib.symbols.poll(fds, nfds, timeoutMs) as number,
        getrlimit: (resource, out) => lib.symbols.getrlimit(resource, out) as number,
      };
    } catch {
      libcFns = null;
    }
  }
  return libcFns;
}

let syncfsFn: ((fd: number) => number) | null | undefined;

/**
 * syncfs(2) on the file system that holds `dir`: writes back and waits for everything
 * written to it (data and metadata, renames included). False where there is no syncfs (not
 * Linux); throws when it fails.
 */
export function syncFileSystem(dir: string): boolean {
  if (!canSyncFileSystem()) return false;
  const fd = fs.openSync(dir, "r");
  try {
    if (syncfsFn!(fd) !== 0) throw new Error(`syncfs of the file system of ${dir} failed`);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** True where syncFileSystem works (Linux). */
export function canSyncFileSystem(): boolean {
  if (syncfsFn === undefined) {
    syncfsFn = null;
    if (process.platform === "linux") {
      try {
        const lib = dlopen("libc.so.6", { syncfs: { args: [FFIType.i32], returns: FFIType.i32 } });
        syncfsFn = (fd) => lib.symbols.syncfs(fd) as number;
      } catch {}
    }
  }
  return syncfsFn !== null;
}

/** flock(2); null where libc cannot be loaded (the lock is then skipped). */
function flock(fd: number, op: number): number | null {
  const c = libc();
  return c ? c.flock(fd, op) : null;
}

/**
 * The process's open-file limit now (the soft RLIMIT_NOFILE; Bun raises it to the hard one
 * at start), or null when it cannot be read.
 */
export function openFileLimit(): number | null {
  const c = libc();
  if (c) {
    const out = new Uint8Array(16);
    if (c.getrlimit(process.platform === "darwin" ? 8 : 7, out) === 0) {
      const soft = new DataView(out.buffer).getBigUint64(0, le);
      // RLIM_INFINITY, or more than any table of fds: no bound worth keeping.
      return soft > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(soft);
    }
  }
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
    if (m) return m[1] === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {}
  return null;
}

/** poll(2) event bits (the same on Linux and macOS). */
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;

const pollfd = new Uint8Array(8);
const pollView = new DataView(pollfd.buffer);
/** struct pollfd is in host byte order. */
const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * poll(2) on one fd: waits up to `timeoutMs` (0: just looks) for `events` and returns the
 * `revents` bits (POLLERR and POLLHUP are always reported), 0 on timeout or EINTR, or null
 * where libc cannot be loaded. It blocks the thread: keep `timeoutMs` short.
 */
export function pollFd(fd: number, events: number, timeoutMs: number): number | null {
  const c = libc();
  if (!c) return null;
  // struct pollfd { int fd; short events; short revents; }
  pollView.setInt32(0, fd, le);
  pollView.setInt16(4, events, le);
  pollView.setInt16(6, 0, le);
  const n = c.poll(pollfd, 1, timeoutMs);
  return n > 0 ? pollView.getUint16(6, le) : 0;
}

/** Creates a daemon's data directory (0700); a failure names the directory and `--data`. */
export function makeDataDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" || code === "ENOTDIR" ? `a file (not a directory) is in the way (${code})` : (err as Error).message;
    throw new Error(`Cannot create the data directory ${dir}: ${why}; choose another --data`, { cause: err });
  }
}

/**
 * Claims a data directory for this process with a kernel lock (flock) on `DIR/lock`, held
 * as long as the file stays open: another process on the same directory is refused, and a
 * crash releases it by itself, whatever pid comes next. The file holds our pid, for the
 * message. Returns the release function.
 */
export function lockDataDir(dir: string, who: string): () => void {
  const file = path.join(dir, "lock");
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  } catch (err) {
    throw new Error(`Cannot use the data directory ${dir}: ${(err as Error).message}; choose another --data`, { cause: err });
  }
  const got = flock(fd, LOCK_EX | LOCK_NB);
  if (got !== null && got !== 0) {
    const holder = fs.readFileSync(file, "utf8").trim();
    fs.closeSync(fd);
    throw new MqError(Code.Unavailable, `Cannot use the data directory ${dir}: another ${who} (pid ${holder || "unknown"}) is using it; stop it first or choose another --data`);
  }
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      fs.ftruncateSync(fd, 0);
    } finally {
      fs.closeSync(fd); // closing the file releases the lock
    }
  };
}
