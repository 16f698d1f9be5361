/** Small crash-safety helpers over node:fs shared by the files of the store. */
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";
import * as fs from "node:fs";
import * as path from "node:path";
import { Code, MqError } from "../errors.ts";

/**
 * fdatasync on the thread pool, so that other connections go on while the disk works. For
 * the files of the store fdatasync is enough: it writes the data and what is needed to read
 * it back (the size), not the times fsync also writes.
 */
export function fdatasyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
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
  return readAtIntoSync(fd, new Uint8Array(length), length, position);
}

/** readAtSync into `buf` (at least `length` bytes; the caller reuses it): a view of what was read. */
export function readAtIntoSync(fd: number, buf: Uint8Array, length: number, position: number): Uint8Array {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === buf.length ? buf : buf.subarray(0, done);
}

/**
 * The few libc calls Node's API lacks (flock, poll), through bun:ffi, per platform. Every
 * release target is listed (docs/release.md):
 * - Linux with glibc: `libc.so.6`.
 * - Linux with musl (Alpine): also `libc.so.6`: musl's loader answers every `libc.*` name
 *   with itself (ldso/dynlink.c, "Catch and block attempts to reload the implementation
 *   itself"), so the name of its file (`libc.musl-x86_64.so.1`) is never needed.
 * - macOS: libSystem, which holds libc; dlopen finds it in the dyld shared cache even though
 *   no file is at that path since macOS 11.
 * The constants are the same on all of them: LOCK_EX 2, LOCK_NB 4; POLLOUT 4, POLLERR 8,
 * POLLHUP 0x10; `struct pollfd { int fd; short events; short revents; }`. What differs is
 * `nfds_t` (unsigned long on Linux, unsigned int on macOS), where errno lives and EWOULDBLOCK.
 */
const LIBC: Partial<Record<NodeJS.Platform, { names: string[]; nfds: FFIType; errno: string; EWOULDBLOCK: number }>> = {
  linux: { names: ["libc.so.6"], nfds: FFIType.u64, errno: "__errno_location", EWOULDBLOCK: 11 },
  darwin: { names: ["/usr/lib/libSystem.B.dylib"], nfds: FFIType.u32, errno: "__error", EWOULDBLOCK: 35 },
};

const LOCK_EX = 2;
const LOCK_NB = 4;

export interface Libc {
  /** flock(2): 0, or -1 with errno set. */
  flock(fd: number, op: number): number;
  /** poll(2) on an 8-byte `struct pollfd` array. */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  /** errno of the last failed call. */
  errno(): number;
  /** errno of a lock held by another open file (EWOULDBLOCK on this platform). */
  EWOULDBLOCK: number;
  /** getrlimit(2) into a 16-byte `struct rlimit` (two 64-bit rlim_t). */
  getrlimit(resource: number, out: Uint8Array): number;
  /** execve(2) with NULL-ended arrays of pointers to NUL-ended strings: returns only when it failed (-1). */
  execve(file: Uint8Array, argv: BigUint64Array, envp: BigUint64Array): number;
}

/**
 * Opens libc for `platform` from the first of `names` that dlopen accepts. Throws an Error
 * naming every library tried and why each failed (no bun:ffi, an unknown platform, no such library).
 */
export function loadLibc(platform: NodeJS.Platform = process.platform, names?: string[]): Libc {
  const known = LIBC[platform];
  if (!known) throw new Error(`no libc is known for platform ${platform} (known: ${Object.keys(LIBC).join(", ")})`);
  const failures: string[] = [];
  for (const name of names ?? known.names) {
    try {
      const lib = dlopen(name, {
        flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
        poll: { args: [FFIType.ptr, known.nfds, FFIType.i32], returns: FFIType.i32 },
        getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
        execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
        [known.errno]: { args: [], returns: FFIType.ptr },
      });
      const errnoAt = lib.symbols[known.errno]!;
      return {
        flock: (fd, op) => lib.symbols.flock!(fd, op) as number,
        poll: (fds, nfds, timeoutMs) => lib.symbols.poll!(fds, nfds, timeoutMs) as number,
        getrlimit: (resource, out) => lib.symbols.getrlimit!(resource, out) as number,
        execve: (file, argv, envp) => lib.symbols.execve!(file, argv, envp) as number,
        errno: () => read.i32(errnoAt() as Pointer, 0),
        EWOULDBLOCK: known.EWOULDBLOCK,
      };
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load libc (${failures.join("; ")})`);
}

let loaded: Libc | Error | undefined;
/** This process's libc, loaded once; the Error when it cannot be. */
export function libc(): Libc | Error {
  if (loaded === undefined) {
    try {
      loaded = loadLibc();
    } catch (err) {
      loaded = err as Error;
    }
  }
  return loaded;
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

/**
 * The process's open-file limit now (the soft RLIMIT_NOFILE; Bun raises it to the hard one
 * at start), or null when it cannot be read.
 */
export function openFileLimit(): number | null {
  const c = libc();
  if (!(c instanceof Error)) {
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
 * where libc cannot be loaded (callers fall back to timers). It blocks the thread: keep
 * `timeoutMs` short.
 */
export function pollFd(fd: number, events: number, timeoutMs: number): number | null {
  const c = libc();
  if (c instanceof Error) return null;
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
export function lockDataDir(dir: string, who: string, load: () => Libc | Error = libc): () => void {
  // Without the lock two daemons could write one log: refuse rather than run unlocked.
  const c = load();
  if (c instanceof Error) {
    throw new Error(`Cannot lock the data directory ${dir}: flock(2) is out of reach on ${process.platform}-${process.arch}: ${c.message}; ${who} does not run on a data directory it cannot lock`, { cause: c });
  }
  const file = path.join(dir, "lock");
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  } catch (err) {
    throw new Error(`Cannot use the data directory ${dir}: ${(err as Error).message}; choose another --data`, { cause: err });
  }
  if (c.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = c.errno();
    const holder = fs.readFileSync(file, "utf8").trim();
    fs.closeSync(fd);
    if (errno !== c.EWOULDBLOCK) {
      throw new Error(`Cannot lock the data directory ${dir}: flock(2) failed with errno ${errno} (a file system without locks?); choose another --data`);
    }
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
