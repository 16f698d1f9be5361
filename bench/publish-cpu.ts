/**
 * CPU per publish of the client library (docs/benchmarks.md, "the publish path"): two
 * checkouts' `lib/client` loaded into one process, rounds alternating between them, each
 * `--count` publishes of 128 B with 256 in flight to a fresh id on one topic, through the local
 * broker at `--socket` (start one with `mq up --fsync never`). Alternating inside one process
 * cancels most of the drift of a shared machine's load. Prints each side's median, range, and
 * in how many rounds B used less CPU than A.
 *
 *     ./node_modules/.bin/bun bench/publish-cpu.ts A_CHECKOUT B_CHECKOUT --socket PATH [--count 100000] [--rounds 10]
 */
import * as path from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { socket: { type: "string" }, count: { type: "string", default: "100000" }, rounds: { type: "string", default: "10" } } });
if (positionals.length !== 2 || !values.socket) {
  console.error("usage: bun bench/publish-cpu.ts A_CHECKOUT B_CHECKOUT --socket PATH [--count N] [--rounds N]");
  process.exit(2);
}
type Client = { create(): Promise<number>; publish(id: number, topic: string, data: Uint8Array): Promise<unknown>; close(): void };
type Connect = (options: { socket: string }) => Promise<Client>;
const sides: Connect[] = [];
for (const checkout of positionals) sides.push((await import(path.resolve(checkout, "lib/client/index.ts"))).MqClient.connect);
const count = Number(values.count);
const WINDOW = 256;
const payload = new Uint8Array(128);

/** ns of process CPU per publish, after a warm-up. */
async function round(connect: Connect): Promise<number> {
  const c = await connect({ socket: values.socket! });
  const id = await c.create();
  const ring: Array<Promise<unknown> | undefined> = new Array(WINDOW);
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const k = i % WINDOW;
      if (ring[k]) await ring[k];
      ring[k] = c.publish(id, "publish-cpu", payload);
    }
    await Promise.all(ring);
  };
  await run(5000);
  const before = process.cpuUsage();
  await run(count);
  const used = process.cpuUsage(before);
  c.close();
  return ((used.user + used.system) * 1000) / count;
}

const a: number[] = [];
const b: number[] = [];
let bLower = 0;
for (let r = 0; r < Number(values.rounds); r++) {
  a.push(await round(sides[0]!));
  b.push(await round(sides[1]!));
  if (b[r]! < a[r]!) bLower++;
}
const median = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;
const show = (v: number[]) => `${median(v).toFixed(0)} [${Math.min(...v).toFixed(0)}..${Math.max(...v).toFixed(0)}]`;
console.log(`A ${show(a)} ns/publish, B ${show(b)} ns/publish; B lower in ${bLower} of ${a.length} rounds`);
process.exit(0);
