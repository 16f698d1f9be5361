/**
 * A queue group across servers on one PostgreSQL (docs/benchmarks.md, "Queue groups across
 * servers"): a throwaway PostgreSQL (tests/pg-kit.ts), per run a fresh database, two
 * `mq server --store postgres://…`, one `mq local` per server; COUNT messages of 128 B
 * published through the library on server A's local broker (256 in flight) while the group's
 * members `recv` (up to 1000) and `ack`; the rate is COUNT / the time until the members got
 * them all (one message to one member).
 *
 *   bun bench/pg-group.ts [ROUNDS=5] [COUNT=20000]   (MQ_BIN: the binary; MQ_BIN_OLD: a binary to compare)
 *
 * Cases, alternating each round: 1 member (through A), 2 members (one through A, one through
 * B); with MQ_BIN_OLD, also 1 member with that binary (a group kept in one server's memory).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect } from "../lib/client/index.ts";
import { freePort, startPostgres } from "../tests/pg-kit.ts";
import { mqBin, waitForLog } from "./kit.ts";

const rounds = Number(process.argv[2] ?? 5);
const count = Number(process.argv[3] ?? 20_000);
const WINDOW = 256;
const TOPIC = "bench.group";

await using pg = await startPostgres();

function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function run(bin: string, members: number): Promise<{ rate: number; cpuUsPerMsg: number }> {
  const url = await pg.database();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-pg-group-"));
  const procs: Array<ReturnType<typeof Bun.spawn>> = [];
  try {
    const sockets: string[] = [];
    const servers: number[] = [];
    for (const name of ["a", "b"]) {
      const port = await freePort();
      const server = Bun.spawn([bin, "server", "--listen", `127.0.0.1:${port}`, "--store", url, "--data", path.join(dir, `server-${name}`)], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
      procs.push(server);
      servers.push(server.pid);
      await waitForLog(server, /listening on/);
      const socket = path.join(dir, `${name}.sock`);
      const local = Bun.spawn([bin, "local", "--server", `127.0.0.1:${port}`, "--data", path.join(dir, `local-${name}`), "--socket", socket], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
      procs.push(local);
      await waitForLog(local, /connected to the server/);
      sockets.push(socket);
    }
    // Past a new session's first seconds, when a server looks up every message id in the store (docs/scale-out.md).
    await Bun.sleep(2500);
    await using onA = await connect({ socket: sockets[0]! });
    await using onB = await connect({ socket: sockets[1]! });
    const pubId = await onA.create();
    const subs: Array<{ client: typeof onA; id: number }> = [];
    for (let i = 0; i < members; i++) {
      const client = i === 0 ? onA : onB;
      const id = await client.create();
      await client.subscribe(id, [TOPIC], { group: "g" });
      subs.push({ client, id });
    }
    const cpu0 = servers.reduce((s, pid) => s + cpuSeconds(pid), 0);
    const start = performance.now();
    let received = 0;
    let doneAt = 0;
    const deadline = Date.now() + 300_000;
    const receiving = subs.map(async ({ client, id }) => {
      while (received < count && Date.now() < deadline) {
        const batch = await client.recv(id, { max: 1000, waitMs: 200 });
        received += batch.messages.length;
        if (received >= count && doneAt === 0) doneAt = performance.now();
        await batch.ack();
      }
    });
    const payload = new Uint8Array(128);
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      inFlight.push(onA.publish(pubId, TOPIC, payload));
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await Promise.all(inFlight);
    await Promise.all(receiving);
    if (received < count) throw new Error(`only ${received} of ${count} received within 300 s`);
    const cpu = servers.reduce((s, pid) => s + cpuSeconds(pid), 0) - cpu0;
    return { rate: count / ((doneAt - start) / 1000), cpuUsPerMsg: (cpu / count) * 1e6 };
  } finally {
    for (const p of procs.reverse()) p.kill("SIGTERM");
    await Promise.all(procs.map((p) => p.exited));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const oldBin = process.env.MQ_BIN_OLD;
const cases: Array<{ name: string; bin: string; members: number }> = [
  ...(oldBin ? [{ name: "1 member, MQ_BIN_OLD", bin: oldBin, members: 1 }] : []),
  { name: "1 member", bin: mqBin, members: 1 },
  { name: "2 members, one per server", bin: mqBin, members: 2 },
];
const load = () => fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0];
const results = new Map<string, Array<{ rate: number; cpuUsPerMsg: number }>>();
console.log(`${new Date().toISOString()} ${mqBin}${oldBin ? ` vs ${oldBin}` : ""}, ${rounds} rounds of ${count}, load ${load()}`);
for (let r = 0; r < rounds; r++) {
  for (const c of cases) {
    const res = await run(c.bin, c.members);
    (results.get(c.name) ?? results.set(c.name, []).get(c.name)!).push(res);
    console.log(`round ${r + 1} ${c.name}: ${res.rate.toFixed(0)} msgs/s, servers' CPU ${res.cpuUsPerMsg.toFixed(1)} µs/msg, load ${load()}`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log("| case | msgs/s, median (min–max) | servers' CPU µs/msg, median (min–max) |\n|---|---|---|");
for (const [name, rs] of results) {
  const col = (f: (x: { rate: number; cpuUsPerMsg: number }) => number, digits = 0) => {
    const xs = rs.map(f);
    return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
  };
  console.log(`| ${name} | ${col((x) => x.rate)} | ${col((x) => x.cpuUsPerMsg, 1)} |`);
}
