/**
 * What the features of the subscription model cost when used (docs/benchmarks.md): COUNT
 * messages of 128 B through a fresh `mq up` (--fsync always) per case, published with 256
 * in flight while the subscribers receive them. Prints the rates and the CPU time of the
 * `mq up` process (utime + stime from /proc/PID/stat) per message. The cases alternate, ROUNDS
 * times, so that other work on the machine falls on all of them alike.
 *
 *     MQ_BIN=dist/mq ./node_modules/.bin/bun bench/features.ts [COUNT=50000] [ROUNDS=3]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect, type PublishOptions } from "../lib/client/index.ts";

const count = Number(process.argv[2] ?? 50_000);
const rounds = Number(process.argv[3] ?? 3);
const bin = process.env.MQ_BIN ?? path.resolve(import.meta.dir, "../dist/mq");
const WINDOW = 256;
const TOPIC = "bench.f";

interface Case {
  name: string;
  publish?: PublishOptions;
  /** What each subscriber subscribes to (default the topic), and in which group. */
  filter?: string;
  group?: string;
  subscribers?: number;
}

const cases: Case[] = [
  { name: "plain" },
  { name: "header k=v", publish: { headers: { k: "v" } } },
  { name: "ttlMs 10 min", publish: { ttlMs: 600_000 } },
  { name: "wildcard sub bench.*", filter: "bench.*" },
  { name: "queue group, 1 member", group: "g", subscribers: 1 },
  { name: "queue group, 2 members", group: "g", subscribers: 2 },
];

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // fields 14 and 15 of stat(5); USER_HZ 100
}

async function runCase(c: Case, port: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-features-"));
  const socket = path.join(dir, "s.sock");
  const up = Bun.spawn([bin, "up", "--data", dir, "--listen", `127.0.0.1:${port}`, "--socket", socket, "--fsync", "always"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  try {
    let log = "";
    for await (const chunk of up.stderr) if ((log += new TextDecoder().decode(chunk)).includes("connected to the server")) break;
    await using mq = await connect({ socket });
    const pubId = await mq.create();
    const subIds: number[] = [];
    for (let i = 0; i < (c.subscribers ?? 1); i++) {
      const id = await mq.create();
      await mq.subscribe(id, [c.filter ?? TOPIC], c.group ? { group: c.group } : {});
      subIds.push(id);
    }

    const cpu0 = cpuSeconds(up.pid);
    const start = performance.now();
    let received = 0;
    let doneAt = 0;
    const receiving = subIds.map(async (id) => {
      while (received < count) {
        const batch = await mq.recv(id, { max: 1000, waitMs: 200 });
        received += batch.messages.length;
        if (received >= count && doneAt === 0) doneAt = performance.now();
        await batch.ack();
      }
    });
    const payload = new Uint8Array(128);
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      inFlight.push(mq.publish(pubId, TOPIC, payload, c.publish));
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const pubSeconds = (performance.now() - start) / 1000;
    await Promise.all(receiving);
    const seconds = (doneAt - start) / 1000;
    const cpu = cpuSeconds(up.pid) - cpu0;
    return { pub: count / pubSeconds, recv: count / seconds, cpuUsPerMsg: (cpu / count) * 1e6 };
  } finally {
    up.kill("SIGTERM");
    await up.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const results = new Map<string, Array<{ pub: number; recv: number; cpuUsPerMsg: number }>>();
for (let r = 0; r < rounds; r++) {
  for (const c of cases) {
    const res = await runCase(c, 7650 + (r % 2));
    results.set(c.name, [...(results.get(c.name) ?? []), res]);
    console.error(`round ${r + 1} ${c.name}: publish ${res.pub.toFixed(0)}/s, receive ${res.recv.toFixed(0)}/s, broker CPU ${res.cpuUsPerMsg.toFixed(1)} µs/msg`);
  }
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
console.log(`${count} messages of 128 B per case, ${rounds} rounds; medians (ranges)`);
console.log("| case | publish msgs/s | receive msgs/s | broker CPU µs/msg |\n|---|---|---|---|");
for (const [name, rs] of results) {
  const col = (f: (x: (typeof rs)[0]) => number, d = 0) => `${median(rs.map(f)).toFixed(d)} (${range(rs.map(f), d)})`;
  console.log(`| ${name} | ${col((x) => x.pub)} | ${col((x) => x.recv)} | ${col((x) => x.cpuUsPerMsg, 1)} |`);
}
