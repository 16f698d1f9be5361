/**
 * What an open dashboard costs the broker (docs/benchmarks.md, docs/http.md#dashboard):
 *
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/dashboard.ts [TOPICS=100,1000,10000] [POLLS=40]
 *
 * For each topic count, `mq up --http` on fresh temp data with one id subscribed to every topic
 * and one message in each (so every topic has a consumer with a backlog); then POLLS polls made
 * the way the page makes them (GET /healthz, then /api/topics, /api/consumers and /api/brokers at
 * once), five times. Prints mq up's CPU per poll (utime + stime, median and range of the five),
 * the bytes of one poll's answers, and the CPU share a tab polling every 1.5 s takes.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect } from "../lib/client/index.ts";
import { mqBin, waitForLog } from "./kit.ts";

const POLL_MS = 1500; // the page's poll interval (lib/http/dashboard.html)
const REPEATS = 5;

function positiveList(name: string, text: string): number[] {
  const values = text.split(",").map(Number);
  if (values.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(`${name} must be positive integers, comma-separated; got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return values;
}

const [topicsArg = "100,1000,10000", pollsArg = "40"] = process.argv.slice(2);
const topicCounts = positiveList("TOPICS", topicsArg);
const polls = positiveList("POLLS", pollsArg)[0]!;

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // fields 14 and 15 of stat(5); USER_HZ 100
}

/** One poll as the page makes it; returns the bytes of its answers. */
async function poll(base: string): Promise<number> {
  const get = async (p: string) => {
    const res = await fetch(base + p);
    if (!res.ok) throw new Error(`${p}: HTTP ${res.status}`);
    return (await res.arrayBuffer()).byteLength;
  };
  const health = await get("/healthz");
  const rest = await Promise.all(["/api/topics", "/api/consumers", "/api/brokers"].map(get));
  return health + rest.reduce((a, b) => a + b, 0);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`| topics | CPU ms per poll (median, range of ${REPEATS}×${polls}) | bytes per poll | CPU share at one poll / ${POLL_MS / 1000} s |\n|---|---|---|---|`);
for (const topics of topicCounts) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-dashboard-bench-"));
  const socket = path.join(dir, "s.sock");
  const up = Bun.spawn([mqBin, "up", "--data", dir, "--listen", "127.0.0.1:0", "--socket", socket, "--http", "127.0.0.1:0"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  try {
    const m = await waitForLog(up, /^(?=[\s\S]*connected to the server)(?=[\s\S]*http listening on (http:\/\/127\.0\.0\.1:\d+))/);
    const base = m[1]!;
    {
      await using mq = await connect({ socket });
      const pub = await mq.create();
      const sub = await mq.create();
      const names = Array.from({ length: topics }, (_, i) => `dash.${i}`);
      for (let i = 0; i < names.length; i += 500) await mq.subscribe(sub, names.slice(i, i + 500));
      for (let i = 0; i < names.length; i += 500) await Promise.all(names.slice(i, i + 500).map((t) => mq.publish(pub, t, new Uint8Array(128))));
    }
    const bytes = await poll(base); // also warms the routes up
    const perPoll: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const cpu0 = cpuSeconds(up.pid);
      for (let i = 0; i < polls; i++) await poll(base);
      perPoll.push(((cpuSeconds(up.pid) - cpu0) / polls) * 1000);
    }
    const mid = median(perPoll);
    console.log(
      `| ${topics.toLocaleString("en-US")} | ${mid.toFixed(1)} (${Math.min(...perPoll).toFixed(1)}–${Math.max(...perPoll).toFixed(1)}) | ${bytes.toLocaleString("en-US")} | ${((mid / POLL_MS) * 100).toFixed(1)} % |`,
    );
  } finally {
    up.kill("SIGTERM");
    await up.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
