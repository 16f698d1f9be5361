/**
 * Medians of bench/peers-ab.sh's output per instance and figure, A against B, and per pair
 * the change B/A − 1 (its median and range) and in how many pairs B was lower.
 * For s4, msgs_per_s is the publish phase and msgs_per_s_2 the consume phase.
 * client_cpu_cs is the client's CPU in hundredths of a second (the harness's % × seconds);
 * steal_pct the hypervisor's steal over the run (above ~10 % the figures of that run mean little).
 *
 *     ./node_modules/.bin/bun bench/peers-ab-summary.ts OUT
 */
import * as fs from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: bun bench/peers-ab-summary.ts OUT");
  process.exit(2);
}
type Row = Record<string, number> & { side: string; inst: string; pair: number };
const rows: Row[] = fs
  .readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => /^[AB] pair=/.test(l))
  .map((l) => {
    const [side, , inst] = l.split(" ");
    const row = { side, inst, pair: Number(/pair=(\d+)/.exec(l)![1]) } as Row;
    // A key met again (s4's second phase: its consumer's msgs_per_s and CPU) is named KEY_2.
    for (const m of l.matchAll(/(\w+)=(\d+(?:\.\d+)?)/g)) row[row[m[1]!] === undefined ? m[1]! : `${m[1]}_2`] = Number(m[2]);
    if (row.secs !== undefined && row.client_cpu_pct !== undefined) row.client_cpu_cs = Math.round(row.client_cpu_pct * row.secs);
    return row;
  });
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const range = (a: number[]) => `[${Math.min(...a)}..${Math.max(...a)}]`;
for (const inst of new Set(rows.map((r) => r.inst))) {
  for (const key of ["up_ticks", "main_ticks", "client_cpu_cs", "deliveries_per_s", "msgs_per_s", "msgs_per_s_2", "p50_us", "p99_us", "steal_pct", "load"]) {
    const of = (side: string) => rows.filter((r) => r.side === side && r.inst === inst && r[key] !== undefined);
    const a = of("A");
    const b = of("B");
    if (a.length === 0 || b.length === 0) continue;
    const changes: number[] = [];
    let lower = 0;
    for (const x of a) {
      const y = b.find((r) => r.pair === x.pair);
      if (!y) continue;
      changes.push(y[key]! / x[key]! - 1);
      if (y[key]! < x[key]!) lower++;
    }
    const pct = (v: number) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(0)} %`;
    const av = a.map((r) => r[key]!);
    const bv = b.map((r) => r[key]!);
    console.log(`${inst} ${key}: A ${median(av)} ${range(av)}  B ${median(bv)} ${range(bv)}  per pair ${pct(median(changes))} [${pct(Math.min(...changes))}..${pct(Math.max(...changes))}], B lower in ${lower} of ${changes.length}`);
  }
}
