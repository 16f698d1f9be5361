/**
 * The client library as a package, used the way docs/library.md tells users to: this
 * checkout installed with `npm install <path>` into a fresh directory, programs there that
 * `import { connect } from "mq"`, run by Bun against daemons started from the compiled binary.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startCluster, tmpDir } from "../e2e/harness.ts";

const root = path.resolve(import.meta.dir, "../..");
const npm = Bun.which("npm");
const node = Bun.which("node");

let cluster: Awaited<ReturnType<typeof startCluster>>;
/** The user's project: a package.json and `node_modules/mq` from `npm install <checkout>`. */
let app: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command in the user's project, killed after `timeoutMs`. */
async function run(cmd: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<Run> {
  const proc = Bun.spawn(cmd, { cwd: app, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Copies a program into the user's project and runs it with Bun against the cluster's local broker. */
async function runProgram(source: string): Promise<Run> {
  const file = path.join(app, path.basename(source));
  fs.copyFileSync(source, file);
  return run([process.execPath, file], 30_000, { MQ_SOCKET: cluster.local.socket });
}

beforeAll(async () => {
  cluster = await startCluster();
  app = tmpDir("mq-app-");
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
});

afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
  if (app) fs.rmSync(app, { recursive: true, force: true });
});

describe.skipIf(!npm)("the mq package installed with npm install <path> (skipped without npm)", () => {
  beforeAll(async () => {
    // A local path is linked, not copied (npm ≥ 7), so this works offline and leaves the
    // checkout's node_modules alone; the package's own dependencies come from there.
    const r = await run([npm!, "install", root, "--no-audit", "--no-fund", "--offline", "--loglevel=error"], 60_000);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(fs.realpathSync(path.join(app, "node_modules", "mq"))).toBe(fs.realpathSync(root));
  });

  test("a messages() loop left after 1 of 4 messages acks that one: the next loop on the connection gets m2, m3, m4 in order, and a new connection gets nothing again", async () => {
    const r = await runProgram(path.join(import.meta.dir, "iterator-break-fixture.ts"));
    expect(r).toEqual({
      code: 0,
      stdout: "pending: 4\nfirst loop: m1\nsecond loop: m2 m3 m4\nafter reconnect: m5\n",
      stderr: "",
    });
  });

  test("the quickstart of docs/library.md runs as printed there", async () => {
    const example = path.join(root, "docs", "examples", "quickstart.ts");
    const doc = fs.readFileSync(path.join(root, "docs", "library.md"), "utf8");
    expect(doc).toContain("```ts\n" + fs.readFileSync(example, "utf8") + "```\n");
    const r = await runProgram(example);
    expect(r).toEqual({
      code: 0,
      stdout: 'orders #1: {"total":12}\norders #2: {"total":30}\norders #3: {"total":7}\nsum: 49\nafter destroy: UNKNOWN_ID\n',
      stderr: "",
    });
  });

  test("programs importing mq type-check through the installed package (tsconfig as `bun init` writes it)", async () => {
    for (const f of [path.join(import.meta.dir, "iterator-break-fixture.ts"), path.join(root, "docs", "examples", "quickstart.ts")]) {
      fs.copyFileSync(f, path.join(app, path.basename(f)));
    }
    // What `bun init` writes, with bun-types taken from this checkout instead of @types/bun.
    const compilerOptions = {
      lib: ["ESNext"],
      target: "ESNext",
      module: "Preserve",
      moduleDetection: "force",
      moduleResolution: "bundler",
      allowImportingTsExtensions: true,
      verbatimModuleSyntax: true,
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      noFallthroughCasesInSwitch: true,
      noUncheckedIndexedAccess: true,
      noImplicitOverride: true,
      typeRoots: [path.join(root, "node_modules")],
      types: ["bun-types"],
    };
    fs.writeFileSync(path.join(app, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["iterator-break-fixture.ts", "quickstart.ts"] }));
    const r = await run([path.join(root, "node_modules", ".bin", "tsc"), "-p", "tsconfig.json"], 60_000);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "" });
  });

  test.skipIf(!node)("importing or requiring mq under Node fails at once and says it needs Bun (skipped without node)", async () => {
    // node.cjs names every runtime export of the entry, so that a named import reaches its error.
    const names = Object.keys(await import("../../lib/client/index.ts")).sort();
    const stub = fs.readFileSync(path.join(root, "lib", "client", "node.cjs"), "utf8");
    expect([...stub.matchAll(/exports\.(\w+) =/g)].map((m) => m[1]).sort()).toEqual(names);
    fs.writeFileSync(path.join(app, "node-import.mjs"), `import { ${names.join(", ")} } from "mq";\nconsole.log("loaded", typeof connect);\n`);
    const imported = await run([node!, "node-import.mjs"]);
    const required = await run([node!, "-e", 'require("mq"); console.log("loaded")']);
    for (const r of [imported, required]) {
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: "" });
      expect(r.stderr).toContain("Error: mq: the mq client library needs the Bun runtime (https://bun.sh); it does not run under Node.");
    }
  });
});
