/**
 * Who gets in: the shared token between local brokers and the server, TLS on that hop with a
 * certificate made at test time, the permissions of the Unix socket, and id ownership (no
 * local broker can act as another's id, even by forging the global id in a raw frame).
 *
 * A live local broker is never displaced and a stale socket file is replaced: that is
 * tests/e2e/restart.test.ts ("a second mq local on a live socket…").
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { mq, startLocal, startServer, tmpDir, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { RawPeer, expectAlive, expectRoundTrip, helloPeer, listFiles } from "./kit.ts";

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  // Stop daemons (by PID, through their handles) in reverse order of start, then remove files.
  for (const fn of cleanup.reverse()) await fn();
});

async function server(args: string[] = []): Promise<ServerHandle> {
  const s = await startServer({ args });
  cleanup.push(() => fs.rmSync(s.dataDir, { recursive: true, force: true }));
  cleanup.push(() => s.daemon[Symbol.asyncDispose]());
  return s;
}

async function local(address: string, args: string[] = [], connected = true, socket?: string): Promise<LocalHandle> {
  const l = await startLocal(address, { args, connected, ...(socket ? { socket } : {}) });
  cleanup.push(() => fs.rmSync(l.dataDir, { recursive: true, force: true }));
  cleanup.push(() => l.daemon[Symbol.asyncDispose]());
  return l;
}

const dir = tmpDir("mq-access-");
cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content, { mode: 0o600 });
  return p;
}

/** A local broker that cannot get in: `mq create` through it exits 4 with `mq: CODE:`. */
/** The client's error line (stderr) of a `create` through a local broker the server does not let in. */
async function expectRefused(l: LocalHandle, code: "AUTH_FAILED" | "UNAVAILABLE"): Promise<string> {
  await l.daemon.waitFor(/cannot reach the server/);
  const r = await mq(l.socket, ["create"]);
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 4, stdout: "" });
  expect(r.stderr.startsWith(`mq: ${code}:`)).toBe(true);
  return r.stderr;
}

describe("--token-file", () => {
  let srv: ServerHandle;
  beforeAll(async () => {
    srv = await server(["--token-file", file("server.token", "\n  s3cret-token\t \n\n")]);
  });

  test("a local broker with the right token gets in (whitespace around the token in either file is ignored)", async () => {
    const l = await local(srv.address, ["--token-file", file("right.token", "s3cret-token")]);
    await expectRoundTrip(l.socket);
    const spaced = await local(srv.address, ["--token-file", file("spaced.token", "  s3cret-token\r\n")]);
    await expectRoundTrip(spaced.socket);
  });

  test("a wrong token is AUTH_FAILED (exit 4) and the server logs the peer address", async () => {
    const l = await local(srv.address, ["--token-file", file("wrong.token", "s3cret-tokeN")], false);
    expect(await expectRefused(l, "AUTH_FAILED")).toContain("its --token-file must hold the server's token");
    await srv.daemon.waitFor(/local broker at 127\.0\.0\.1[^\n]*refused: wrong token/);
    expectAlive(srv.daemon, l.daemon);
  });

  test("a missing token is AUTH_FAILED (exit 4), told as none sent, with the way in", async () => {
    const l = await local(srv.address, [], false);
    expect(await expectRefused(l, "AUTH_FAILED")).toContain("the server needs a token and this local broker sent none: give it --token-file");
    // `mq stats` shows the broker's own part and says the same, not a bare UNAVAILABLE.
    const stats = await mq(l.socket, ["stats"]);
    expect(stats.code).toBe(4);
    expect(stats.stdout).toMatch(/^local:\n/);
    expect(stats.stderr).toContain("mq: AUTH_FAILED: the local broker is refused by its server: the server needs a token and this local broker sent none");
    await srv.daemon.waitFor(/local broker at 127\.0\.0\.1[^\n]*refused: no token \(the server has --token-file\)/);
  });

  test("several servers, one down and one refusing the token: a client is told each one's reason, not only the last attempt's", async () => {
    const l = await local(`127.0.0.1:1,${srv.address}`, [], false);
    await l.daemon.waitFor(/refused: AUTH_FAILED/);
    const r = await mq(l.socket, ["create"]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`mq: UNAVAILABLE: servers 127.0.0.1:1,${srv.address} unreachable (127.0.0.1:1: connection refused`);
    expect(r.stderr).toContain(`; ${srv.address}: AUTH_FAILED: the server needs a token and this local broker sent none`);
  });

  test("several servers all refusing a wrong token: a client and `mq stats` are told each server's reason, not only the last one's", async () => {
    const other = await server(["--token-file", file("other-server.token", "s3cret-token")]);
    const both = `${srv.address},${other.address}`;
    const l = await local(both, ["--token-file", file("wrong-both.token", "not-the-token")], false);
    await l.daemon.waitFor(new RegExp(`${other.address}: refused: AUTH_FAILED`));
    await l.daemon.waitFor(new RegExp(`${srv.address}: refused: AUTH_FAILED`));
    const r = await mq(l.socket, ["create"]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`mq: AUTH_FAILED: servers ${both} each refused this local broker (${srv.address}: AUTH_FAILED: `);
    expect(r.stderr).toContain(`; ${other.address}: AUTH_FAILED: `);
    expect(r.stderr.match(/its --token-file must hold the server's token/g)).toHaveLength(2);
    const stats = await mq(l.socket, ["stats"]);
    expect(stats.code).toBe(4);
    expect(stats.stdout).toMatch(/^local:\n/);
    expect(stats.stderr).toContain(`mq: AUTH_FAILED: the local broker is refused by its server: servers ${both} each refused this local broker (${srv.address}: AUTH_FAILED: `);
    expect(stats.stderr).toContain(`; ${other.address}: AUTH_FAILED: `);
    expectAlive(srv.daemon, other.daemon, l.daemon);
  });

  test("a raw hello with a wrong, empty, longer or differently typed token is refused and closed; the right one is accepted", async () => {
    const target = { hostname: "127.0.0.1", port: srv.port };
    for (const token of ["nope", "", "s3cret-token ", "s3cret-token".repeat(1000), "s3cret-tokem"]) {
      const p = await RawPeer.connect(target);
      p.send({ op: "hello", rid: 1, version: 1, broker: "guess", token });
      expect(await p.next()).toMatchObject({ op: "error", rid: 1, code: "AUTH_FAILED" });
      expect(await p.waitClosed(5000)).toBe(true);
    }
    const typed = await RawPeer.connect(target);
    typed.send({ op: "hello", rid: 1, version: 1, broker: "guess", token: new TextEncoder().encode("s3cret-token") });
    expect(await typed.next()).toMatchObject({ op: "error", code: "BAD_REQUEST", message: expect.stringContaining('"token"') });
    typed.end();
    const right = await helloPeer(target, "server", { token: "s3cret-token" });
    expect(await right.request({ op: "topics", rid: 2 })).toMatchObject({ op: "ok" });
    right.end();
    expectAlive(srv.daemon);
  });

  test("an empty token file stops the daemon from starting (exit 2: bad usage, not restarted)", async () => {
    const empty = file("empty.token", " \n\t\n");
    const r = await mq(null, ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "never"), "--token-file", empty], { timeoutMs: 10_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--token-file ${empty} is empty`);
  });

  test("a token file that cannot be read (missing, a directory) exits 1, which a service manager restarts: it may come later", async () => {
    const missing = path.join(dir, "no-such.token");
    const aDir = fs.mkdtempSync(path.join(dir, "token-dir-"));
    for (const [daemon, tokenFile] of [["server", missing], ["server", aDir], ["local", missing]] as const) {
      const args =
        daemon === "server"
          ? ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "never"), "--token-file", tokenFile]
          : ["local", "--server", srv.address, "--data", path.join(dir, "never-local"), "--socket", path.join(dir, "never.sock"), "--token-file", tokenFile];
      const r = await mq(null, args, { timeoutMs: 10_000 });
      expect({ daemon, tokenFile, code: r.code }).toEqual({ daemon, tokenFile, code: 1 });
      expect(r.stderr).toContain(`mq: error: Cannot read the --token-file file ${tokenFile}: `);
    }
  });
});

describe("TLS between local broker and server", () => {
  let tlsServer: ServerHandle;
  let certs: { cert: string; key: string; otherCert: string; wrongNameCert: string; wrongNameKey: string };

  function openssl(name: string, subject: string, san: string): { cert: string; key: string } {
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject, "-addext", `subjectAltName=${san}`, "-keyout", key, "-out", cert], {
      stdout: "ignore",
      stderr: "pipe",
    });
    if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
    return { cert, key };
  }

  beforeAll(async () => {
    const good = openssl("server", "/CN=127.0.0.1", "IP:127.0.0.1");
    const other = openssl("other", "/CN=127.0.0.1", "IP:127.0.0.1"); // same name, another key: not the server's
    const wrongName = openssl("wrong-name", "/CN=other.example", "DNS:other.example");
    certs = { cert: good.cert, key: good.key, otherCert: other.cert, wrongNameCert: wrongName.cert, wrongNameKey: wrongName.key };
    tlsServer = await server(["--tls-cert", certs.cert, "--tls-key", certs.key]);
  });

  test("a local broker with --tls-ca of the server's certificate gets in", async () => {
    const l = await local(tlsServer.address, ["--tls-ca", certs.cert]);
    await expectRoundTrip(l.socket);
  });

  test("a local broker without --tls-ca (plain TCP) does not get in (exit 4); its client is told why", async () => {
    const l = await local(tlsServer.address, [], false);
    const stderr = await expectRefused(l, "UNAVAILABLE");
    expect(stderr).toContain(`server ${tlsServer.address} unreachable (the last attempt: `);
    expect(stderr).toContain("(if that server serves TLS, give this broker --tls-ca FILE)");
    expectAlive(tlsServer.daemon);
  });

  test("a local broker trusting another certificate does not get in (exit 4); its client is told why", async () => {
    const l = await local(tlsServer.address, ["--tls-ca", certs.otherCert], false);
    const stderr = await expectRefused(l, "UNAVAILABLE");
    expect(stderr).toContain(`server ${tlsServer.address} unreachable (the last attempt: TLS handshake failed: `);
  });

  test("a local broker that fails the TLS handshake logs why once, not at every attempt", async () => {
    const l = await local(tlsServer.address, ["--tls-ca", certs.otherCert, "--log-level", "debug"], false);
    await l.daemon.waitFor(/attempt 5 failed/); // 100 ms doubling: about 1.5 s
    const warnings = l.daemon.log.split("\n").filter((line) => /WARN/.test(line) && /TLS handshake failed/.test(line));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`cannot reach the server ${tlsServer.address}: TLS handshake failed: `);
  });

  test("a plaintext local broker at a TLS server: each side says once what is wrong, with the way out (--tls-ca)", async () => {
    const own = await server(["--tls-cert", certs.cert, "--tls-key", certs.key]);
    expect(own.daemon.log).toContain(`listening on ${own.address} (TLS, no token; `);
    const l = await local(own.address, ["--log-level", "debug"], false);
    await l.daemon.waitFor(/attempt 4 failed/); // 100 ms doubling: about 1 s
    const warned = (log: string) => log.split("\n").filter((line) => /WARN/.test(line));
    const localWarnings = warned(l.daemon.log);
    expect(localWarnings).toHaveLength(1);
    expect(localWarnings[0]).toContain(`cannot reach the server ${own.address}: `);
    expect(localWarnings[0]).toContain("(if that server serves TLS, give this broker --tls-ca FILE)");
    const serverWarnings = warned(own.daemon.log).filter((line) => /TLS handshake failed/.test(line));
    expect(serverWarnings).toHaveLength(1);
    expect(serverWarnings[0]).toContain("(the peer does not speak TLS: a local broker reaches a TLS server with --tls-ca FILE)");
    expectAlive(own.daemon);
  });

  // A file that cannot be read may come later (a mount late at boot): exit 1, which systemd's
  // units restart (RestartPreventExitStatus=2). A file that holds the wrong thing is exit 2.
  /** A daemon's arguments with `bad` as the file of `flag`, and good files for the rest. */
  const tlsDaemonArgs = (daemon: string, flag: string, bad: string) =>
    daemon === "local"
      ? ["local", "--server", tlsServer.address, "--data", path.join(dir, "never-local"), "--socket", path.join(dir, "never.sock"), flag, bad]
      : ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "never-server"), "--tls-cert", flag === "--tls-cert" ? bad : certs.cert, "--tls-key", flag === "--tls-key" ? bad : certs.key];
  test.each([
    ["local", "--tls-ca", "a missing file"],
    ["server", "--tls-cert", "a missing file"],
    ["server", "--tls-key", "a directory"],
  ])("mq %s %s with %s stops at start with exit 1 (restarted by a service manager), naming the flag and the file", async (daemon, flag, what) => {
    const bad = what === "a directory" ? fs.mkdtempSync(path.join(dir, "a-dir-")) : path.join(dir, "no-such.crt");
    const r = await mq(null, tlsDaemonArgs(daemon, flag, bad), { timeoutMs: 10_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mq: error: Cannot read the ${flag} file ${bad}: `);
    expect(r.stderr).toContain("check the path, and that the daemon's user may read it");
  });

  test.each([
    ["local", "--tls-ca", "a file that is no certificate", "is not a PEM certificate that parses"],
    ["local", "--tls-ca", "a certificate cut short", "is not a PEM certificate that parses"],
    ["server", "--tls-cert", "a file that is no certificate", "is not a PEM certificate that parses"],
    ["server", "--tls-key", "a certificate where the key goes", "is not a PEM private key that parses"],
    ["server", "--tls-key", "an encrypted key", "is an encrypted private key, and mq takes no passphrase: decrypt it"],
    ["server", "--tls-key", "the key of another certificate", "is not the private key of the certificate in --tls-cert"],
  ])("mq %s %s with %s stops at start (exit 2), naming the flag and the file", async (daemon, flag, what, message) => {
    const bad = {
      "a file that is no certificate": () => file("not-pem.txt", "s3cret-token\n"),
      "a certificate cut short": () => file("cut.crt", fs.readFileSync(certs.cert, "utf8").slice(0, 400)),
      "a certificate where the key goes": () => certs.cert,
      "an encrypted key": () => {
        const out = path.join(dir, "encrypted.key");
        const r = Bun.spawnSync(["openssl", "pkey", "-in", certs.key, "-aes256", "-passout", "pass:x", "-out", out], { stdout: "ignore", stderr: "pipe" });
        if (r.exitCode !== 0) throw new Error(`openssl pkey: ${r.stderr.toString()}`);
        return out;
      },
      "the key of another certificate": () => certs.wrongNameKey,
    }[what]!();
    const r = await mq(null, tlsDaemonArgs(daemon, flag, bad), { timeoutMs: 10_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(bad);
    expect(r.stderr).toContain(flag);
  });

  test("two local brokers of one host failing the handshake for two reasons, turn about: the server warns once per reason", async () => {
    const own = await server(["--tls-cert", certs.cert, "--tls-key", certs.key]);
    const distrusting = await local(own.address, ["--tls-ca", certs.otherCert, "--log-level", "debug"], false);
    const plaintext = await local(own.address, ["--log-level", "debug"], false);
    await distrusting.daemon.waitFor(/attempt 5 failed/); // 100 ms doubling: about 1.5 s, the two in turn
    await plaintext.daemon.waitFor(/attempt 5 failed/);
    const serverWarnings = own.daemon.log.split("\n").filter((line) => /WARN/.test(line) && /TLS handshake failed/.test(line));
    expect(serverWarnings).toHaveLength(2);
    expectAlive(own.daemon);
  });

  test("a server whose certificate names another host is refused by the local broker (exit 4)", async () => {
    const impostor = await server(["--tls-cert", certs.wrongNameCert, "--tls-key", certs.wrongNameKey]);
    const l = await local(impostor.address, ["--tls-ca", certs.wrongNameCert], false);
    // The way out is named: the address dialed, as the subjectAltName entry it needs.
    expect(await expectRefused(l, "UNAVAILABLE")).toContain("(the server's certificate must name 127.0.0.1 in its subjectAltName, as IP:127.0.0.1; docs/security.md)");
  });

  test("a plaintext hello to the TLS port is never answered with a frame", async () => {
    const p = await RawPeer.connect({ hostname: "127.0.0.1", port: tlsServer.port });
    p.send({ op: "hello", rid: 1, version: 1, broker: "plain" });
    expect(await p.waitClosed(5000)).toBe(true);
    expect(p.all.filter((f) => f.op === "ok")).toEqual([]);
    expectAlive(tlsServer.daemon);
  });

  // Demonstrates a bug (see the report of issue 4): without a `handshake` handler Bun calls the
  // listener's `open` only once the TLS handshake is over, so a peer that never finishes it has
  // no Connection: no hello deadline, no frame deadline, not counted by --max-connections.
  test("a TCP connection that never completes the TLS handshake is closed after --hello-timeout-ms", async () => {
    const strict = await server(["--tls-cert", certs.cert, "--tls-key", certs.key, "--hello-timeout-ms", "500", "--frame-timeout-ms", "1000"]);
    const silent = await RawPeer.connect({ hostname: "127.0.0.1", port: strict.port });
    const halfHandshake = await RawPeer.connect({ hostname: "127.0.0.1", port: strict.port });
    halfHandshake.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // the start of a ClientHello record
    try {
      expect({ silentClosed: await silent.waitClosed(4500), halfHandshakeClosed: await halfHandshake.waitClosed(2000) }).toEqual({ silentClosed: true, halfHandshakeClosed: true });
    } finally {
      silent.end();
      halfHandshake.end();
    }
    expectAlive(strict.daemon);
  });

  test("token and TLS together: only the right token over TLS gets in", async () => {
    const both = await server(["--tls-cert", certs.cert, "--tls-key", certs.key, "--token-file", file("tls.token", "tls-and-token")]);
    const ok = await local(both.address, ["--tls-ca", certs.cert, "--token-file", file("tls-ok.token", "tls-and-token")]);
    await expectRoundTrip(ok.socket);
    const wrong = await local(both.address, ["--tls-ca", certs.cert, "--token-file", file("tls-wrong.token", "guess")], false);
    await expectRefused(wrong, "AUTH_FAILED");
  });
});

describe("Unix socket permissions", () => {
  let srv: ServerHandle;
  beforeAll(async () => {
    srv = await server();
  });

  test("the socket is created 0600 in a directory created 0700", async () => {
    const socketDir = path.join(dir, "fresh", "run");
    const l = await local(srv.address, [], true, path.join(socketDir, "local.sock"));
    const st = fs.statSync(l.socket);
    expect(st.isSocket()).toBe(true);
    expect((st.mode & 0o777).toString(8)).toBe("600");
    expect((fs.statSync(socketDir).mode & 0o777).toString(8)).toBe("700");
    await expectRoundTrip(l.socket);
  });

  test("an existing socket directory others can only read is used as it is, with the socket 0600", async () => {
    const socketDir = path.join(dir, "readable-dir");
    fs.mkdirSync(socketDir);
    fs.chmodSync(socketDir, 0o755);
    const l = await local(srv.address, [], true, path.join(socketDir, "local.sock"));
    expect((fs.statSync(socketDir).mode & 0o777).toString(8)).toBe("755");
    expect((fs.statSync(l.socket).mode & 0o777).toString(8)).toBe("600");
  });

  test("an existing socket directory others can write to is refused, says why, and is left as it was", async () => {
    const socketDir = path.join(dir, "group-writable-dir");
    fs.mkdirSync(socketDir);
    fs.chmodSync(socketDir, 0o775);
    const r = await mq(null, ["local", "--server", srv.address, "--data", path.join(dir, "gw-data"), "--socket", path.join(socketDir, "local.sock")], { timeoutMs: 10_000 });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`the socket directory ${socketDir} is writable by other users (mode 775)`);
    expect(fs.existsSync(path.join(socketDir, "local.sock"))).toBe(false);
    expect((fs.statSync(socketDir).mode & 0o777).toString(8)).toBe("775");
  });

  test("a socket path in a shared sticky directory (like /tmp) leaves that directory's mode as it was", async () => {
    const shared = path.join(dir, "shared-tmp");
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o1777);
    // Refusing, or starting with the socket somewhere private: either way, within 3 s (then it is killed).
    await mq(null, ["local", "--server", srv.address, "--data", path.join(dir, "shared-data"), "--socket", path.join(shared, "local.sock")], { timeoutMs: 3000 });
    expect((fs.statSync(shared).mode & 0o7777).toString(8)).toBe("1777");
  });

  test.skipIf(process.getuid?.() !== 0)("a socket directory owned by another user is refused", async () => {
    const socketDir = path.join(dir, "foreign");
    fs.mkdirSync(socketDir, { mode: 0o700 });
    fs.chownSync(socketDir, 12345, 12345);
    const r = await mq(null, ["local", "--server", srv.address, "--data", path.join(dir, "foreign-data"), "--socket", path.join(socketDir, "local.sock")], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("belongs to uid 12345");
    expect(fs.existsSync(path.join(socketDir, "local.sock"))).toBe(false);
  });
});

describe("id ownership", () => {
  test("another broker cannot publish, subscribe, unsubscribe, acknowledge or destroy as a global id it does not own, even by forging it", async () => {
    const srv = await server();
    const owner = await local(srv.address);
    const created = await mq(owner.socket, ["create"]);
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect((await mq(owner.socket, ["sub", id, "owned.topic"])).code).toBe(0);
    expect((await mq(owner.socket, ["pub", id, "owned.topic", "before"])).code).toBe(0);

    // The forger speaks the server protocol directly, with a token-less hello of its own identity.
    const forger = await helloPeer({ hostname: "127.0.0.1", port: srv.port }, "server");
    const own = (await forger.request({ op: "create", rid: 2 })).id as number;
    const data = new TextEncoder().encode("forged");
    let rid = 10;
    // Every global id but its own: the owner's among them (ids are small integers, so this covers it).
    for (let g = 0; g <= 20; g++) {
      if (g === own) continue;
      for (const frame of [
        { op: "pub", rid: ++rid, id: g, topic: "owned.topic", data },
        { op: "sub", rid: ++rid, id: g, topics: ["owned.topic", "spy"], from: "earliest" },
        { op: "unsub", rid: ++rid, id: g, topics: ["owned.topic"] },
        { op: "destroy", rid: ++rid, id: g },
      ]) {
        // The same answer for a foreign id as for a missing one: nothing is disclosed.
        expect(await forger.request(frame)).toMatchObject({ op: "error", code: "UNKNOWN_ID", message: `no client with id ${g}` });
      }
      forger.send({ op: "ack", id: g, topic: "owned.topic", seq: 1_000_000 }); // no reply: must be ignored
      expect(await forger.request({ op: "ack", rid: ++rid, id: g, topic: "owned.topic", seq: 1_000_000 })).toMatchObject({ op: "ok" });
    }
    expect(forger.inbox.filter((f) => f.op === "msgs")).toEqual([]); // it never received anyone's messages
    forger.end();

    // The owner's id is intact: its subscription, its cursor (the forged acks moved nothing) and
    // the message published before. A restart from disk proves the cursor: SIGKILL loses the
    // local broker's buffer, so the server must send "before" again.
    await owner.daemon.kill9();
    const restarted = await startLocal(srv.address, { dataDir: owner.dataDir, socket: owner.socket });
    cleanup.push(() => restarted.daemon[Symbol.asyncDispose]());
    const r = await mq(restarted.socket, ["recv", id, "--wait", "5", "--count", "1"]);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "before\n" });
    expect((await mq(restarted.socket, ["pub", id, "owned.topic", "after"])).code).toBe(0);
    expect((await mq(restarted.socket, ["recv", id, "--wait", "5"])).stdout).toBe("after\n");
    expect(listFiles(srv.dataDir).filter((n) => n.includes("spy"))).toEqual([]);
  });
});
