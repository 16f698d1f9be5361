/**
 * The lazy-consumer measurement of docs/architecture.md (memory of the local broker): one id
 * subscribed to TOPICS topics, one message of SIZE bytes published to each, nothing ever
 * received. Prints the local broker's RSS and buffered bytes once it stops taking deliveries.
 *
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/lazy-consumer.ts 1000 1M [mq local flags…]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect } from "../lib/client/index.ts";
import { parseSize } from "../lib/cli/parse.ts";
import { mqBin, waitForLog } from "./kit.ts";

const [topicsArg = "1000", sizeArg = "1M", ...localFlags] = process.argv.slice(2);
const topics = Number(topicsArg);
const size = parseSize("size", sizeArg);
const bin = mqBin;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-lazy-"));
const socket = path.join(dir, "local.sock");

function spawn(args: string[]) {
  return Bun.spawn([bin, ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
}

const server = spawn(["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "server"), "--fsync", "never"]);
const port = (await waitForLog(server, /listening on 127\.0\.0\.1:(\d+)/))[1];
const local = spawn(["local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, "local"), "--socket", socket, ...localFlags]);
await waitForLog(local, /connected to the server/);
try {
  await using mq = await connect({ socket });
  const id = await mq.create();
  const names = Array.from({ length: topics }, (_, i) => `lazy.t${i}`);
  for (let i = 0; i < names.length; i += 1000) await mq.subscribe(id, names.slice(i, i + 1000));
  const payload = new Uint8Array(size).fill(120);
  for (let i = 0; i < names.length; i += 8) await Promise.all(names.slice(i, i + 8).map((t) => mq.publish(id, t, payload)));
  // Settled: the buffer has not changed for a second.
  let last = -1;
  let stats = (await mq.stats()).local;
  for (let i = 0; i < 600 && stats.pending !== last; i++) {
    last = stats.pending as number;
    await Bun.sleep(1000);
    stats = (await mq.stats()).local;
  }
  const mib = (n: unknown) => `${((n as number) / 1048576).toFixed(0)} MiB`;
  console.log(
    `${topics} topics x ${sizeArg}: local broker rss ${mib(stats.rss_bytes)}, pending ${stats.pending} messages` +
      (stats.buffered_bytes === undefined ? "" : `, buffered ${mib(stats.buffered_bytes)} (budgets ${mib(stats.buffer_bytes)} / ${mib(stats.buffer_bytes_per_id)} per id)`),
  );
} finally {
  local.kill("SIGTERM");
  await local.exited;
  server.kill("SIGTERM");
  await server.exited;
  fs.rmSync(dir, { recursive: true, force: true });
}
