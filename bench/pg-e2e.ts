/**
 * mq end to end on PostgreSQL next to the file store (docs/benchmarks.md, "mq end to end on
 * PostgreSQL"): `mq server --store postgres://…` (a throwaway cluster, tests/pg-kit.ts, on
 * this machine) or `--data DIR`, one `mq local`, `mq bench`; file and postgres alternate,
 * ROUNDS times per case, each run on a fresh data directory or a fresh database.
 *
 *   bun bench/pg-e2e.ts [ROUNDS=3] [COUNT=50000]      (MQ_BIN: the binary, default dist/mq)
 *
 * MQ_BIN_OLD=PATH adds a third run per case, on PostgreSQL with that binary (A/B of a change).
 *
 * Cases: 1→1; --subs 8; --window 1 (COUNT/10 messages: one publish in flight); --fsync never
 * (the file store without fsync, PostgreSQL with synchronous_commit off). One line per run,
 * then the medians and ranges of deliveries/s.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, startPostgres } from "../tests/pg-kit.ts";
import { mqBin, waitForLog } from "./kit.ts";

const rounds = Number(process.argv[2] ?? 3);
const count = Number(process.argv[3] ?? 50_000);
const cases: Array<{ name: string; bench: string[]; server: string[] }> = [
  { name: "1→1", bench: ["--count", String(count)], server: [] },
  { name: "--subs 8", bench: ["--count", String(count), "--subs", "8"], server: [] },
  { name: "--window 1", bench: ["--count", String(Math.max(1, Math.round(count / 10))), "--window", "1"], server: [] },
  { name: "--fsync never", bench: ["--count", String(count)], server: ["--fsync", "never"] },
];

await using pg = await startPostgres();

/** One run: server (store `store`: "file" or a database URL) + local + bench; the bench's JSON result. */
async function run(bin: string, store: string, c: (typeof cases)[number]): Promise<{ sub_msgs_per_s: number; seconds: number; pub_ack_ms: { p50: number } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-pg-e2e-"));
  const port = await freePort();
  const storeArgs = store === "file" ? ["--data", path.join(dir, "server")] : ["--store", store, "--data", path.join(dir, "server")];
  const server = Bun.spawn([bin, "server", "--listen", `127.0.0.1:${port}`, ...storeArgs, ...c.server], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let local: ReturnType<typeof Bun.spawn> | undefined;
  try {
    await waitForLog(server, /listening on/);
    const socket = path.join(dir, "local.sock");
    const l = Bun.spawn([bin, "local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, "local"), "--socket", socket], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    local = l;
    await waitForLog(l, /connected to the server/);
    const bench = Bun.spawn(["timeout", "300", bin, "bench", "-s", socket, "--json", ...c.bench], { stdout: "pipe", stderr: "pipe" });
    const [out, code] = await Promise.all([new Response(bench.stdout).text(), bench.exited]);
    if (code !== 0) throw new Error(`mq bench exited ${code}: ${await new Response(bench.stderr).text()}`);
    return JSON.parse(out.trim().split("\n").at(-1)!);
  } finally {
    local?.kill("SIGTERM");
    server.kill("SIGTERM");
    await Promise.all([local?.exited, server.exited]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const oldBin = process.env.MQ_BIN_OLD;
const load = () => fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0];
const rates = new Map<string, number[]>();
console.log(`${new Date().toISOString()} ${mqBin}, ${rounds} rounds, load ${load()}`);
for (let round = 1; round <= rounds; round++) {
  for (const c of cases) {
    for (const store of oldBin ? ["file", "postgres", "postgres-old"] : ["file", "postgres"]) {
      const r = await run(store === "postgres-old" ? oldBin! : mqBin, store === "file" ? "file" : await pg.database(), c);
      const key = `${c.name} ${store}`;
      rates.set(key, [...(rates.get(key) ?? []), r.sub_msgs_per_s]);
      console.log(`${key}: ${r.sub_msgs_per_s} deliveries/s, ${r.seconds} s, ack p50 ${r.pub_ack_ms.p50} ms, load ${load()}`);
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [key, xs] of rates) console.log(`${key}: median ${median(xs)} deliveries/s (${Math.min(...xs)}–${Math.max(...xs)})`);
