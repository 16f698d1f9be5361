/**
 * The network measurement of docs/benchmarks.md: `mq bench` through a local broker that
 * reaches its server through the test kit's delay proxy (tests/faults/tcp-proxy.ts), at
 * several round trips, 1 → 1 and 1 → N fan-out (0: publish only). Each figure is run RUNS
 * times on a fresh server, proxy and local broker, alternating the binaries of `--bins` run
 * by run (A, B, A, B, …: an A/B comparison on a shared machine); the table shows, per
 * binary, the median run (by received msgs/s; published with no subscriber), all runs, and
 * the 1-minute load average when it ended.
 *
 *     ./node_modules/.bin/bun bench/network.ts [--rtt 0,2,20,100] [--subs 1,8] [--count 40000]
 *         [--pubs 1] [--window 4096] [--runs 3] [--local="--max-inflight 4096"]
 *         [--bins /work/main/dist/mq,dist/mq]
 *
 * Runs the compiled binaries of `--bins` (default: MQ_BIN, else dist/mq); prints a Markdown table.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { TcpProxy } from "../tests/faults/tcp-proxy.ts";
import { mqBin, waitForLog } from "./kit.ts";

const { values } = parseArgs({
  options: {
    rtt: { type: "string", default: "0,2,20,100" },
    subs: { type: "string", default: "1,8" },
    /** Publishers (each its own connection, so its own batch in flight). */
    pubs: { type: "string", default: "1" },
    count: { type: "string", default: "40000" },
    window: { type: "string", default: "4096" },
    runs: { type: "string", default: "3" },
    /** Extra flags of `mq local`, space-separated. */
    local: { type: "string", default: "" },
    /** Binaries to compare, comma-separated, run alternately. */
    bins: { type: "string", default: mqBin },
  },
});
/** The numbers of a comma-separated flag; exits 2 naming the flag and the value when one is not a number >= `min`. */
function numbers(flag: string, text: string, min: number): number[] {
  const list = text.split(",").map(Number);
  if (text === "" || list.some((n) => !Number.isFinite(n) || n < min)) {
    console.error(`bench/network.ts: --${flag} ${JSON.stringify(text)}: expected comma-separated numbers >= ${min}, e.g. --${flag} ${min === 0 ? "0,20" : "1,8"}`);
    process.exit(2);
  }
  return list;
}
const rtts = numbers("rtt", values.rtt, 0);
const fanouts = numbers("subs", values.subs, 0);
const [runs] = numbers("runs", values.runs, 1) as [number];
numbers("pubs", values.pubs, 1);
numbers("count", values.count, 1);
numbers("window", values.window, 1);
const localFlags = values.local.split(" ").filter((f) => f !== "");
const bins = values.bins.split(",").filter((b) => b !== "");
for (const b of bins) {
  if (!fs.existsSync(b)) {
    console.error(`bench/network.ts: --bins: no binary at ${JSON.stringify(b)}; build it (bun scripts/build.ts) or give another path`);
    process.exit(2);
  }
}

interface Run {
  sub: number;
  pub: number;
  p50: number;
  p99: number;
  /** The largest `delivery_window_max` seen in `mq stats` while it ran. */
  window: number;
  /** The largest `forward_window` (requests) of the local broker seen meanwhile (0: the binary has none). */
  forward: number;
  load: number;
}

function spawn(bin: string, args: string[], env: Record<string, string> = {}) {
  return Bun.spawn([bin, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
}

async function run(bin: string, rttMs: number, subs: number): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-netbench-"));
  const socket = path.join(dir, "local.sock");
  const server = spawn(bin, ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "server"), "--fsync", "never"]);
  let local: ReturnType<typeof spawn> | null = null;
  let proxy: TcpProxy | null = null;
  try {
    const port = Number((await waitForLog(server, /listening on 127\.0\.0\.1:(\d+)/))[1]);
    proxy = await TcpProxy.start({ hostname: "127.0.0.1", port }, { delayMs: rttMs / 2 });
    local = spawn(bin, ["local", "--server", proxy.address, "--data", path.join(dir, "local"), "--socket", socket, ...localFlags]);
    await waitForLog(local, /connected to the server/);
    const bench = spawn(bin, ["bench", "--json", "--count", values.count, "--window", values.window, "--subs", String(subs), "--pubs", values.pubs], { MQ_SOCKET: socket });
    let window = 0;
    let forward = 0;
    let running = true;
    const watching = (async () => {
      while (running) {
        const stats = spawn(bin, ["stats", "--json"], { MQ_SOCKET: socket });
        const text = await new Response(stats.stdout).text();
        await stats.exited;
        try {
          const parsed = JSON.parse(text);
          window = Math.max(window, parsed.server.delivery_window_max ?? 0);
          forward = Math.max(forward, parsed.local.forward_window ?? 0);
        } catch {} // between runs, or an older binary: no figure
        await Bun.sleep(200);
      }
    })();
    const [out, err, code] = await Promise.all([new Response(bench.stdout).text(), new Response(bench.stderr).text(), bench.exited]);
    running = false;
    await watching;
    if (code !== 0) throw new Error(`mq bench exited ${code}: ${err.slice(-500)}`);
    const r = JSON.parse(out.trim().split("\n").at(-1)!);
    return { sub: r.sub_msgs_per_s, pub: r.pub_msgs_per_s, p50: r.latency_ms?.p50 ?? NaN, p99: r.latency_ms?.p99 ?? NaN, window, forward, load: os.loadavg()[0]! };
  } finally {
    local?.kill("SIGTERM");
    await local?.exited;
    await proxy?.stop();
    server.kill("SIGTERM");
    await server.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`${values.count} messages of 128 B per publisher and run, ${values.pubs} publisher(s), --window ${values.window}${localFlags.length ? `, mq local ${localFlags.join(" ")}` : ""}, median of ${runs} runs (by received msgs/s each; with no subscriber by published), binaries run alternately; ${os.cpus().length} cores`);
console.log("");
console.log("| binary | round trip | subscribers | received msgs/s (each) | published msgs/s | end-to-end p50 | p99 | largest window | largest forward window | load avg (1 min) | runs (the figure) |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const subs of fanouts) {
  for (const rtt of rtts) {
    const results = new Map<string, Run[]>(bins.map((b) => [b, []]));
    for (let i = 0; i < runs; i++) for (const b of bins) results.get(b)!.push(await run(b, rtt, subs));
    for (const b of bins) {
      const list = results.get(b)!;
      // mq bench reports received msgs/s over all subscribers: per subscriber is that / subs.
      const figure = (r: Run) => (subs === 0 ? r.pub : Math.round(r.sub / subs));
      const each = list.map(figure);
      const mid = list.find((r) => figure(r) === median(each))!;
      const received = subs === 0 ? "–" : median(each).toLocaleString("en");
      const latency = subs === 0 ? "– | –" : `${mid.p50} ms | ${mid.p99} ms`;
      console.log(
        `| ${b} | ${rtt} ms | ${subs} | ${received} | ${mid.pub.toLocaleString("en")} | ${latency} | ${mid.window || "–"} | ${mid.forward || "–"} | ${mid.load.toFixed(2)} | ${each.map((n) => n.toLocaleString("en")).join(" / ")} |`,
      );
    }
  }
}
