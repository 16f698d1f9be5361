/**
 * The HTTP endpoint (`--http`, docs/http.md) through the compiled binary: probes in both
 * states of the local broker, /metrics read by a strict Prometheus parser after a known
 * workload, the JSON API, the label cap, the bearer token, the refusal of an open address,
 * `--config` precedence, `mq up`'s two endpoints and `mq stats` with the server away.
 * Every request goes to 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, mq, mqCommand, startLocal, startServer, teardown, tmpDir, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { parseProm, valueOf } from "./prom.ts";

const HTTP_LOG = /http listening on http:\/\/127\.0\.0\.1:(\d+)/;

/** The base URL of a daemon's HTTP endpoint, from its log line. */
async function httpUrl(daemon: Daemon, nth = 0): Promise<string> {
  await daemon.waitFor(nth === 0 ? HTTP_LOG : new RegExp(`(?:${HTTP_LOG.source}[^]*){${nth + 1}}`));
  const all = [...daemon.log.matchAll(new RegExp(HTTP_LOG.source, "g"))];
  return `http://127.0.0.1:${all[nth]![1]}`;
}

async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  const r = await fetch(url, init);
  expect(r.headers.get("content-type")).toStartWith("application/json");
  return { status: r.status, body: await r.json() };
}

/** Polls `check` (at most `tries` × 100 ms) until it returns true; the last answer is in the failure. */
async function until(what: string, check: () => Promise<boolean>, tries = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await Bun.sleep(100);
  }
  throw new Error(`not reached: ${what}`);
}

describe("a server and a local broker with --http, after publishing 5 to t and receiving 2", () => {
  let server: ServerHandle;
  let local: LocalHandle;
  let serverHttp: string;
  let localHttp: string;
  let id: number;
  let globalId: number;
  const payloads = ["one", "two", "three", "four", "five"];
  const N = payloads.length;
  const K = 2;

  beforeAll(async () => {
    server = await startServer({ args: ["--http", "127.0.0.1:0"] });
    serverHttp = await httpUrl(server.daemon);
    local = await startLocal(server.address, { args: ["--http", "127.0.0.1:0"] });
    localHttp = await httpUrl(local.daemon);
    id = Number((await mq(local.socket, ["create"])).stdout);
    expect((await mq(local.socket, ["sub", String(id), "t"])).code).toBe(0);
    expect((await mq(local.socket, ["pub", String(id), "t", "--lines"], { stdin: `${payloads.join("\n")}\n` })).code).toBe(0);
    expect((await mq(local.socket, ["recv", String(id), "--count", String(K), "--wait", "5"])).stdout).toBe("one\ntwo\n");
    globalId = (await getJson(`${localHttp}/api/local`)).body.ids.find((x: { id: number }) => x.id === id).globalId;
    // The acks reach the server a moment after recv returns.
    await until("the server saw K acks", async () => (await getJson(`${serverHttp}/api/topics/t`)).body.consumers?.[0]?.ackedSeq === K);
  });

  afterAll(async () => {
    await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
  });

  test("server /metrics: well-formed Prometheus text; published, delivered, acked and backlog of t as the workload says", async () => {
    const r = await fetch(`${serverHttp}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const e = parseProm(await r.text());
    for (const name of e.types.keys()) expect(name).toStartWith("mq_");
    expect(valueOf(e, "mq_topic_published_messages_total", { topic: "t" })).toBe(N);
    expect(valueOf(e, "mq_topic_published_bytes_total", { topic: "t" })).toBe(payloads.join("").length);
    expect(valueOf(e, "mq_topic_delivered_messages_total", { topic: "t" })).toBe(N);
    expect(valueOf(e, "mq_topic_acked_messages_total", { topic: "t" })).toBe(K);
    expect(valueOf(e, "mq_topic_messages", { topic: "t" })).toBe(N);
    expect(valueOf(e, "mq_topic_head_seq", { topic: "t" })).toBe(N);
    expect(valueOf(e, "mq_subscriber_backlog_messages", { topic: "t", id: String(globalId) })).toBe(N - K);
    expect(valueOf(e, "mq_subscriber_pending_messages", { topic: "t", id: String(globalId) })).toBe(N - K);
    expect(valueOf(e, "mq_server_published_total")).toBe(N);
    expect(valueOf(e, "mq_server_topics")).toBe(2); // general and t
    expect(valueOf(e, "mq_server_sessions")).toBe(1);
    expect(valueOf(e, "mq_server_ids")).toBe(1);
    expect(valueOf(e, "mq_server_rss_bytes")).toBeGreaterThan(0);
    expect(e.types.get("mq_server_uptime_seconds")).toBe("gauge");
    for (const name of ["mq_server_expired_total", "mq_server_dead_lettered_total", "mq_server_lost", "mq_server_connections"]) expect(e.types.has(name)).toBe(true);
    expect(e.types.get("mq_fsync_seconds")).toBe("histogram");
    // --fsync always (the file store): the five appends were fsynced.
    if (!process.env.MQ_TEST_STORE || process.env.MQ_TEST_STORE === "file") expect(valueOf(e, "mq_fsync_seconds_count")).toBeGreaterThan(0);
  });

  test("local /metrics: its counters and the latency histograms count the K messages received and acknowledged", async () => {
    const e = parseProm(await (await fetch(`${localHttp}/metrics`)).text());
    expect(valueOf(e, "mq_local_received_total")).toBe(N);
    expect(valueOf(e, "mq_local_delivered_total")).toBe(K);
    expect(valueOf(e, "mq_local_connected")).toBe(1);
    expect(e.types.get("mq_local_end_to_end_seconds")).toBe("histogram");
    expect(valueOf(e, "mq_local_end_to_end_seconds_count")).toBe(K);
    expect(valueOf(e, "mq_local_publish_to_ack_seconds_count")).toBe(K);
    expect(valueOf(e, "mq_local_publish_to_ack_seconds_bucket", { le: "+Inf" })).toBe(K);
  });

  test("JSON API: /api/topics, /api/topics/t, /api/consumers, /api/brokers", async () => {
    const topics = await getJson(`${serverHttp}/api/topics`);
    expect(topics.status).toBe(200);
    expect(topics.body.topics.map((t: { name: string }) => t.name)).toEqual(["general", "t"]);
    const t = topics.body.topics[1];
    expect(t).toMatchObject({ name: "t", messages: N, headSeq: N, firstSeq: 1, subscribers: 1, bytes: payloads.join("").length, publishedTotal: N, backlog: N - K });
    expect(typeof t.rate).toBe("number");

    const one = await getJson(`${serverHttp}/api/topics/t`);
    expect(one.body.consumers).toEqual([{ id: globalId, topic: "t", group: null, filter: "t", ackedSeq: K, backlog: N - K, pending: N - K, broker: expect.any(String) }]);

    const consumers = await getJson(`${serverHttp}/api/consumers`);
    expect(consumers.body.consumers).toEqual(one.body.consumers);

    const identity = (await getJson(`${localHttp}/api/local`)).body.local.identity;
    const brokers = await getJson(`${serverHttp}/api/brokers`);
    expect(brokers.body.brokers).toEqual([{ name: identity, address: expect.stringMatching(/^127\.0\.0\.1:\d+$/), connectedAt: expect.any(String), ids: 1, inFlight: N - K }]);
    expect(Number.isNaN(Date.parse(brokers.body.brokers[0].connectedAt))).toBe(false);
    expect(one.body.consumers[0].broker).toBe(identity);
  });

  test("the rate of t: messages per second over the last seconds, sampled by a timer", async () => {
    // A second burst of 20: the rate becomes positive (samples are a second apart).
    expect((await mq(local.socket, ["pub", String(id), "t", "--lines"], { stdin: "x\n".repeat(20) })).code).toBe(0);
    await until("a positive rate", async () => (await getJson(`${serverHttp}/api/topics/t`)).body.rate > 0, 50);
  });

  test("a request without a usable Host (HTTP/1.0, an empty one, 'a b') is 400, not a 500 and an ERROR line each", async () => {
    const { hostname, port } = new URL(serverHttp);
    for (const head of ["GET /healthz HTTP/1.0\r\n\r\n", "GET /metrics HTTP/1.1\r\nHost:\r\n\r\n", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"]) {
      const answer = Promise.withResolvers<string>();
      let got = "";
      const socket = await Bun.connect({
        hostname,
        port: Number(port),
        socket: {
          data: (_s, chunk) => void (got += chunk.toString()),
          close: () => answer.resolve(got),
          error: () => answer.resolve(got),
        },
      });
      socket.write(head);
      const timer = setTimeout(() => socket.end(), 3000);
      const text = await answer.promise;
      clearTimeout(timer);
      expect({ head, status: text.split("\r\n")[0] }).toEqual({ head, status: expect.stringMatching(/^HTTP\/1\.[01] 400 /) });
    }
    expect(server.daemon.log).not.toContain("request failed: Invalid URL");
  });

  test("bad paths: unknown topic 404, bad topic name 400, unknown path 404, POST 405 — all JSON with a message", async () => {
    const missing = await getJson(`${serverHttp}/api/topics/nosuch`);
    expect(missing).toEqual({ status: 404, body: { error: expect.stringContaining('no topic "nosuch"') } });
    const bad = await getJson(`${serverHttp}/api/topics/bad..name`);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain('bad topic name "bad..name"');
    expect((await getJson(`${serverHttp}/api/topics/%E0%A4%A`)).status).toBe(400);
    const unknown = await getJson(`${serverHttp}/nowhere`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toContain("/nowhere");
    // Every path the server serves is named, so that a mistyped one finds the right one.
    expect(unknown.body.error).toContain("this server serves / (the dashboard), /livez, /healthz, /metrics, /api/topics[/NAME], /api/consumers, /api/brokers, /api/server");
    expect((await getJson(`${localHttp}/nowhere`)).body.error).toContain("this local broker serves / (the dashboard), /livez, /healthz, /metrics, /api/local");
    expect((await getJson(`${serverHttp}/api/topics`, { method: "POST" })).status).toBe(405);
    // The topics live on the server: a local broker says where to ask.
    const onLocal = await getJson(`${localHttp}/api/topics`);
    expect(onLocal.status).toBe(404);
    expect(onLocal.body.error).toContain("server's --http");
  });

  test("/healthz of the local broker: 200 with its server, 503 with the reason once it is gone, 200 again when it is back; mq stats shows the local part meanwhile", async () => {
    expect(await getJson(`${serverHttp}/healthz`)).toEqual({ status: 200, body: expect.objectContaining({ status: "ok", role: "server" }) });
    expect(await getJson(`${localHttp}/healthz`)).toEqual({ status: 200, body: { status: "ok", role: "local", server: "connected" } });

    await server.daemon.kill9();
    await until("503 from the local broker", async () => (await fetch(`${localHttp}/healthz`)).status === 503);
    const down = await getJson(`${localHttp}/healthz`);
    expect(down.body).toMatchObject({ status: "unavailable", role: "local", server: "unreachable" });
    expect(down.body.reason).toContain(server.address);
    // Liveness: the process answers still.
    expect((await getJson(`${localHttp}/livez`)).status).toBe(200);
    expect((await getJson(`${localHttp}/api/local`)).body).toMatchObject({ server: "unreachable", local: { connected: false } });

    const stats = await mq(local.socket, ["stats"]);
    expect(stats.code).toBe(4);
    expect(stats.stdout).toMatch(/^local:\n/);
    expect(stats.stdout).toMatch(/^ {2}received +\d+$/m);
    expect(stats.stdout).not.toContain("server:\n");
    expect(stats.stderr).toContain("UNAVAILABLE: the local broker cannot reach its server");
    // With why, as a request would be told (the broker's last attempt at the server).
    expect(stats.stderr).toContain(`server ${server.address} unreachable (the last attempt: `);
    const statsJson = await mq(local.socket, ["stats", "--json"]);
    expect(statsJson.code).toBe(4);
    expect(JSON.parse(statsJson.stdout)).toMatchObject({ local: { connected: false }, server: null });

    server = await startServer({ port: server.port, dataDir: server.dataDir, args: ["--http", "127.0.0.1:0"] });
    await until("200 again", async () => (await fetch(`${localHttp}/healthz`)).status === 200, 150);
    // The counters of t survive the restart in what is stored (the messages), not in the counters since the start.
    serverHttp = await httpUrl(server.daemon);
    expect((await getJson(`${serverHttp}/api/topics/t`)).body).toMatchObject({ messages: N + 20, publishedTotal: 0 });
  });
});

test("a pattern subscriber and a queue-group member: their filter and group in the API and in the backlog series", async () => {
  const server = await startServer({ args: ["--http", "127.0.0.1:0", "--store", "memory"] });
  const local = await startLocal(server.address, { args: ["--http", "127.0.0.1:0"] });
  try {
    const base = await httpUrl(server.daemon);
    const localBase = await httpUrl(local.daemon);
    const [watcher, worker] = [Number((await mq(local.socket, ["create"])).stdout), Number((await mq(local.socket, ["create"])).stdout)];
    expect((await mq(local.socket, ["sub", String(watcher), "orders.*"])).code).toBe(0);
    expect((await mq(local.socket, ["sub", String(worker), "orders.eu", "--group", "workers"])).code).toBe(0);
    expect((await mq(local.socket, ["pub", String(watcher), "orders.eu", "--lines"], { stdin: "a\nb\nc\n" })).code).toBe(0);
    const ids = (await getJson(`${localBase}/api/local`)).body.ids as Array<{ id: number; globalId: number }>;
    const globalOf = (local: number) => ids.find((x) => x.id === local)?.globalId;
    await until("both have the 3 messages in flight", async () => {
      const c = (await getJson(`${base}/api/topics/orders.eu`)).body.consumers as Array<{ pending: number }>;
      return c.length === 2 && c.every((x) => x.pending === 3);
    });
    const consumers = (await getJson(`${base}/api/topics/orders.eu`)).body.consumers;
    expect(consumers).toContainEqual(expect.objectContaining({ id: globalOf(watcher), filter: "orders.*", group: null, ackedSeq: 0, backlog: 3 }));
    expect(consumers).toContainEqual(expect.objectContaining({ id: globalOf(worker), filter: "orders.eu", group: "workers", ackedSeq: 0, backlog: 3 }));
    const e = parseProm(await (await fetch(`${base}/metrics`)).text());
    expect(valueOf(e, "mq_subscriber_backlog_messages", { topic: "orders.eu", id: String(globalOf(worker)), group: "workers" })).toBe(3);
    expect(e.samples.find((x) => x.name === "mq_subscriber_backlog_messages" && x.labels.id === String(globalOf(watcher)))!.labels.group).toBeUndefined();
  } finally {
    await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
  }
});

describe("--metrics-max-topics", () => {
  test("with a cap of 2 and 3 topics, the third is summed under topic=\"_other\"", async () => {
    const server = await startServer({ args: ["--http", "127.0.0.1:0", "--metrics-max-topics", "2", "--store", "memory"] });
    const local = await startLocal(server.address);
    try {
      const base = await httpUrl(server.daemon);
      const id = Number((await mq(local.socket, ["create"])).stdout);
      // general (a default topic), t1, t2: sorted by name, t2 is past the cap.
      for (const [topic, n] of [["t1", 1], ["t2", 3]] as const) {
        expect((await mq(local.socket, ["pub", String(id), topic, "--lines"], { stdin: "m\n".repeat(n) })).code).toBe(0);
      }
      const e = parseProm(await (await fetch(`${base}/metrics`)).text());
      const published = e.samples.filter((s) => s.name === "mq_topic_published_messages_total");
      expect(published.map((s) => [s.labels.topic, s.value])).toEqual([["general", 0], ["t1", 1], ["_other", 3]]);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test("a cap that is not a number is bad usage (exit 2) naming it", async () => {
    const r = await mq(null, ["server", "--http", "127.0.0.1:0", "--metrics-max-topics", "many", "--store", "memory"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--metrics-max-topics must be an integer >= 0, got "many"');
  });
});

describe("who may read it", () => {
  test("a non-loopback --http without --http-token-file or TLS: exit 2 saying what to give (server and local broker)", async () => {
    const dir = tmpDir();
    try {
      const srv = await mq(null, ["server", "--http", "0.0.0.0:0", "--data", dir]);
      expect(srv.code).toBe(2);
      expect(srv.stderr).toContain("--http 0.0.0.0:0 is not a loopback address");
      expect(srv.stderr).toContain("--http-token-file FILE");
      expect(srv.stderr).toContain("--insecure");
      const loc = await mq(null, ["local", "--http", "192.0.2.1:0", "--data", dir, "--socket", path.join(dir, "s.sock")]);
      expect(loc.code).toBe(2);
      expect(loc.stderr).toContain("--http 192.0.2.1:0 is not a loopback address");
      const up = await mq(null, ["up", "--local-http", "0.0.0.0:0", "--data", dir]);
      expect(up.code).toBe(2);
      expect(up.stderr).toContain("--local-http 0.0.0.0:0 is not a loopback address");
      expect(fs.existsSync(path.join(dir, "token"))).toBe(false); // refused before anything was written
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--http-token-file: 401 without the bearer token or with a wrong one, 200 with it; the probes stay open", async () => {
    const dir = tmpDir();
    const tokenFile = path.join(dir, "http-token");
    fs.writeFileSync(tokenFile, "s3cret-token\n", { mode: 0o600 });
    const server = await startServer({ args: ["--http", "127.0.0.1:0", "--http-token-file", tokenFile, "--store", "memory"] });
    try {
      const base = await httpUrl(server.daemon);
      expect(server.daemon.log).toContain("bearer token required");
      for (const p of ["/metrics", "/api/topics", "/api/brokers"]) {
        const none = await fetch(`${base}${p}`);
        expect(none.status).toBe(401);
        expect(none.headers.get("www-authenticate")).toContain("Bearer");
        expect(((await none.json()) as { error: string }).error).toContain("Authorization: Bearer");
        expect((await fetch(`${base}${p}`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
        expect((await fetch(`${base}${p}`, { headers: { authorization: "Bearer s3cret-token" } })).status).toBe(200);
      }
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/livez`)).status).toBe(200);
    } finally {
      await teardown([server.daemon], [server.dataDir, dir]);
    }
  });
});

/** A self-signed certificate for 127.0.0.1 made with openssl (in .ci/run's packages), in `dir`. */
function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  const r = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
  return { cert, key };
}

describe("open addresses on purpose", () => {
  test("the server's --tls-cert makes its endpoint HTTPS, which a non-loopback --http may use without a token", async () => {
    const dir = tmpDir();
    const { cert, key } = selfSigned(dir);
    const server = await startServer({ args: ["--tls-cert", cert, "--tls-key", key, "--http", "0.0.0.0:0", "--store", "memory"] });
    try {
      const m = await server.daemon.waitFor(/http listening on https:\/\/0\.0\.0\.0:(\d+)/);
      const r = await fetch(`https://127.0.0.1:${m[1]}/api/topics`, { tls: { ca: fs.readFileSync(cert, "utf8") } } as RequestInit);
      expect(r.status).toBe(200);
      expect(((await r.json()) as { topics: unknown[] }).topics).toHaveLength(1);
    } finally {
      await teardown([server.daemon], [server.dataDir, dir]);
    }
  });

  test("mq local --insecure serves a non-loopback --http open", async () => {
    const server = await startServer({ args: ["--store", "memory"] });
    const local = await startLocal(server.address, { args: ["--http", "0.0.0.0:0", "--insecure"] });
    try {
      const m = await local.daemon.waitFor(/http listening on http:\/\/0\.0\.0\.0:(\d+)/);
      expect((await getJson(`http://127.0.0.1:${m[1]}/api/local`)).body.server).toBe("connected");
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });
});

describe("--config FILE", () => {
  test("the file's options apply, a flag given on the command line wins over the file", async () => {
    const dir = tmpDir();
    const file = path.join(dir, "mq.toml");
    fs.writeFileSync(file, ['http = "127.0.0.1:0"', 'default-topics = "from-file"', "metrics-max-topics = 7", 'store = "memory"', ""].join("\n"));
    const server = await startServer({ args: ["--config", file, "--default-topics", "from-flag"] });
    try {
      const base = await httpUrl(server.daemon); // --http came from the file
      const names = (await getJson(`${base}/api/topics`)).body.topics.map((t: { name: string }) => t.name);
      expect(names).toEqual(["from-flag"]);
    } finally {
      await teardown([server.daemon], [server.dataDir, dir]);
    }
  });

  test("JSON works too; an unknown key, a value of the wrong type, a bad value or bad syntax: exit 2 naming the key and the file", async () => {
    const dir = tmpDir();
    try {
      const write = (name: string, text: string) => {
        const f = path.join(dir, name);
        fs.writeFileSync(f, text);
        return f;
      };
      const unknown = write("unknown.toml", 'listn = "127.0.0.1:0"\n');
      let r = await mq(null, ["server", "--config", unknown, "--data", dir]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`config file ${unknown}: unknown key "listn" for \`mq server\`; did you mean "listen"?`);

      const wrongType = write("wrong.json", '{"insecure": "yes"}');
      r = await mq(null, ["server", "--config", wrongType, "--data", dir]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`config file ${wrongType}: key "insecure" must be true or false, got "yes"`);

      const badValue = write("bad.toml", 'max-topics = "lots"\n');
      r = await mq(null, ["server", "--config", badValue, "--data", dir]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--max-topics must be an integer >= 1, got "lots" (key "max-topics" in config file ${badValue})`);
      // The same bad value overridden by a good flag: accepted (flags win), checked with a bad --http to stop before starting.
      r = await mq(null, ["server", "--config", badValue, "--max-topics", "5", "--http", "nonsense", "--data", dir]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--http");
      expect(r.stderr).not.toContain("max-topics");

      const syntax = write("syntax.toml", "listen = \n");
      r = await mq(null, ["local", "--config", syntax]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`config file ${syntax} is not valid TOML`);

      // Missing: a runtime error (exit 1, restarted by the systemd units, as a TLS file), not bad usage.
      r = await mq(null, ["server", "--config", path.join(dir, "absent.toml")]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`mq: error: Cannot read the --config file ${path.join(dir, "absent.toml")}: `);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("mq up --http --local-http: the server's endpoint and the local broker's, each with its own API", async () => {
  const dir = tmpDir();
  const socket = path.join(dir, "up.sock");
  const proc = Bun.spawn([...mqCommand(), "up", "--data", dir, "--socket", socket, "--listen", "127.0.0.1:0", "--store", "memory", "--http", "127.0.0.1:0", "--local-http", "127.0.0.1:0"], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const up = new Daemon("up", proc);
  try {
    await up.waitFor(/mq is up/);
    const [first, second] = [await httpUrl(up, 0), await httpUrl(up, 1)];
    const roles = [(await getJson(`${first}/livez`)).body.role, (await getJson(`${second}/livez`)).body.role];
    expect(roles).toEqual(["server", "local"]);
    expect((await getJson(`${first}/api/brokers`)).body.brokers).toHaveLength(1);
    await until("the local broker is ready", async () => (await fetch(`${second}/healthz`)).status === 200);
    expect((await getJson(`${second}/api/local`)).body.server).toBe("connected");
  } finally {
    await teardown([up], [dir]);
  }
});
