/**
 * Message headers end to end (docs/semantics.md, "Headers"): `mq pub --header k=v` to
 * `recv --json`, through the library, across server restarts, and refused when malformed,
 * from the CLI (exit 2) and on the wire (BAD_REQUEST, the daemon lives on).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/index.ts";
import { expectAlive, expectRoundTrip, helloPeer, type RawPeer } from "../security/kit.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, restartServer } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

let topics = 0;
/** A fresh id subscribed to a fresh topic. */
async function subscribed(): Promise<{ id: string; topic: string }> {
  const topic = `headers.t${++topics}`;
  const id = String(await cluster.create());
  expect((await cluster.run(["sub", id, topic])).code).toBe(0);
  return { id, topic };
}

describe("headers through the CLI", () => {
  test("`--header` round trip to `recv --json`: split at the first '=', unicode, empty values, several headers; none on a plain message; plain `recv` unchanged", async () => {
    const { id, topic } = await subscribed();
    const p = await cluster.run(["pub", id, topic, "--header", "a=b=c", "--header", "ключ=значение 😀", "--header", "empty=", "--header", "x-trace=ab12", "with"]);
    expect(p.code).toBe(0);
    expect((await cluster.run(["pub", id, topic, "without"])).code).toBe(0);
    const r = await cluster.run(["recv", id, "--count", "2", "--follow", "--json"]);
    const got = jsonLines(r.stdout);
    expect(got.map((m) => m.data)).toEqual(["with", "without"]);
    expect(got[0]!.headers).toEqual({ a: "b=c", "ключ": "значение 😀", empty: "", "x-trace": "ab12" });
    expect("headers" in got[1]!).toBe(false);

    // Plain output is the payload, nothing else.
    expect((await cluster.run(["pub", id, topic, "--header", "k=v", "text"])).code).toBe(0);
    expect((await cluster.run(["recv", id, "--wait", "10"])).stdout).toBe("text\n");
  });

  test("headers count against the local broker's buffer budgets like payload bytes", async () => {
    const { id, topic } = await subscribed();
    const before = JSON.parse((await cluster.run(["stats", "--json"])).stdout).local;
    expect((await cluster.run(["pub", id, topic, "--header", `big=${"x".repeat(10_000)}`, "m"])).code).toBe(0);
    let local = before;
    for (let i = 0; i < 100 && local.pending <= before.pending; i++) {
      await Bun.sleep(20);
      local = JSON.parse((await cluster.run(["stats", "--json"])).stdout).local;
    }
    expect(local.pending).toBe(before.pending + 1);
    // 1 payload byte, 10 003 bytes of headers (+ their framing), 128 of overhead.
    expect(local.buffered_bytes - before.buffered_bytes).toBeGreaterThan(10_000 + 128);
    expect((await cluster.run(["recv", id, "--wait", "10"])).stdout).toBe("m\n");
  });

  test("`--lines` gives every line the headers", async () => {
    const { id, topic } = await subscribed();
    expect((await cluster.run(["pub", id, topic, "--lines", "--header", "batch=7"], { stdin: "1\n2\n3\n" })).code).toBe(0);
    const got = jsonLines((await cluster.run(["recv", id, "--count", "3", "--follow", "--json"])).stdout);
    expect(got.map((m) => [m.data, m.headers])).toEqual([["1", { batch: "7" }], ["2", { batch: "7" }], ["3", { batch: "7" }]]);
  });

  test.each([
    [["--header", "novalue"], /--header "novalue" has no "="/],
    [["--header", "=v"], /--header "=v": the key is empty/],
    [["--header", " k=v"], /the key starts or ends with a space/],
    [["--header", "a\u0001b=v"], /control character/],
    [["--header", `${"k".repeat(129)}=v`], /the key is 129 bytes, above the limit of 128/],
    [["--header", "k=1", "--header", "k=2"], /--header "k" is given twice/],
    [Array.from({ length: 65 }, (_, i) => ["--header", `k${i}=v`]).flat(), /at most 64 headers, got 65/],
    [["--header", `big=${"x".repeat(16 * 1024)}`], /headers of at most 16384 bytes in all, got 16387/],
  ])("malformed %#: exit 2 naming the header, nothing published", async (args, message) => {
    const { id, topic } = await subscribed();
    const r = await cluster.run(["pub", id, topic, ...args, "m"]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: expect.stringMatching(message) });
    expect((await cluster.run(["recv", id, "--wait", "0.3"])).code).toBe(3);
  });
});

describe("headers through the library", () => {
  test("publish(…, { headers }) → message.headers; publishes made together (one `pubs`) keep each one's own headers, or none", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    {
      const topic = `headers.lib${++topics}`;
      const id = await c.create();
      await c.subscribe(id, [topic]);
      await Promise.all([
        c.publish(id, topic, "one", { headers: { n: "1", "ü": "ß" } }),
        c.publish(id, topic, "two"),
        c.publish(id, topic, "three", { headers: { n: "3", eq: "a=b" } }),
      ]);
      const got: Array<[string, unknown]> = [];
      for (let i = 0; i < 20 && got.length < 3; i++) {
        const r = await c.recv(id, { max: 10, waitMs: 1000 });
        for (const m of r.messages) got.push([m.text(), m.headers]);
        await r.ack();
      }
      expect(got).toEqual([["one", { n: "1", "ü": "ß" }], ["two", undefined], ["three", { n: "3", eq: "a=b" }]]);
      // Malformed headers never leave the process.
      await expect(c.publish(id, topic, "x", { headers: { "": "v" } })).rejects.toThrow(/the key is empty/);
      await expect(c.publish(id, topic, "x", { headers: { k: 1 as unknown as string } })).rejects.toThrow(/a string value for header "k"/);
    }
  });
});

describe("headers across server restarts", () => {
  test.each([["SIGTERM"], ["SIGKILL"]])("stored in the record: read back from disk after a %s of the server", async (signal) => {
    const serverData = tmpDir("mq-server-");
    let server = await startServer({ dataDir: serverData });
    const local = await startLocal(server.address);
    try {
      const id = String(await createOn(local.socket));
      // No subscriber yet: the messages are read from the segment after the restart, not from memory.
      expect((await mq(local.socket, ["pub", id, "kept", "--header", "k=v=w", "--header", "emoji=😀", "one"])).code).toBe(0);
      expect((await mq(local.socket, ["pub", id, "kept", "two"])).code).toBe(0);
      server = await restartServer(server, [local], { kill: signal === "SIGKILL" });
      expect((await mq(local.socket, ["sub", id, "kept", "--from", "earliest"])).code).toBe(0);
      const got = jsonLines((await mq(local.socket, ["recv", id, "--count", "2", "--follow", "--json"])).stdout);
      expect(got.map((m) => [m.data, m.headers])).toEqual([["one", { k: "v=w", emoji: "😀" }], ["two", undefined]]);
    } finally {
      await teardown([local.daemon, server.daemon], [serverData, local.dataDir]);
    }
  });
});

describe("headers on the wire", () => {
  const opened: RawPeer[] = [];
  afterAll(() => {
    for (const p of opened) p.end();
  });

  test.each([["server"], ["local"]] as Array<["server" | "local"]>)("a bad `headers` field (%s) is BAD_REQUEST naming the field; the connection and the daemon live on", async (kind) => {
    const target = kind === "server" ? { hostname: "127.0.0.1", port: cluster.server.port } : { unix: cluster.local.socket };
    const peer = await helloPeer(target, kind);
    opened.push(peer);
    const data = new Uint8Array([1]);
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ op: "pub", id: 1, topic: "t", data, headers: "k=v" }, /"headers" must be a map of strings to strings/],
      [{ op: "pub", id: 1, topic: "t", data, headers: ["k", "v"] }, /"headers" must be a map/],
      [{ op: "pub", id: 1, topic: "t", data, headers: { k: 1 } }, /"headers" must be a string value for header "k"/],
      [{ op: "pub", id: 1, topic: "t", data, headers: { "": "v" } }, /the key is empty/],
      [{ op: "pub", id: 1, topic: "t", data, headers: { "a=b": "v" } }, /the key holds "="/],
      [{ op: "pub", id: 1, topic: "t", data, headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, ""])) }, /at most 64 headers/],
      [{ op: "pub", id: 1, topic: "t", data, headers: { big: "x".repeat(20_000) } }, /headers of at most 16384 bytes/],
      [{ op: "pub", id: 1, topic: "t", data, ttl: 0 }, /"ttl" must be a number of ms >= 1/],
      [{ op: "pubs", id: 1, topic: "t", payloads: [data, data], headers: [{}, { k: 2 }] }, /"headers" must be an array of header maps/],
      [{ op: "pubs", id: 1, topic: "t", payloads: [data, data], headers: [{ k: "v" }] }, /1 header maps for 2 payloads/],
    ];
    let rid = 10;
    for (const [frame, message] of bad) {
      const r = await peer.request({ ...frame, rid: ++rid });
      expect({ sent: frame, got: r }).toMatchObject({ sent: frame, got: { op: "error", rid, code: "BAD_REQUEST", message: expect.stringMatching(message) } });
    }
    expect(peer.closed).toBe(false);
    expectAlive(cluster.server.daemon, cluster.local.daemon);
    await expectRoundTrip(cluster.local.socket);
  });
});
