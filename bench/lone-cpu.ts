/**
 * CPU of one publish in flight (docs/benchmarks.md, "a single publish: … the CPU of a lone
 * request"): `--count` publishes of 128 B, one at a time, through the library of CHECKOUT to the
 * local broker at SOCKET (after 2,000 of warm-up), and the CPU per publish of this process and of
 * the `mq up` whose PID is given, all threads and the main (JavaScript) thread apart, in µs from
 * /proc ticks. THREADS=1 also lists every thread's ticks (JIT, GC helpers, JSC's block warm-up).
 *
 *     ./node_modules/.bin/bun bench/lone-cpu.ts CHECKOUT SOCKET [COUNT=20000] [UP_PID]
 */
import * as fs from "node:fs";

const [repo, sock, n = "20000", upPid = ""] = process.argv.slice(2);
if (!repo || !sock) {
  console.error("usage: bun bench/lone-cpu.ts CHECKOUT SOCKET [COUNT] [UP_PID]");
  process.exit(2);
}
const { MqClient } = await import(`${repo}/lib/client/client.ts`);
/** utime + stime of a /proc stat file, in ticks of 10 ms. */
const ticks = (file: string) => {
  const f = fs.readFileSync(file, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]);
};
const snap = () => ({
  all: ticks(`/proc/${process.pid}/stat`),
  main: ticks(`/proc/${process.pid}/task/${process.pid}/stat`),
  upAll: upPid ? ticks(`/proc/${upPid}/stat`) : 0,
  upMain: upPid ? ticks(`/proc/${upPid}/task/${upPid}/stat`) : 0,
});
const c = await MqClient.connect({ socket: sock });
const id = await c.create();
const data = new Uint8Array(128);
const topic = `lone-${Date.now()}`;
for (let i = 0; i < 2000; i++) await c.publish(id, topic, data);
const count = Number(n);
const s0 = snap();
const t0 = performance.now();
for (let i = 0; i < count; i++) await c.publish(id, topic, data);
const t1 = performance.now();
const s1 = snap();
const per = (k: keyof typeof s0) => (((s1[k] - s0[k]) * 10_000) / count).toFixed(1);
console.log(`us_per=${(((t1 - t0) * 1000) / count).toFixed(1)} client_cpu=${per("all")} client_main=${per("main")} up_cpu=${per("upAll")} up_main=${per("upMain")}`);
if (process.env.THREADS) {
  for (const pid of [String(process.pid), upPid].filter(Boolean)) {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) console.log(pid, t, fs.readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim(), ticks(`/proc/${pid}/task/${t}/stat`));
  }
}
c.close();
