/**
 * CPU of the client process per message in the peers harness's s1 (docs/benchmarks.md, "the
 * client's share of a round trip"): two checkouts' `lib/client` loaded into one process, rounds
 * alternating between them. A round is s1 as run.ts runs it through adapters/mq.ts, in one
 * thread: a publisher sending batches of 500 publishes of 128 B, the batch before the last one
 * awaited (two in flight), at most 20,000 messages end to end, and a recv loop (recv of up to
 * 1,000, waiting 200 ms, each batch acknowledged without waiting, pipelined with the next recv),
 * through the local broker at `--socket` (start one with `mq up --fsync never`). Prints per side
 * the main thread's CPU (`process.threadCpuUsage`: the JavaScript thread, without the JIT and GC
 * helper threads) and the process's, in ns per message, and in how many rounds B used less.
 *
 *     ./node_modules/.bin/bun bench/client-cpu.ts A_CHECKOUT B_CHECKOUT --socket PATH [--count 100000] [--rounds 10]
 */
import * as path from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { socket: { type: "string" }, count: { type: "string", default: "100000" }, rounds: { type: "string", default: "10" } } });
if (positionals.length !== 2 || !values.socket) {
  console.error("usage: bun bench/client-cpu.ts A_CHECKOUT B_CHECKOUT --socket PATH [--count N] [--rounds N]");
  process.exit(2);
}
type Received = { messages: Array<{ data: Uint8Array }>; ack(): Promise<void> };
type Client = {
  create(): Promise<number>;
  subscribe(id: number, topics: string[]): Promise<unknown>;
  publish(id: number, topic: string, data: Uint8Array): Promise<unknown>;
  recv(id: number, options: { max: number; waitMs: number }): Promise<Received>;
  destroy(id: number): Promise<void>;
  close(): void;
};
type Connect = (options: { socket: string }) => Promise<Client>;
const sides: Connect[] = [];
for (const checkout of positionals) sides.push((await import(path.resolve(checkout, "lib/client/index.ts"))).MqClient.connect);
const count = Number(values.count);
const BATCH = 500;
const WINDOW = 20_000;
const payload = new Uint8Array(128).fill(97);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One round of s1: [main thread ns, process ns] per message, after a warm-up of a tenth. */
async function round(connect: Connect, r: number): Promise<[number, number]> {
  const topic = `client-cpu-${process.pid}-${r}`;
  const sub = await connect({ socket: values.socket! });
  const subId = await sub.create();
  await sub.subscribe(subId, [topic]);
  const pub = await connect({ socket: values.socket! });
  const pubId = await pub.create();
  let received = 0;
  let running = true;
  let wake: (() => void) | null = null;
  const loop = (async () => {
    while (running) {
      const got = await sub.recv(subId, { max: 1000, waitMs: 200 });
      received += got.messages.length;
      for (const m of got.messages) if (m.data.length !== payload.length) throw new Error("wrong payload");
      if (got.messages.length) void got.ack();
      wake?.();
    }
  })();
  const until = async (need: number) => {
    for (let spins = 0; received < need; spins++) {
      if (spins > 10_000) throw new Error(`stalled at ${received} of ${need}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 250);
      });
      wake = null;
    }
  };
  const phase = async (n: number) => {
    const start = received;
    let sent = 0;
    let prev: Promise<unknown>[] = [];
    while (sent < n) {
      if (sent - (received - start) + BATCH > WINDOW) {
        await until(start + sent + BATCH - WINDOW);
        continue;
      }
      const cur: Promise<unknown>[] = [];
      for (let i = 0; i < BATCH; i++) cur.push(pub.publish(pubId, topic, payload));
      sent += BATCH;
      await turn();
      await Promise.all(prev);
      prev = cur;
    }
    await Promise.all(prev);
    await until(start + n);
  };
  await phase(Math.floor(count / 10));
  const thread = process.threadCpuUsage();
  const whole = process.cpuUsage();
  await phase(count);
  const t = process.threadCpuUsage(thread);
  const p = process.cpuUsage(whole);
  running = false;
  await loop;
  await sub.destroy(subId);
  await pub.destroy(pubId);
  sub.close();
  pub.close();
  return [((t.user + t.system) * 1000) / count, ((p.user + p.system) * 1000) / count];
}

const main: [number[], number[]] = [[], []];
const all: [number[], number[]] = [[], []];
let mainLower = 0;
let allLower = 0;
for (let r = 0; r < Number(values.rounds); r++) {
  for (const side of [0, 1] as const) {
    const [m, p] = await round(sides[side]!, 2 * r + side);
    main[side].push(m);
    all[side].push(p);
  }
  if (main[1][r]! < main[0][r]!) mainLower++;
  if (all[1][r]! < all[0][r]!) allLower++;
}
const median = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;
const show = (v: number[]) => `${median(v).toFixed(0)} [${Math.min(...v).toFixed(0)}..${Math.max(...v).toFixed(0)}]`;
const perRound = (a: number[], b: number[]) => b.map((x, i) => (x / a[i]!).toFixed(2)).join(" ");
console.log(`main thread ns/msg: A ${show(main[0])}, B ${show(main[1])}; B/A per round ${perRound(main[0], main[1])}; B lower in ${mainLower} of ${main[0].length}`);
console.log(`process ns/msg:     A ${show(all[0])}, B ${show(all[1])}; B/A per round ${perRound(all[0], all[1])}; B lower in ${allLower} of ${all[0].length}`);
process.exit(0);
