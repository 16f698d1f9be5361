/**
 * Start-up time of `mq server` (docs/benchmarks.md): fills a data directory, then starts
 * the server on it RUNS times and prints the time from spawn to its `listening on` line,
 * its RSS and open fds once it listens, and the time a clean stop (SIGTERM) takes.
 *
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/server-startup.ts topics 100000   # 100,000 topics, one message each
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/server-startup.ts bytes 1G        # one topic of 1 GiB (1000-byte messages)
 *
 * Options (after those): --data DIR keeps (and reuses) the data directory there; --runs N
 * (default 3); --nofile N runs every server under `ulimit -n N` (default 1024); --cold drops
 * the page cache before each start (root only: `sync; echo 3 > /proc/sys/vm/drop_caches`).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect } from "../lib/client/index.ts";
import { parseSize } from "../lib/cli/parse.ts";

const [mode = "topics", amountArg = "100000", ...rest] = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1]! : fallback;
};
const runs = Number(flag("--runs", "3"));
const nofile = Number(flag("--nofile", "1024"));
const cold = rest.includes("--cold");
const bin = process.env.MQ_BIN ?? path.resolve(import.meta.dir, "../dist/mq");
const dir = flag("--data", "") || fs.mkdtempSync(path.join(os.tmpdir(), "mq-startup-"));
const data = path.join(dir, "server");
const socket = path.join(dir, "local.sock");

/** A daemon under `ulimit -n`, its stderr read all along (kept, so `waitFor` can look back). */
function spawn(args: string[]) {
  const proc = Bun.spawn(["sh", "-c", `ulimit -n ${nofile} && exec "$@"`, "sh", bin, ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let log = "";
  let wake = () => {};
  const ended = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) {
      log += decoder.decode(chunk, { stream: true });
      wake();
    }
  })();
  return Object.assign(proc, {
    async waitFor(re: RegExp): Promise<RegExpMatchArray> {
      for (;;) {
        const m = log.match(re);
        if (m) return m;
        const more = new Promise<void>((resolve) => (wake = resolve));
        if ((await Promise.race([more.then(() => false), ended.then(() => true)])) && !log.match(re)) throw new Error(`exited before ${re}:\n${log}`);
      }
    },
  });
}

async function waitFor(proc: ReturnType<typeof spawn>, re: RegExp): Promise<RegExpMatchArray> {
  return proc.waitFor(re);
}

async function stop(proc: ReturnType<typeof spawn>): Promise<number> {
  const t = performance.now();
  proc.kill("SIGTERM");
  await proc.exited;
  return performance.now() - t;
}

/** Publishes `count` messages made by `make(i)` with at most 256 in flight. */
async function fill(count: number, make: (i: number) => [string, Uint8Array | string]) {
  const server = spawn(["server", "--listen", "127.0.0.1:0", "--data", data]);
  const port = (await waitFor(server, /listening on 127\.0\.0\.1:(\d+)/))[1];
  const local = spawn(["local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, "local"), "--socket", socket]);
  await waitFor(local, /connected to the server/);
  const t = performance.now();
  try {
    await using mq = await connect({ socket });
    const id = await mq.create();
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const [topic, body] = make(next++);
        await mq.publish(id, topic, body);
      }
    };
    await Promise.all(Array.from({ length: 256 }, worker));
  } finally {
    local.kill("SIGTERM");
    await local.exited;
    const stopMs = await stop(server);
    console.log(`filled ${data}: ${count} messages in ${((performance.now() - t) / 1000).toFixed(1)} s; stop ${(stopMs / 1000).toFixed(2)} s`);
  }
}

if (!fs.existsSync(data)) {
  if (mode === "topics") {
    const n = Number(amountArg);
    await fill(n, (i) => [`t.${i}`, `message ${i}`]);
  } else if (mode === "bytes") {
    const body = new Uint8Array(1000).fill(120);
    await fill(Math.ceil(parseSize("bytes", amountArg) / 1000), () => ["big", body]);
  } else throw new Error(`mode must be topics or bytes, got ${mode}`);
}

const du = Bun.spawnSync(["du", "-sh", data]).stdout.toString().split("\t")[0];
console.log(`data ${data} (${du}), ${fs.readdirSync(path.join(data, "topics")).length} topics; ulimit -n ${nofile}${cold ? "; page cache dropped before each start" : ""}`);
for (let r = 0; r < runs; r++) {
  if (cold) {
    Bun.spawnSync(["sync"]);
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
  }
  const t = performance.now();
  const server = spawn(["server", "--listen", "127.0.0.1:0", "--data", data]);
  const line = (await waitFor(server, /listening on .*/))[0];
  const startMs = performance.now() - t;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]) / 1024;
  const fds = fs.readdirSync(`/proc/${server.pid}/fd`).length;
  const stopMs = await stop(server);
  console.log(`run ${r + 1}: start ${(startMs / 1000).toFixed(2)} s, RSS ${rss.toFixed(0)} MiB, ${fds} fds open, stop ${(stopMs / 1000).toFixed(2)} s — ${line.replace(/^.*listening on /, "")}`);
}
if (!rest.includes("--data")) fs.rmSync(dir, { recursive: true, force: true });
