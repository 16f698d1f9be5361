#!/usr/bin/env bun
/**
 * Builds the mq executable, the one place that knows how (docs/release.md):
 *
 *   bun scripts/build.ts            dist/mq for this machine (`npm run build`)
 *   bun scripts/build.ts --release  dist/release/mq-<os>-<arch> for every target, and SHA256SUMS (`npm run release`)
 *
 * A release target's runtime is the npm package `@oven/bun-<target>` at the version and
 * integrity package-lock.json pins for it (the optional dependencies of the `bun` devDependency):
 * `npm pack` fetches it once into dist/runtimes/, its sha512 is checked against the lock on
 * every run, and `bun build --compile --compile-executable-path` puts mq in it. Nothing else
 * is downloaded, and the bun that runs this script must be that same version: it bundles and
 * makes the bytecode the runtime will load.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(import.meta.dir, "..");
const dist = path.join(root, "dist");

/**
 * How every mq executable is built. --bytecode: JavaScriptCore bytecode is compiled at build
 * time, not at each start (it needs --format=esm for cmd/mq.ts's top-level await).
 * --splitting: what cmd/mq.ts imports with `await import()` stays in chunks of its own, loaded
 * only by the commands that import them. Not --minify: it saves nothing measurable at start
 * (docs/benchmarks.md) and would rename the functions in a daemon's stack traces.
 */
export const BUILD_FLAGS = ["--compile", "--bytecode", "--format=esm", "--splitting"];

export interface Target {
  /** `mq-<name>` in dist/release. */
  name: string;
  /** bun build --target. */
  bunTarget: string;
  /** The npm package of that Bun runtime. */
  runtime: string;
  /** What `file` says about the executable. */
  format: RegExp;
}

export const TARGETS: Target[] = [
  { name: "linux-x64", bunTarget: "bun-linux-x64", runtime: "@oven/bun-linux-x64", format: /^ELF 64-bit LSB executable, x86-64\b.*interpreter \/lib64\/ld-linux-x86-64\.so\.2/ },
  { name: "linux-arm64", bunTarget: "bun-linux-arm64", runtime: "@oven/bun-linux-aarch64", format: /^ELF 64-bit LSB executable, ARM aarch64\b.*interpreter \/lib\/ld-linux-aarch64\.so\.1/ },
  { name: "linux-x64-musl", bunTarget: "bun-linux-x64-musl", runtime: "@oven/bun-linux-x64-musl", format: /^ELF 64-bit LSB executable, x86-64\b.*interpreter \/lib\/ld-musl-x86_64\.so\.1/ },
  { name: "darwin-arm64", bunTarget: "bun-darwin-arm64", runtime: "@oven/bun-darwin-aarch64", format: /^Mach-O 64-bit arm64 executable/ },
  { name: "darwin-x64", bunTarget: "bun-darwin-x64", runtime: "@oven/bun-darwin-x64", format: /^Mach-O 64-bit x86_64 executable/ },
];

export const RELEASE_DIR = path.join(dist, "release");
const RUNTIMES_DIR = path.join(dist, "runtimes");

interface Locked {
  version: string;
  integrity: string;
}

/** What package-lock.json pins for a package installed at node_modules/<name>. */
function locked(name: string): Locked {
  const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8")) as { packages: Record<string, Partial<Locked>> };
  const entry = lock.packages[`node_modules/${name}`];
  if (!entry?.version || !entry.integrity) throw new Error(`package-lock.json pins no version and integrity for ${name}; run npm install to update the lock`);
  return { version: entry.version, integrity: entry.integrity };
}

/** The Bun version of the project: the `bun` devDependency as package-lock.json pins it. */
export function bunVersion(): string {
  return locked("bun").version;
}

function run(cmd: string[], cwd = root): string {
  const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (exit ${p.exitCode}):\n${p.stderr.toString()}${p.stdout.toString()}`);
  return p.stdout.toString();
}

function sha512(file: string): string {
  return `sha512-${createHash("sha512").update(fs.readFileSync(file)).digest("base64")}`;
}

/**
 * The bun executable of `runtime` at its locked version, from dist/runtimes/ or fetched there
 * with `npm pack`. Returns its path and whether it had to be fetched.
 */
async function runtimeBinary(runtime: string): Promise<{ bin: string; fetched: boolean }> {
  const { version, integrity } = locked(runtime);
  const base = `${runtime.replace(/^@/, "").replace("/", "-")}-${version}`; // npm pack's file name
  const tgz = path.join(RUNTIMES_DIR, `${base}.tgz`);
  const bin = path.join(RUNTIMES_DIR, base, "bun");
  let fetched = false;
  if (!fs.existsSync(tgz)) {
    fs.mkdirSync(RUNTIMES_DIR, { recursive: true });
    const p = Bun.spawn(["npm", "pack", `${runtime}@${version}`, "--pack-destination", RUNTIMES_DIR, "--silent"], { cwd: RUNTIMES_DIR, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`npm pack ${runtime}@${version} failed (exit ${code}):\n${err}${out}`);
    fetched = true;
  }
  const got = sha512(tgz);
  if (got !== integrity) {
    throw new Error(`${tgz} is not the ${runtime}@${version} that package-lock.json pins (integrity ${got}, lock ${integrity}); delete it and run again`);
  }
  if (!fs.existsSync(bin)) {
    const tmp = fs.mkdtempSync(path.join(RUNTIMES_DIR, ".extract-"));
    try {
      run(["tar", "-xzf", tgz, "-C", tmp, "package/bin/bun"]);
      fs.mkdirSync(path.dirname(bin), { recursive: true });
      fs.renameSync(path.join(tmp, "package", "bin", "bun"), bin);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { bin, fetched };
}

/** `bun build` of cmd/mq.ts with BUILD_FLAGS into `outfile`; `target` for another platform. */
function compile(outfile: string, target?: { bunTarget: string; executable: string }): void {
  const cross = target ? [`--target=${target.bunTarget}`, `--compile-executable-path=${target.executable}`] : [];
  run([process.execPath, "build", ...BUILD_FLAGS, ...cross, "cmd/mq.ts", "--outfile", outfile]);
}

async function release(): Promise<void> {
  const started = performance.now();
  const version = bunVersion();
  if (Bun.version !== version) {
    throw new Error(`this is bun ${Bun.version}, the project's is ${version} (package-lock.json): run \`npm run release\`, which uses node_modules/.bin/bun`);
  }
  // Fetched side by side (network), built one after the other (CPU).
  const runtimes = await Promise.all(TARGETS.map((t) => runtimeBinary(t.runtime)));
  const fetched = runtimes.filter((r) => r.fetched).length;
  fs.rmSync(RELEASE_DIR, { recursive: true, force: true });
  fs.mkdirSync(RELEASE_DIR, { recursive: true });
  const sums: string[] = [];
  for (const [i, t] of TARGETS.entries()) {
    const file = path.join(RELEASE_DIR, `mq-${t.name}`);
    compile(file, { bunTarget: t.bunTarget, executable: runtimes[i]!.bin });
    fs.chmodSync(file, 0o755);
    const sum = createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    sums.push(`${sum}  mq-${t.name}`); // the format of sha256sum, so `sha256sum -c` checks it
    console.log(`${path.relative(root, file)}  ${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB  ${sum}`);
  }
  fs.writeFileSync(path.join(RELEASE_DIR, "SHA256SUMS"), `${sums.join("\n")}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`dist/release: ${TARGETS.length} executables of mq on bun ${version} and SHA256SUMS in ${seconds} s (${fetched} runtime${fetched === 1 ? "" : "s"} fetched with npm pack, ${TARGETS.length - fetched} from dist/runtimes)`);
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  if (args.length === 1 && args[0] === "--release") await release();
  else if (args.length === 0) compile(path.join(dist, "mq"));
  else {
    console.error("usage: bun scripts/build.ts [--release]");
    process.exit(2);
  }
}
