/**
 * How mq grows (docs/benchmarks.md, issue 10). Three modes, each on fresh temp data:
 *
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/growth.ts spread [COUNT=50000]
 *         broker CPU per message of `mq up` (utime + stime) with 1 topic / 1 id, 10,000 topics
 *         (one id subscribed to all), and 10,000 ids (each subscribed to its own topic);
 *         COUNT messages of 128 B are published round robin, then received. A third argument
 *         runs only the cases whose name contains it (e.g. "ids").
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/growth.ts backlog [COUNT=1000000]
 *         RSS of `mq server` and `mq local` (separate processes) once COUNT messages of 128 B
 *         wait for a subscriber that does not recv.
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/growth.ts conns [CLIENTS=1000]
 *         CLIENTS library clients on one local broker, each its own connection, id, pub and recv;
 *         RSS of the local broker and the server. Run under `ulimit -n 4096` or more.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect, type MqClient } from "../lib/client/index.ts";

const [mode = "spread", amountArg] = process.argv.slice(2);
const bin = process.env.MQ_BIN ?? path.resolve(import.meta.dir, "../dist/mq");
const PAYLOAD = new Uint8Array(128);
const WINDOW = 256;
const SUBSCRIBE_CHUNK = 500; // topics per subscribe call: a big list takes long to answer

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // fields 14 and 15 of stat(5); USER_HZ 100
}

/** VmRSS and VmHWM of a process, in MiB. */
function memory(pid: number): string {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const mib = (key: string) => (Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)![1]) / 1024).toFixed(0);
  return `VmRSS ${mib("VmRSS")} MiB, VmHWM ${mib("VmHWM")} MiB`;
}

/** A daemon whose stderr is read until `ready` appears. */
async function daemon(args: string[], ready: string) {
  const proc = Bun.spawn([bin, ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let log = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) if ((log += decoder.decode(chunk, { stream: true })).includes(ready)) break;
  if (!log.includes(ready)) throw new Error(`${args[0]} exited before "${ready}":\n${log}`);
  return { proc, log };
}

async function stop(proc: { kill(signal: string): void; exited: Promise<number> }) {
  proc.kill("SIGTERM");
  await proc.exited;
}

/** Publishes `count` messages with WINDOW in flight, topic chosen by `topicOf(i)`. */
async function publishAll(mq: MqClient, id: number, count: number, topicOf: (i: number) => string) {
  let next = 0;
  const worker = async () => {
    while (next < count) await mq.publish(id, topicOf(next++), PAYLOAD);
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
}

/** Runs `fn` over `items` with at most 500 calls in flight (a connection takes 1024 requests at once). */
async function inChunks<T>(items: T[], fn: (item: T, index: number) => Promise<void>) {
  for (let i = 0; i < items.length; i += 500) await Promise.all(items.slice(i, i + 500).map((item, j) => fn(item, i + j)));
}

async function spread(count: number, only?: string) {
  const N = 10_000;
  const cases = [
    { name: "1 topic, 1 id", topics: 1, ids: 1 },
    { name: "10,000 topics, 1 id", topics: N, ids: 1 },
    { name: "10,000 ids, a topic each", topics: N, ids: N },
  ];
  console.log(`| case | publish msgs/s | receive msgs/s | mq up CPU µs/msg | mq up after the run |\n|---|---|---|---|---|`);
  for (const c of cases.filter((c) => !only || c.name.includes(only))) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-growth-"));
    const socket = path.join(dir, "s.sock");
    const { proc: up } = await daemon(["up", "--data", dir, "--listen", "127.0.0.1:0", "--socket", socket], "connected to the server");
    try {
      await using mq = await connect({ socket });
      const pubId = await mq.create();
      const topics = Array.from({ length: c.topics }, (_, i) => `g.${i}`);
      const ids: number[] = [];
      for (let i = 0; i < c.ids; i++) ids.push(await mq.create());
      // One id takes every topic; with as many ids as topics, id i takes topic i.
      if (c.ids === 1) for (let i = 0; i < topics.length; i += SUBSCRIBE_CHUNK) await mq.subscribe(ids[0]!, topics.slice(i, i + SUBSCRIBE_CHUNK));
      else await inChunks(ids, async (id, i) => void (await mq.subscribe(id, [topics[i]!])));

      const cpu0 = cpuSeconds(up.pid);
      let t = performance.now();
      await publishAll(mq, pubId, count, (i) => topics[i % topics.length]!);
      const pubRate = count / ((performance.now() - t) / 1000);
      t = performance.now();
      let received = 0;
      for (let round = 0; received < count && round < 1000; round++) {
        await inChunks(ids, async (id) => {
          const batch = await mq.recv(id, { max: 1000 });
          received += batch.messages.length;
          await batch.ack();
        });
      }
      if (received !== count) throw new Error(`${c.name}: received ${received} of ${count}`);
      const recvRate = count / ((performance.now() - t) / 1000);
      const cpuUs = ((cpuSeconds(up.pid) - cpu0) / count) * 1e6;
      console.log(`| ${c.name} | ${pubRate.toFixed(0)} | ${recvRate.toFixed(0)} | ${cpuUs.toFixed(1)} | ${memory(up.pid)} |`);
    } finally {
      await stop(up);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function withServerAndLocal(body: (mq: MqClient, server: number, local: number) => Promise<void>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-growth-"));
  const socket = path.join(dir, "local.sock");
  const server = await daemon(["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "server")], "listening on");
  try {
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(server.log)![1];
    const { proc: local } = await daemon(["local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, "local"), "--socket", socket], "connected to the server");
    try {
      console.log(`idle: server ${memory(server.proc.pid)}; local ${memory(local.pid)}`);
      await using mq = await connect({ socket });
      await body(mq, server.proc.pid, local.pid);
    } finally {
      await stop(local);
    }
  } finally {
    await stop(server.proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function backlog(count: number) {
  await withServerAndLocal(async (mq, server, local) => {
    const pubId = await mq.create();
    const lazy = await mq.create();
    await mq.subscribe(lazy, ["backlog"]);
    const t = performance.now();
    await publishAll(mq, pubId, count, () => "backlog");
    console.log(`published ${count} messages of 128 B in ${((performance.now() - t) / 1000).toFixed(1)} s; none received`);
    console.log(`backlog ${count}: server ${memory(server)}; local ${memory(local)}`);
    const first = await mq.recv(lazy, { max: 1 });
    if (first.messages.length !== 1) throw new Error("the backlog is not there");
  });
}

async function connections(clients: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-growth-"));
  const socket = path.join(dir, "local.sock");
  const server = await daemon(["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "server")], "listening on");
  const port = /listening on 127\.0\.0\.1:(\d+)/.exec(server.log)![1];
  const { proc: local } = await daemon(["local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, "local"), "--socket", socket], "connected to the server");
  const open: MqClient[] = [];
  try {
    console.log(`idle: server ${memory(server.proc.pid)}; local ${memory(local.pid)}`);
    // Each client: its own connection and id, subscribed to its own topic, one pub, one recv.
    const ids: number[] = [];
    for (let i = 0; i < clients; i++) {
      const mq = await connect({ socket });
      open.push(mq);
      const id = await mq.create();
      ids.push(id);
      await mq.subscribe(id, [`c.${i}`]);
      await mq.publish(id, `c.${i}`, PAYLOAD);
    }
    // All connections still open: every client receives its message at once.
    const received = await Promise.all(open.map(async (mq, i) => (await mq.recv(ids[i]!, { max: 1, waitMs: 5000 })).messages.length));
    const ok = received.filter((n) => n === 1).length;
    console.log(`${clients} clients connected, each pub + recv: ${ok} received their message`);
    console.log(`with ${clients} connections open: local ${memory(local.pid)}, ${fs.readdirSync(`/proc/${local.pid}/fd`).length} fds; server ${memory(server.proc.pid)}`);
  } finally {
    for (const mq of open) mq.close();
    await stop(local);
    await stop(server.proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const amount = amountArg === undefined ? undefined : Number(amountArg);
if (amount !== undefined && !(Number.isSafeInteger(amount) && amount > 0)) {
  console.error(`bench/growth.ts ${mode}: the count must be a positive integer, got "${amountArg}"`);
  process.exit(2);
}
if (mode === "spread") await spread(amount ?? 50_000, process.argv[4]);
else if (mode === "backlog") await backlog(amount ?? 1_000_000);
else if (mode === "conns") await connections(amount ?? 1000);
else {
  console.error(`mode must be spread, backlog or conns, got ${mode}`);
  process.exit(2);
}
