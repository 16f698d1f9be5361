/**
 * Memory mapped ahead of the allocator while a daemon grows (`--pretouch`, Linux ≥ 5.14).
 *
 * The first write to a page of fresh anonymous memory is a page fault. On the virtual machine
 * this was measured on, a fault costs 12–16 µs a 4 KiB page, where madvise(MADV_POPULATE_WRITE)
 * maps the same pages at ~0.7 µs each, plus ~6 µs at the first use of each (the hypervisor's
 * own page table; docs/benchmarks.md, "a growing daemon's page faults"): a fresh `mq up`
 * faults in ~70–80 MB in its first second under load, a third of its CPU then.
 * The daemons run with mimalloc keeping what it takes (allocator.ts), so those faults are
 * the allocator's arenas being used for the first time, once per page for the life of the
 * process. While the process takes page faults fast (4 MiB of pages in 200 ms), a tick
 * maps, with one madvise per arena, the pages from the lowest one not yet resident to
 * `ahead` bytes past the highest resident one, never more than a quarter of the memory the
 * machine has available or half of what its memory cgroup still allows. An idle or steady
 * daemon costs one getrusage a tick; what it holds grows by at most `ahead` more than it would have.
 *
 * mimalloc's arenas are found in /proc/self/maps: anonymous read-write mappings of 256 MiB
 * or more at 2–32 TiB, where mimalloc places them (its address hint, 2–30 TiB). Elsewhere
 * (no /proc, no MADV_POPULATE_WRITE, another allocator) nothing is found or mapped.
 */
import * as fs from "node:fs";
import { logger } from "../log.ts";
import { libc, type Libc } from "../store/fsutil.ts";

const log = logger("mq");

/** madvise(2) advice: populate (prefault) page tables writable, as if each page were written (Linux 5.14). */
const MADV_POPULATE_WRITE = 23;
const EINVAL = 22;
const TiB = 2 ** 40;
const MiB = 2 ** 20;

/** A mapping of the allocator's: its address and length in bytes. */
export interface Arena {
  start: number;
  size: number;
}

/** What Pretouch does to the process: real in `startPretouch`, files of a test's own elsewhere. */
export interface PretouchOps {
  /** Page faults of the process so far (minor: no disk read). */
  faults(): number;
  arenas(): Arena[];
  /** mincore(2) of the arena into `out` (a byte per page): false when it failed. */
  resident(arena: Arena, out: Uint8Array): boolean;
  /** madvise(MADV_POPULATE_WRITE): 0, or the errno. */
  populate(start: number, length: number): number;
  /** Bytes that may be mapped without pressing on memory (memoryRoom). */
  room(): number;
  pageSize: number;
}

/** The allocator's arenas among the lines of /proc/self/maps (see above). */
export function arenasIn(maps: string): Arena[] {
  const arenas: Arena[] = [];
  for (const m of maps.matchAll(/^([0-9a-f]+)-([0-9a-f]+) rw-p 0+ 00:00 0[ \t]*$/gm)) {
    const start = parseInt(m[1]!, 16);
    const size = parseInt(m[2]!, 16) - start;
    if (size >= 256 * 2 ** 20 && start >= 2 * TiB && start < 32 * TiB) arenas.push({ start, size });
  }
  return arenas;
}

export class Pretouch {
  tickMs = 50;
  /** Page faults over the last `windowTicks` ticks that count as growing: 4 MiB of 4 KiB pages (a daemon's start takes ~1 MiB). */
  minFaults = 1024;
  windowTicks = 4;
  /** Bytes mapped ahead so far (pages already resident not counted). */
  mappedAhead = 0;
  private lastFaults = 0;
  /** Page faults of each of the last `windowTicks` ticks. */
  private readonly recent: number[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;
  /** mincore's answer per arena, kept for the next tick. */
  private readonly pages = new Map<number, Uint8Array>();

  /** `ahead`: bytes to map past the highest resident page of an arena. */
  constructor(
    readonly ahead: number,
    private readonly ops: PretouchOps,
  ) {}

  start(): void {
    this.lastFaults = this.ops.faults();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look: maps ahead when the process faulted `minFaults` pages or more over the last `windowTicks` ticks. */
  tick(): void {
    const faults = this.ops.faults();
    const grew = faults - this.lastFaults;
    this.lastFaults = faults;
    this.recent.push(grew);
    if (this.recent.length > this.windowTicks) this.recent.shift();
    let sum = 0;
    for (const n of this.recent) sum += n;
    if (sum < this.minFaults || this.stopped) return;
    for (const arena of this.ops.arenas()) {
      if (!this.mapAhead(arena)) break;
    }
    // The pages just mapped count as faults: not growth; nor does what was counted before.
    this.lastFaults = this.ops.faults();
    this.recent.length = 0;
  }

  /** False when mapping ahead cannot work here (then it stops for good). */
  private mapAhead(arena: Arena): boolean {
    const page = this.ops.pageSize;
    const count = Math.floor(arena.size / page);
    let pages = this.pages.get(arena.start);
    if (pages?.length !== count) this.pages.set(arena.start, (pages = new Uint8Array(count)));
    if (!this.ops.resident(arena, pages)) return true;
    const highest = pages.lastIndexOf(1);
    if (highest < 0) return true; // not used yet
    const lowest = pages.indexOf(0);
    let end = Math.min(count, highest + 1 + Math.ceil(this.ahead / page));
    if (lowest < 0 || lowest >= end) return true;
    // Never so much that the machine or the process's cgroup runs short for it.
    end = Math.min(end, lowest + Math.floor(this.ops.room() / page));
    if (end <= lowest) return true;
    const errno = this.ops.populate(arena.start + lowest * page, (end - lowest) * page);
    if (errno === 0) {
      this.mappedAhead += Math.max(0, end - highest - 1) * page;
      log.debug(`--pretouch: mapped ${((end - lowest) * page / MiB).toFixed(1)} MiB of the allocator's arena at ${arena.start.toString(16)} (${(this.mappedAhead / MiB).toFixed(0)} MiB ahead so far)`);
      return true;
    }
    // EINVAL: a kernel before 5.14. Anything else (the arena unmapped meanwhile…) is not worth a retry either.
    log.debug(`--pretouch: madvise(MADV_POPULATE_WRITE) failed with errno ${errno}${errno === EINVAL ? " (needs Linux 5.14)" : ""}; not mapping memory ahead any more`);
    this.stop();
    return false;
  }
}

/** The numbers in the file, or null when it cannot be read. */
function readNumber(file: string): number | null {
  try {
    const text = fs.readFileSync(file, "utf8").trim();
    return /^\d+$/.test(text) ? Number(text) : null; // cgroup v2 says "max" for no limit
  } catch {
    return null;
  }
}

/**
 * Bytes that may be mapped ahead without pressing on memory: a quarter of what the machine has
 * available (/proc/meminfo), and half of what the process's memory cgroup (v2 or v1) still allows.
 */
export function memoryRoom(): number {
  let room = Number.MAX_SAFE_INTEGER;
  try {
    const available = /^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (available) room = (Number(available[1]) * 1024) / 4;
  } catch {}
  let groups = "";
  try {
    groups = fs.readFileSync("/proc/self/cgroup", "utf8");
  } catch {}
  for (const line of groups.split("\n")) {
    const [, controllers, at] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (at === undefined) continue;
    const v2 = controllers === "";
    if (!v2 && !controllers!.split(",").includes("memory")) continue;
    const root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    // Inside a container the cgroup's own directory is often the root of the mount.
    for (const dir of [`${root}${at}`, root]) {
      const limit = readNumber(`${dir}/${v2 ? "memory.max" : "memory.limit_in_bytes"}`);
      const usage = readNumber(`${dir}/${v2 ? "memory.current" : "memory.usage_in_bytes"}`);
      if (limit === null || usage === null) continue;
      room = Math.min(room, Math.max(0, limit - usage) / 2);
      break;
    }
  }
  return room;
}

/** The process's own PretouchOps, over libc. */
function processOps(c: Libc): PretouchOps {
  return {
    faults: () => process.resourceUsage().minorPageFault,
    arenas: () => {
      try {
        return arenasIn(fs.readFileSync("/proc/self/maps", "utf8"));
      } catch {
        return [];
      }
    },
    resident: (arena, out) => c.mincore(arena.start, arena.size, out) === 0,
    populate: (start, length) => (c.madvise(start, length, MADV_POPULATE_WRITE) === 0 ? 0 : c.errno()),
    room: memoryRoom,
    pageSize: c.pageSize(),
  };
}

/**
 * A Pretouch of this process mapping up to `ahead` bytes ahead of the allocator, not started;
 * null when off (`ahead` 0), not on Linux, or the allocator gives memory back
 * (MIMALLOC_PURGE_DELAY set to anything but -1: what was mapped ahead would be given back again).
 */
export function processPretouch(ahead: number): Pretouch | null {
  if (ahead <= 0 || process.platform !== "linux" || process.env.MIMALLOC_PURGE_DELAY !== "-1") return null;
  const c = libc();
  return c instanceof Error ? null : new Pretouch(ahead, processOps(c));
}

/** Starts mapping memory ahead of the allocator while the daemon grows (processPretouch). */
export function startPretouch(ahead: number): Pretouch | null {
  const pretouch = processPretouch(ahead);
  pretouch?.start();
  return pretouch;
}
