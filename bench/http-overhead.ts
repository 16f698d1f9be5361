/**
 * What the HTTP endpoint's bookkeeping costs on the message path (issue 11): `mq bench`
 * through `mq up --store memory` (no disk, so the CPU of the path is what is measured), in
 * alternating rounds of three variants:
 *   A     the binary before the endpoint ($MQ_A, default /work/main/dist/mq)
 *   B     this binary, no --http (the per-topic counters and latency histograms are always on)
 *   B+web this binary with --http and --local-http, /metrics of both scraped every 200 ms
 * Prints one JSON line per run and the medians and spread (min–max) per variant. Besides the
 * rates (wall clock, which the load of a shared box moves a lot), the CPU time the `mq up`
 * process used per message (user + system, from /proc/PID/stat), which moves less.
 *
 *   bun bench/http-overhead.ts [rounds=5] [count=50000]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mqBin, waitForLog } from "./kit.ts";

const rounds = Number(process.argv[2] ?? 5);
const count = Number(process.argv[3] ?? 50_000);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(count) || count < 1) {
  console.error(`usage: bun bench/http-overhead.ts [rounds >= 1] [count >= 1], got ${JSON.stringify(process.argv.slice(2))}`);
  process.exit(2);
}
const binA = process.env.MQ_A ?? "/work/main/dist/mq";

interface Result {
  variant: string;
  pub: number;
  sub: number;
  p50: number;
  cpuUsPerMsg: number;
}

/** User + system CPU seconds of process `pid` so far (Linux). */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function run(variant: "A" | "B" | "B+web"): Promise<Result> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-bench-http-"));
  const socket = path.join(dir, "s.sock");
  const bin = variant === "A" ? binA : mqBin;
  const web = variant === "B+web" ? ["--http", "127.0.0.1:0", "--local-http", "127.0.0.1:0"] : [];
  const up = Bun.spawn([bin, "up", "--data", dir, "--socket", socket, "--listen", "127.0.0.1:0", "--store", "memory", ...web], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let scraper: ReturnType<typeof setInterval> | null = null;
  try {
    const log = await waitForLog(up, variant === "B+web" ? /http listening on (http:\S+)[^]*http listening on (http:\S+)[^]*mq is up|mq is up[^]*/ : /mq is up/);
    if (variant === "B+web") {
      const urls = [log[1]!, log[2]!];
      scraper = setInterval(() => {
        for (const u of urls) void fetch(`${u}/metrics`).then((r) => r.text());
      }, 200);
    }
    const cpuBefore = cpuSeconds(up.pid);
    const bench = Bun.spawnSync([bin, "bench", "--count", String(count), "--json", "--socket", socket], { stdout: "pipe", stderr: "ignore", timeout: 300_000 });
    const r = JSON.parse(bench.stdout.toString().trim().split("\n")[0]!);
    const cpuUsPerMsg = Math.round(((cpuSeconds(up.pid) - cpuBefore) * 1e6) / count);
    return { variant, pub: r.pub_msgs_per_s, sub: r.sub_msgs_per_s, p50: r.latency_ms.p50, cpuUsPerMsg };
  } finally {
    if (scraper) clearInterval(scraper);
    up.kill("SIGTERM");
    await up.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const results: Result[] = [];
for (let i = 0; i < rounds; i++) {
  for (const v of ["A", "B", "B+web"] as const) {
    const r = await run(v);
    results.push(r);
    console.log(JSON.stringify({ round: i + 1, ...r }));
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
for (const v of ["A", "B", "B+web"]) {
  const mine = results.filter((r) => r.variant === v);
  const line = (k: "pub" | "sub" | "p50" | "cpuUsPerMsg") => `${median(mine.map((r) => r[k]))} (${Math.min(...mine.map((r) => r[k]))}–${Math.max(...mine.map((r) => r[k]))})`;
  console.log(`${v.padEnd(6)} pub msgs/s ${line("pub")}  sub msgs/s ${line("sub")}  e2e p50 ms ${line("p50")}  mq up CPU µs/msg ${line("cpuUsPerMsg")}`);
}
