/**
 * Broker credentials (docs/security.md §1 "Broker identity and secret"): the identity is
 * public, the secret (DATA/secret, 0600) is what the server binds to it at first contact.
 * A wrong secret is AUTH_FAILED and replaces nothing; a copied data directory is refused
 * while the original answers, and backs off instead of looping; a restarted or reconnecting
 * broker gets back in at once. Also: the token `mq up` makes, and a server that will not
 * listen beyond loopback without a token or TLS unless told `--insecure`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, mq, mqCommand, startLocal, startServer, tmpDir, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { TcpProxy } from "../faults/tcp-proxy.ts";
import { RawPeer, expectAlive, expectRoundTrip, helloPeer } from "./kit.ts";

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function server(args: string[] = []): Promise<ServerHandle> {
  const s = await startServer({ args });
  cleanup.push(() => fs.rmSync(s.dataDir, { recursive: true, force: true }));
  cleanup.push(() => s.daemon[Symbol.asyncDispose]());
  return s;
}

async function local(address: string, options: Parameters<typeof startLocal>[1] = {}): Promise<LocalHandle> {
  const l = await startLocal(address, options);
  cleanup.push(() => fs.rmSync(l.dataDir, { recursive: true, force: true }));
  cleanup.push(() => l.daemon[Symbol.asyncDispose]());
  return l;
}

const dir = tmpDir("mq-cred-");
cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A socket path outside any data directory, so that a directory can be copied whole. */
let sockets = 0;
const socketPath = () => path.join(dir, `s${++sockets}.sock`);

function identityOf(l: LocalHandle): string {
  return fs.readFileSync(path.join(l.dataDir, "identity"), "utf8").trim();
}

function secretOf(l: LocalHandle): string {
  return fs.readFileSync(path.join(l.dataDir, "secret"), "utf8").trim();
}

/** Where the server says `identity` is connected from (its latest session), `127.0.0.1:PORT`. */
function sessionAddress(srv: ServerHandle, identity: string): string {
  const all = [...srv.daemon.log.matchAll(new RegExp(`local broker ${identity} connected from (\\S+)`, "g"))];
  expect(all.length).toBeGreaterThan(0);
  return all.at(-1)![1]!;
}

/** User + system CPU time of a process so far, in clock ticks (Linux /proc). */
function cpuTicks(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
}

/** Publishes `n` messages to `topic` as `id`, each acknowledged (exit 0). */
async function publish(socket: string, id: string, topic: string, n: number, prefix: string): Promise<string[]> {
  const sent: string[] = [];
  for (let i = 1; i <= n; i++) {
    const r = await mq(socket, ["pub", id, topic, `${prefix}-${i}`]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    sent.push(`${prefix}-${i}`);
  }
  return sent;
}

describe("broker identity and secret", () => {
  test("the identity is not the secret: the secret is a 0600 file that no log, no `mq stats --json` and no server file shows", async () => {
    const srv = await server();
    const l = await local(srv.address);
    await expectRoundTrip(l.socket);
    const stats = await mq(l.socket, ["stats", "--json"]);
    expect(stats.code).toBe(0);
    const identity = identityOf(l);
    const secret = secretOf(l);
    expect(JSON.parse(stats.stdout).local.identity).toBe(identity);
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(secret).not.toBe(identity);
    expect(fs.statSync(path.join(l.dataDir, "secret")).mode & 0o777).toBe(0o600);
    expect({ stats: stats.stdout.includes(secret), serverLog: srv.daemon.log.includes(secret), localLog: l.daemon.log.includes(secret) }).toEqual({
      stats: false,
      serverLog: false,
      localLog: false,
    });
    // The server keeps a hash only, in DATA/brokers.
    const bindings = fs.readFileSync(path.join(srv.dataDir, "brokers"));
    expect(bindings.includes(identity)).toBe(true);
    expect(bindings.includes(secret)).toBe(false);
    expect(srv.daemon.log).toMatch(new RegExp(`new local broker ${identity}: its secret is now bound to its identity \\(trust on first use\\)`));
  });

  test("a raw peer with the right identity and a wrong or missing secret gets AUTH_FAILED / BAD_REQUEST, is logged with its address, and replaces nothing", async () => {
    const srv = await server();
    const l = await local(srv.address, { socket: socketPath() });
    const identity = identityOf(l);
    const id = (await mq(l.socket, ["create"])).stdout.trim();
    expect((await mq(l.socket, ["sub", id, "cred.victim"])).code).toBe(0);
    const sent = await publish(l.socket, id, "cred.victim", 12, "m");

    const target = { hostname: "127.0.0.1", port: srv.port };
    const thieves: RawPeer[] = [];
    for (let i = 0; i < 20; i++) {
      const p = await RawPeer.connect(target);
      thieves.push(p);
      p.send({ op: "hello", rid: 1, version: 1, broker: identity, secret: i % 2 ? "guess" : "0".repeat(64) });
      expect(await p.next()).toMatchObject({ op: "error", rid: 1, code: "AUTH_FAILED" });
      expect(await p.waitClosed(5000)).toBe(true);
    }
    const bare = await RawPeer.connect(target);
    thieves.push(bare);
    bare.send({ op: "hello", rid: 1, version: 1, broker: identity });
    expect(await bare.next()).toMatchObject({ op: "error", rid: 1, code: "BAD_REQUEST", message: expect.stringContaining('"secret"') });
    expect(await bare.waitClosed(5000)).toBe(true);

    await srv.daemon.waitFor(new RegExp(`local broker at 127\\.0\\.0\\.1:\\d+: refused: wrong secret for local broker ${identity}`));
    expect(thieves.flatMap((p) => p.all.filter((f) => f.op === "msgs"))).toEqual([]); // none of the messages
    // The real broker never lost its session, and every message is still its own.
    expect(l.daemon.log).not.toContain("lost the server");
    expect(srv.daemon.log).not.toContain("replace");
    const r = await mq(l.socket, ["recv", id, "--count", "100", "--wait", "5"]);
    expect({ code: r.code, lines: r.stdout.trim().split("\n") }).toEqual({ code: 0, lines: sent });
    expectAlive(srv.daemon, l.daemon);
  });

  test("a copied data directory: the second broker is refused naming the address already connected, logs it once, backs off; the first keeps working", async () => {
    const srv = await server();
    const first = await local(srv.address, { socket: socketPath() });
    const identity = identityOf(first);
    const id = (await mq(first.socket, ["create"])).stdout.trim();
    expect((await mq(first.socket, ["sub", id, "cred.copy"])).code).toBe(0);
    const before = await publish(first.socket, id, "cred.copy", 3, "before");
    const firstAddress = sessionAddress(srv, identity);

    // A VM image of the first host: the same identity and the same secret.
    const copyDir = path.join(dir, "copied-local");
    fs.cpSync(first.dataDir, copyDir, { recursive: true });
    cleanup.push(() => fs.rmSync(copyDir, { recursive: true, force: true }));
    const proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: srv.port }); // counts its connection attempts
    cleanup.push(() => proxy.stop());
    const copy = await local(proxy.address, { dataDir: copyDir, socket: socketPath(), connected: false });
    const refusal = /cannot reach the server [^\n]*refused: IDENTITY_IN_USE: local broker (\S+) is already connected to the server from (\S+);/;
    const m = await copy.daemon.waitFor(refusal);
    expect([m[1], m[2]]).toEqual([identity, firstAddress]);
    await srv.daemon.waitFor(new RegExp(`refused: local broker ${identity} is already connected from ${firstAddress.replace(/\./g, "\\.")} and answering`));

    // Its clients learn why, with exit 4.
    const c = await mq(copy.socket, ["create"]);
    expect({ code: c.code, stdout: c.stdout }).toEqual({ code: 4, stdout: "" });
    expect(c.stderr).toStartWith(`mq: IDENTITY_IN_USE: local broker ${identity} is already connected to the server from ${firstAddress}`);

    // A bounded window: a handful of attempts, one log line, little CPU — not a replacement loop.
    const attemptsBefore = proxy.connections;
    const ticksBefore = cpuTicks(copy.daemon.pid);
    await Bun.sleep(6000);
    const attempts = proxy.connections - attemptsBefore;
    const ticks = cpuTicks(copy.daemon.pid) - ticksBefore;
    expect({ retried: attempts >= 1, handful: attempts <= 6, lowCpu: ticks < 120, logLines: copy.daemon.log.match(new RegExp(refusal, "g"))?.length }).toEqual({
      retried: true,
      handful: true,
      lowCpu: true,
      logLines: 1,
    });

    // The first broker never noticed, and goes on as before.
    expect(first.daemon.log).not.toContain("lost the server");
    const after = await publish(first.socket, id, "cred.copy", 2, "after");
    const r = await mq(first.socket, ["recv", id, "--count", "100", "--wait", "5"]);
    expect({ code: r.code, lines: r.stdout.trim().split("\n") }).toEqual({ code: 0, lines: [...before, ...after] });
    expectAlive(srv.daemon, first.daemon, copy.daemon);
  }, 60_000);

  test("a broker whose old connection went silent gets back in at once: the silent session is pinged and replaced", async () => {
    // The server's own heartbeat is slow here, so only the probe at the new hello can free the session.
    const srv = await server(["--heartbeat-ms", "60000"]);
    const first = await local(srv.address, { socket: socketPath() });
    const identity = identityOf(first);
    const id = (await mq(first.socket, ["create"])).stdout.trim();
    expect((await mq(first.socket, ["sub", id, "cred.silent"])).code).toBe(0);
    const sent = await publish(first.socket, id, "cred.silent", 3, "m");
    const oldAddress = sessionAddress(srv, identity);
    const again = path.join(dir, "reborn-local");
    cleanup.push(() => fs.rmSync(again, { recursive: true, force: true }));
    first.daemon.proc.kill("SIGSTOP"); // its connection stays open and says nothing
    try {
      // The same broker, come back on another connection (a network change, a restored VM).
      fs.cpSync(first.dataDir, again, { recursive: true });
      const reborn = await local(srv.address, { dataDir: again, socket: socketPath() });
      await srv.daemon.waitFor(new RegExp(`local broker ${identity}: the session from ${oldAddress.replace(/\./g, "\\.")} is silent \\(no answer to a ping\\); local broker at \\S+ replaces it`));
      expect(reborn.daemon.log).not.toContain("refused");
      const r = await mq(reborn.socket, ["recv", id, "--count", "100", "--wait", "5"]);
      expect({ code: r.code, lines: r.stdout.trim().split("\n") }).toEqual({ code: 0, lines: sent });
    } finally {
      await first.daemon.kill9();
    }
  }, 60_000);

  test("a local broker restarted after SIGKILL gets back in on its first attempt", async () => {
    const srv = await server();
    const socket = socketPath();
    const first = await local(srv.address, { socket });
    const id = (await mq(socket, ["create"])).stdout.trim();
    expect((await mq(socket, ["sub", id, "cred.restart"])).code).toBe(0);
    await first.daemon.kill9();
    const restarted = await local(srv.address, { dataDir: first.dataDir, socket });
    expect(restarted.daemon.log).toMatch(/connected to the server 127\.0\.0\.1:\d+\n/); // not "after N attempts"
    expect(restarted.daemon.log).not.toContain("refused");
    expect((await mq(socket, ["pub", id, "cred.restart", "back"])).code).toBe(0);
    expect((await mq(socket, ["recv", id, "--wait", "5"])).stdout).toBe("back\n");
  });

  test("a data directory from before secrets (identity, no secret) keeps its ids: the secret is made and bound at first contact", async () => {
    const srv = await server();
    const socket = socketPath();
    const l = await local(srv.address, { socket });
    const identity = identityOf(l);
    const id = (await mq(socket, ["create"])).stdout.trim();
    expect((await mq(socket, ["sub", id, "cred.legacy"])).code).toBe(0);
    const sent = await publish(socket, id, "cred.legacy", 2, "old");
    expect(await l.daemon.stop()).toBe(0);
    expect(await srv.daemon.stop()).toBe(0);
    // As left by a version without secrets: no DATA/secret here, no DATA/brokers there.
    fs.rmSync(path.join(l.dataDir, "secret"));
    fs.rmSync(path.join(srv.dataDir, "brokers"));
    fs.rmSync(path.join(srv.dataDir, "brokers.mirror"), { force: true }); // its second copy (record files keep two)
    const srv2 = await startServer({ dataDir: srv.dataDir });
    cleanup.push(() => srv2.daemon[Symbol.asyncDispose]());
    const l2 = await startLocal(srv2.address, { dataDir: l.dataDir, socket });
    cleanup.push(() => l2.daemon[Symbol.asyncDispose]());
    expect(identityOf(l2)).toBe(identity);
    expect(secretOf(l2)).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.statSync(path.join(l.dataDir, "secret")).mode & 0o777).toBe(0o600);
    await srv2.daemon.waitFor(new RegExp(`new local broker ${identity}: its secret is now bound`));
    const r = await mq(socket, ["recv", id, "--count", "10", "--wait", "5"]);
    expect({ code: r.code, lines: r.stdout.trim().split("\n") }).toEqual({ code: 0, lines: sent });
  });
});

describe("who may use the TCP port", () => {
  test("mq up without --token-file makes a 0600 token file and uses it on both sides; a raw hello without it gets AUTH_FAILED", async () => {
    const base = path.join(dir, "up");
    const socket = socketPath();
    const proc = Bun.spawn([...mqCommand(), "up", "--data", base, "--listen", "127.0.0.1:0", "--socket", socket], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const up = new Daemon("up", proc);
    cleanup.push(() => up[Symbol.asyncDispose]());
    const port = Number((await up.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    await up.waitFor(/connected to the server/);
    const tokenFile = path.join(base, "token");
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = fs.readFileSync(tokenFile, "utf8").trim();
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(up.log).not.toContain(token);
    await expectRoundTrip(socket);

    const target = { hostname: "127.0.0.1", port };
    const stranger = await RawPeer.connect(target);
    stranger.send({ op: "hello", rid: 1, version: 1, broker: "another-user", secret: "x" });
    expect(await stranger.next()).toMatchObject({ op: "error", rid: 1, code: "AUTH_FAILED" });
    expect(await stranger.waitClosed(5000)).toBe(true);
    const friend = await helloPeer(target, "server", { token });
    friend.end();
    expectAlive(up);
  });

  test("mq up with a bad --tls-cert (or one that cannot be read) stops before it makes its token file: nothing is left behind", async () => {
    const notPem = path.join(dir, "not-a-cert.pem");
    fs.writeFileSync(notPem, "not a certificate\n", { mode: 0o600 });
    for (const [cert, code] of [[notPem, 2], [path.join(dir, "no-such.crt"), 1]] as const) {
      const base = path.join(dir, `up-bad-tls-${code}`);
      const r = await mq(null, ["up", "--data", base, "--listen", "127.0.0.1:0", "--socket", socketPath(), "--tls-cert", cert, "--tls-key", notPem], { timeoutMs: 10_000 });
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: "" });
      expect(r.stderr).toContain(`--tls-cert`);
      expect(r.stderr).toContain(cert);
      expect(fs.existsSync(path.join(base, "token"))).toBe(false);
    }
  });

  test("mq server on a non-loopback --listen without --token-file or TLS exits 2, unless --insecure (or with a token)", async () => {
    const data = path.join(dir, "open-server");
    const r = await mq(null, ["server", "--listen", "0.0.0.0:0", "--data", data], { timeoutMs: 10_000 });
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: "" });
    expect(r.stderr).toStartWith("mq: usage: --listen 0.0.0.0:0 is not a loopback address");
    expect(r.stderr).toContain("--insecure");
    expect(fs.existsSync(data)).toBe(false); // refused before anything was made

    fs.writeFileSync(path.join(dir, "open.token"), "t0ken\n", { mode: 0o600 });
    for (const [extra, hello] of [
      [["--insecure"], {}],
      [["--token-file", path.join(dir, "open.token")], { token: "t0ken" }],
    ] as const) {
      const proc = Bun.spawn([...mqCommand(), "server", "--listen", "0.0.0.0:0", "--data", data, ...extra], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
      const d = new Daemon("server", proc);
      try {
        const port = Number((await d.waitFor(/listening on 0\.0\.0\.0:(\d+)/))[1]);
        (await helloPeer({ hostname: "127.0.0.1", port }, "server", hello)).end();
      } finally {
        expect(await d.stop()).toBe(0);
      }
    }
    fs.rmSync(data, { recursive: true, force: true });
  });
});
