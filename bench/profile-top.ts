/**
 * The top self-time items of a .cpuprofile (Chrome format, as `bun --cpu-prof` writes it):
 * sums the samples whose leaf is each function (name + file:line) and prints the TOP largest
 * with their share of all samples.
 *
 *     ./node_modules/.bin/bun bench/profile-top.ts FILE.cpuprofile [TOP=10] [--inclusive]
 *
 * --inclusive: ranks by inclusive samples instead (a sample counts once for every function on
 * its stack, a recursive one once), with the self samples beside: who pays for what below it.
 */
import * as fs from "node:fs";
import * as path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const inclusive = args.includes("--inclusive");
const [file, topArg = "10"] = args.filter((a) => a !== "--inclusive");
if (!file) {
  console.error("usage: bun bench/profile-top.ts FILE.cpuprofile [TOP]");
  process.exit(2);
}
const profile = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
const nameOf = new Map<number, string>();
for (const n of profile.nodes) {
  const f = n.callFrame;
  const where = f.url ? ` ${path.basename(f.url)}:${f.lineNumber + 1}` : "";
  nameOf.set(n.id, `${f.functionName || "(anonymous)"}${where}`);
}
// Self time of a sample = the time delta that follows it (the Chrome format's convention). That
// delta includes the time the process then waited in the event loop (charged to the last frame,
// often a native `write`), so the items are ranked by self samples: the sampler only samples while
// JavaScript runs, so their count follows the CPU spent.
const selfUs = new Map<string, number>();
const selfSamples = new Map<string, number>();
let totalUs = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const us = profile.timeDeltas[i + 1] ?? 0;
  const name = nameOf.get(profile.samples[i]!)!;
  selfUs.set(name, (selfUs.get(name) ?? 0) + us);
  selfSamples.set(name, (selfSamples.get(name) ?? 0) + 1);
  totalUs += us;
}
const total = profile.samples.length;
console.log(`${path.basename(file)}: ${total} samples, ${(totalUs / 1e6).toFixed(2)} s`);
console.log("| # | function | self samples | share | self ms (with waits) |\n|---|---|---|---|---|");
[...selfSamples]
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(topArg))
  .forEach(([name, n], i) => console.log(`| ${i + 1} | \`${name}\` | ${n} | ${((100 * n) / total).toFixed(1)} % | ${((selfUs.get(name) ?? 0) / 1000).toFixed(0)} |`));
if (inclusive) {
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const inclusiveSamples = new Map<string, number>();
  for (const leaf of profile.samples) {
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = parentOf.get(id)) seen.add(nameOf.get(id)!);
    for (const name of seen) inclusiveSamples.set(name, (inclusiveSamples.get(name) ?? 0) + 1);
  }
  console.log("\n| # | function | inclusive samples | share | self samples |\n|---|---|---|---|---|");
  [...inclusiveSamples]
    .sort((a, b) => b[1] - a[1])
    .slice(0, Number(topArg))
    .forEach(([name, n], i) => console.log(`| ${i + 1} | \`${name}\` | ${n} | ${((100 * n) / total).toFixed(1)} % | ${selfSamples.get(name) ?? 0} |`));
}
