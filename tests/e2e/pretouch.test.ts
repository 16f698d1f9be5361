/**
 * `--pretouch` (lib/cli/pretouch.ts): while a daemon grows, memory is mapped ahead of its
 * allocator with madvise(MADV_POPULATE_WRITE), so that growing costs fewer page faults.
 * The rule on a made-up process; then a real Bun process whose allocations after a
 * pretouch take far fewer page faults than without (Linux); then the flag at the edge.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { arenasIn, memoryRoom, Pretouch, type Arena, type PretouchOps } from "../../lib/cli/pretouch.ts";
import { Daemon, mq, mqCommand, startUp, teardown, tmpDir } from "./harness.ts";

const MiB = 2 ** 20;
const PAGE = 4096;

/** A process of `size` bytes of arena at 3 TiB, with the pages in `resident` resident. */
function madeUp(size = 64 * MiB) {
  const arena: Arena = { start: 3 * 2 ** 40, size };
  const state = { faults: 0, resident: new Set<number>(), populated: [] as Array<[number, number]>, errno: 0, room: Number.MAX_SAFE_INTEGER };
  const ops: PretouchOps = {
    faults: () => state.faults,
    arenas: () => [arena],
    resident: (a, out) => {
      out.fill(0);
      for (const p of state.resident) out[p] = 1;
      return true;
    },
    populate: (start, length) => {
      if (state.errno !== 0) return state.errno;
      state.populated.push([(start - arena.start) / PAGE, length / PAGE]);
      for (let p = (start - arena.start) / PAGE; p < (start - arena.start + length) / PAGE; p++) state.resident.add(p);
      state.faults += 10; // the populate's own page faults
      return 0;
    },
    room: () => state.room,
    pageSize: PAGE,
  };
  return { arena, state, ops };
}

describe("the rule", () => {
  test("the allocator's arenas in /proc/self/maps: anonymous, read-write, 256 MiB or more, at 2–32 TiB", () => {
    const maps = [
      "01a40000-0684a000 r-xp 00000000 fd:01 123 /usr/bin/mq",
      "4debc400000-4defc400000 rw-p 00000000 00:00 0 ", // 1 GiB at ~5.3 TiB: mimalloc's
      "4df00000000-4df08000000 rw-p 00000000 00:00 0", // 128 MiB: too small
      "4e000000000-4e040000000 r--p 00000000 00:00 0", // not writable
      "4e100000000-4e140000000 rw-p 00000000 fd:01 9 /tmp/file", // a file
      "7f2000000000-7f2100000000 rw-p 00000000 00:00 0", // 4 GiB at ~127 TiB: not the allocator's
      "7ffc3e5f0000-7ffc3e611000 rw-p 00000000 00:00 0                          [stack]",
    ].join("\n");
    expect(arenasIn(maps)).toEqual([{ start: 0x4debc400000, size: 2 ** 30 }]);
  });

  test("a daemon's start (under 4 MiB of faults in 4 ticks) maps nothing; growth beyond maps from the lowest hole to `ahead` past the highest resident page", () => {
    const { state, ops } = madeUp();
    const p = new Pretouch(8 * MiB, ops);
    state.resident = new Set([0, 1, 2, 5, 100]);
    p.tick(); // the baseline
    state.faults += 300; // a daemon's start: ~1 MiB
    p.tick();
    for (let i = 0; i < 10; i++) p.tick(); // then quiet
    expect(state.populated).toEqual([]);
    for (let i = 0; i < 6; i++) {
      state.faults += 200; // slow growth: 800 pages in any 4 ticks
      p.tick();
    }
    expect(state.populated).toEqual([]);
    state.faults += 300;
    p.tick(); // 200 + 200 + 200 + 300 = 900 in the last 4 ticks
    expect(state.populated).toEqual([]);
    state.faults += 400;
    p.tick(); // 200 + 200 + 300 + 400 = 1,100
    // Pages 3..100 (the holes below the highest) and 2,048 pages (8 MiB) past page 100.
    expect(state.populated).toEqual([[3, 100 - 3 + 1 + 2048]]);
    expect(p.mappedAhead).toBe(8 * MiB);
    // Its own faults and the ticks before are not counted again: the next quiet ticks map nothing.
    for (let i = 0; i < 4; i++) p.tick();
    expect(state.populated.length).toBe(1);
  });

  test("an unused arena is left alone; the end of the arena bounds what is mapped", () => {
    const { state, ops } = madeUp(16 * MiB);
    const p = new Pretouch(64 * MiB, ops);
    p.tick();
    state.faults += 2_000;
    p.tick();
    expect(state.populated).toEqual([]); // no page of the arena is resident yet
    state.resident = new Set([0, 10]);
    state.faults += 2_000;
    p.tick();
    expect(state.populated).toEqual([[1, 16 * MiB / PAGE - 1]]);
  });

  test("never more than the memory there is room for (a quarter of what is available, half of what the cgroup allows)", () => {
    const { state, ops } = madeUp();
    const p = new Pretouch(8 * MiB, ops);
    state.resident = new Set([0, 5]);
    state.room = 2 * MiB + 100;
    p.tick();
    state.faults += 2_000;
    p.tick();
    expect(state.populated).toEqual([[1, 512]]); // 2 MiB from the lowest hole on
    expect(p.mappedAhead).toBe((512 - 5) * PAGE);
    state.room = 100; // less than a page
    state.faults += 2_000;
    p.tick();
    expect(state.populated.length).toBe(1);
  });

  test.skipIf(process.platform !== "linux")("memoryRoom: at most a quarter of MemAvailable", () => {
    const available = Number(/^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
    const room = memoryRoom();
    expect(room).toBeGreaterThan(0);
    expect(room).toBeLessThanOrEqual(available / 4 + 64 * MiB); // MemAvailable moves between the two reads
  });

  test("a kernel without MADV_POPULATE_WRITE (EINVAL) stops it for good", () => {
    const { state, ops } = madeUp();
    const p = new Pretouch(8 * MiB, ops);
    state.resident = new Set([0]);
    state.errno = 22;
    p.tick();
    state.faults += 2_000;
    p.tick();
    expect(p.mappedAhead).toBe(0);
    state.errno = 0;
    for (let i = 0; i < 3; i++) {
      state.faults += 2_000;
      p.tick();
    }
    expect(state.populated).toEqual([]);
  });
});

/** A Bun process that grows by 8 MiB three times (a tick after each: 2,048 faults a tick), then counts the faults of 24 MiB more. */
const GROW = `
import { processPretouch } from ${JSON.stringify(path.resolve(import.meta.dir, "../../lib/cli/pretouch.ts"))};
const ahead = Number(process.env.MQ_TEST_AHEAD);
const p = ahead > 0 ? processPretouch(ahead) : null;
if (ahead > 0 && p === null) throw new Error("no pretouch in this process");
const keep = [];
const grow = (mib) => { for (let i = 0; i < mib * 16; i++) { const b = new Uint8Array(65536); b.fill(1); keep.push(b); } };
const faults = () => process.resourceUsage().minorPageFault;
p?.tick();
for (let i = 0; i < 3; i++) { grow(8); p?.tick(); }
const before = faults();
grow(24);
console.log(JSON.stringify({ mappedAhead: p?.mappedAhead ?? 0, faults: faults() - before }));
`;

async function grow(ahead: number): Promise<{ mappedAhead: number; faults: number }> {
  const proc = Bun.spawn([process.execPath, "-e", GROW], { env: { ...process.env, MIMALLOC_PURGE_DELAY: "-1", MQ_TEST_AHEAD: String(ahead) }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect({ code, err }).toEqual({ code: 0, err: "" });
  return JSON.parse(out);
}

describe.skipIf(process.platform !== "linux")("a real process (Linux: /proc/self/maps, MADV_POPULATE_WRITE)", () => {
  test("24 MiB allocated after the process grew take a fraction of the page faults they take without", async () => {
    const without = await grow(0);
    const ahead = await grow(256 * MiB);
    expect(without.faults).toBeGreaterThan((24 * MiB) / PAGE / 2); // ~6,144: a fault a page
    expect(ahead.mappedAhead).toBeGreaterThanOrEqual(256 * MiB);
    expect(ahead.faults).toBeLessThan(without.faults / 4);
  });
});

describe("--pretouch at the edge", () => {
  const daemons: Daemon[] = [];
  const dirs: string[] = [];
  afterAll(() => teardown(daemons, dirs));

  test("a value that is not a size is refused with the flag named (exit 2), before anything starts", async () => {
    const dir = tmpDir("mq-pretouch-");
    dirs.push(dir);
    const proc = Bun.spawn([...mqCommand(), "up", "--pretouch", "lots", "--data", dir, "--socket", path.join(dir, "s.sock"), "--listen", "127.0.0.1:0"], { stdout: "pipe", stderr: "pipe" });
    const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(err).toContain("--pretouch");
    expect(err).toContain("lots");
  });

  test("mq up under load maps memory ahead of its allocator (debug log); with --pretouch 0 it never does", async () => {
    for (const value of ["16M", "0"]) {
      const up = await startUp({ args: ["--pretouch", value, "--log-level", "debug", "--fsync", "never"] });
      daemons.push(up.daemon);
      dirs.push(up.dataDir);
      const bench = await mq(up.socket, ["bench", "--count", "60000", "--subs", "1"], { timeoutMs: 90_000 });
      expect(bench.code).toBe(0);
      if (value === "0") expect(up.daemon.log).not.toContain("--pretouch: mapped");
      else await up.daemon.waitFor(/--pretouch: mapped [\d.]+ MiB of the allocator's arena/);
      expect(await up.daemon.stop()).toBe(0);
    }
  });
});
