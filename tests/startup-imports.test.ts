/**
 * What each command loads at start (docs/release.md#start-up), read from the bundle that
 * `npm run build` splits: the chunks a chunk imports statically are loaded with it, those it
 * imports with `import()` only when that line runs. A static import of the server in
 * cmd/mq.ts, or of the logger in lib/cli/parse.ts, fails here rather than in a benchmark.
 */
import { expect, test } from "bun:test";
import * as path from "node:path";

const root = path.resolve(import.meta.dir, "..");

/** The split bundle of cmd/mq.ts: chunk name → source text. */
async function chunks(): Promise<Map<string, string>> {
  const result = await Bun.build({ entrypoints: [path.join(root, "cmd", "mq.ts")], target: "bun", format: "esm", splitting: true });
  expect(result.success).toBe(true);
  const byName = new Map<string, string>();
  for (const out of result.outputs) byName.set(path.basename(out.path), await out.text());
  return byName;
}

/** The source files in `start` and in every chunk it imports statically, transitively. */
function loadedWith(all: Map<string, string>, start: string): string[] {
  const seen = new Set<string>();
  const todo = [start];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    // `import {…} from "./x.js"` / `import "./x.js"`, not `import("./x.js")`.
    for (const m of all.get(name)!.matchAll(/^import\s+(?:[^;]*?\s+from\s+)?"\.\/([^"]+)";?$/gms)) todo.push(m[1]!);
  }
  const sources = new Set<string>();
  for (const name of seen) for (const m of all.get(name)!.matchAll(/^\/\/ (\S+\.(?:ts|js|mjs|json))$/gm)) sources.add(m[1]!.replace(/^.*node_modules\//, "node_modules/"));
  return [...sources].sort();
}

/** The chunk that holds `source` (the one whose comments name it first). */
function chunkOf(all: Map<string, string>, source: string): string {
  for (const [name, text] of all) if (text.includes(`\n// ${source}\n`)) return name;
  throw new Error(`no chunk holds ${source}`);
}

test("mq --version and mq help load the command table, help, argument checks (with the group-name rule) and the stdout writer, nothing more", async () => {
  const all = await chunks();
  expect(loadedWith(all, "mq.js")).toEqual(["cmd/mq.ts", "lib/cli/help.ts", "lib/cli/input.ts", "lib/cli/output.ts", "lib/cli/parse.ts", "lib/config.ts", "lib/errors.ts", "lib/store/fsutil.ts", "lib/store/pg/url.ts", "lib/wire/group-name.ts", "package.json"]);
});

test("mq pub and the other client commands add the client and the wire layer, not the server, the store or the local broker", async () => {
  const all = await chunks();
  const atStart = new Set(loadedWith(all, "mq.js"));
  const added = loadedWith(all, chunkOf(all, "lib/cli/commands.ts")).filter((s) => !atStart.has(s));
  expect(added.filter((s) => /^lib\/(server|local|store)\//.test(s) || s === "lib/cli/daemons.ts")).toEqual([]);
  expect(added).toContain("lib/client/client.ts");
  expect(added).toContain("lib/wire/connection.ts");
});
