/**
 * The layers of lib/ import one way only (docs/architecture.md). This test reads every
 * import and fails on one that points up the table or on a cycle between layers.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";

const lib = path.resolve(import.meta.dir, "../lib");

/** Which layers each layer may import. Files at the root of lib/ are layers of their own. */
const allowed: Record<string, string[]> = {
  "errors.ts": [],
  "config.ts": [],
  "log.ts": [],
  "metrics.ts": [],
  "histogram.ts": [],
  wire: ["errors.ts", "log.ts"],
  store: ["wire", "errors.ts", "log.ts", "histogram.ts"],
  server: ["store", "wire", "errors.ts", "config.ts", "log.ts", "metrics.ts", "histogram.ts"],
  local: ["store", "wire", "errors.ts", "config.ts", "log.ts", "metrics.ts", "histogram.ts"],
  client: ["wire", "errors.ts", "config.ts", "metrics.ts"],
  // The HTTP endpoint reads the daemons' state; they never import it.
  http: ["server", "local", "store", "wire", "errors.ts", "config.ts", "log.ts", "metrics.ts", "histogram.ts"],
  cli: ["http", "client", "server", "local", "store", "wire", "errors.ts", "config.ts", "log.ts", "metrics.ts"],
};

function layerOf(file: string): string {
  return path.relative(lib, file).split(path.sep)[0]!;
}

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? files(path.join(dir, d.name)) : d.name.endsWith(".ts") ? [path.join(dir, d.name)] : []));
}

test("lib layers import only the layers below them", () => {
  const violations: string[] = [];
  for (const file of files(lib)) {
    const from = layerOf(file);
    expect(Object.keys(allowed)).toContain(from);
    const source = fs.readFileSync(file, "utf8");
    for (const m of source.matchAll(/^\s*(?:import|export)[^;]*?from\s+"(\.[^"]+)"/gm)) {
      const target = layerOf(path.resolve(path.dirname(file), m[1]!));
      if (target !== from && !allowed[from]!.includes(target)) violations.push(`${path.relative(lib, file)} imports ${m[1]} (${from} → ${target})`);
    }
  }
  expect(violations).toEqual([]);
});

test("the layer table has no cycle", () => {
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (layer: string, trail: string[]): void => {
    if (done.has(layer)) return;
    if (visiting.has(layer)) throw new Error(`cycle: ${[...trail, layer].join(" → ")}`);
    visiting.add(layer);
    for (const next of allowed[layer]!) visit(next, [...trail, layer]);
    visiting.delete(layer);
    done.add(layer);
  };
  for (const layer of Object.keys(allowed)) visit(layer, []);
});

test("nothing imports the cbor-x package root (it loads a native addon that corrupts decoding under Bun)", () => {
  const offenders: string[] = [];
  for (const dir of [lib, path.resolve(import.meta.dir), path.resolve(import.meta.dir, "../cmd")]) {
    for (const file of files(dir)) {
      if (/from\s+["']cbor-x["']/.test(fs.readFileSync(file, "utf8"))) offenders.push(path.relative(path.resolve(lib, ".."), file));
    }
  }
  expect(offenders).toEqual([]);
});
