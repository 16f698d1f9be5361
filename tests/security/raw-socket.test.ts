/**
 * Hostile bytes on a raw socket against both daemons, started from the binary: the server on
 * its TCP port and the local broker on its Unix socket. One suite, run once per daemon.
 * After every case the daemons are alive, a connection opened before it never noticed, and a
 * normal round trip through the CLI still works.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { startLocal, startServer, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { RawPeer, Rng, expectAlive, expectRoundTrip, frameOf, frameOfBytes, helloFor, helloPeer, lengthPrefix, type Target } from "./kit.ts";

const HELLO_TIMEOUT_MS = 500;
const FRAME_TIMEOUT_MS = 1000;
/** Generous upper bound for "closed by a deadline": the stall check runs once a second. */
const CLOSE_WITHIN_MS = FRAME_TIMEOUT_MS + 4000;
const timeouts = ["--hello-timeout-ms", String(HELLO_TIMEOUT_MS), "--frame-timeout-ms", String(FRAME_TIMEOUT_MS)];

let server: ServerHandle;
let local: LocalHandle;

beforeAll(async () => {
  server = await startServer({ args: timeouts });
  local = await startLocal(server.address, { args: timeouts });
});

afterAll(async () => {
  await local?.daemon[Symbol.asyncDispose]();
  await server?.daemon[Symbol.asyncDispose]();
  for (const dir of [local?.dataDir, server?.dataDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

type Kind = "server" | "local";

describe.each([
  ["server over TCP", "server"],
  ["local broker over its Unix socket", "local"],
] as Array<[string, Kind]>)("%s", (_name, kind) => {
  const target = (): Target => (kind === "server" ? { hostname: "127.0.0.1", port: server.port } : { unix: local.socket });
  const opened: RawPeer[] = [];
  let bystander: RawPeer;
  let rid = 100;

  async function connect(): Promise<RawPeer> {
    const p = await RawPeer.connect(target());
    opened.push(p);
    return p;
  }

  async function connectWithHello(): Promise<RawPeer> {
    const p = await helloPeer(target(), kind);
    opened.push(p);
    return p;
  }

  /** A request every daemon serves without side effects. */
  const harmless = () => (kind === "server" ? { op: "topics", rid: ++rid } : { op: "recv", rid: ++rid, id: 999_999, max: 1, wait: 0 });
  const harmlessAnswer = () => (kind === "server" ? { op: "ok" } : { op: "error", code: "UNKNOWN_ID" });

  /** Both daemons alive, the connection opened before the test still served, the CLI round trip works. */
  async function expectHealthy(): Promise<void> {
    expectAlive(server.daemon, local.daemon);
    expect(bystander.closed).toBe(false);
    expect(await bystander.request(harmless())).toMatchObject(harmlessAnswer());
    await expectRoundTrip(local.socket);
  }

  /** The next frame is an error with `code` (and a message matching `message`), then the daemon closes. */
  async function expectErrorThenClose(peer: RawPeer, code: string, message?: RegExp): Promise<void> {
    const r = await peer.next();
    expect(r).toMatchObject({ op: "error", code });
    if (message) expect(String(r!.message)).toMatch(message);
    expect(await peer.waitClosed(CLOSE_WITHIN_MS)).toBe(true);
  }

  beforeAll(async () => {
    bystander = await helloPeer(target(), kind);
    opened.push(bystander);
  });

  afterAll(() => {
    for (const p of opened) p.end();
  });

  test("a connection sending random bytes gets at most error frames and is closed", async () => {
    const peers: RawPeer[] = [];
    for (let seed = 1; seed <= 6; seed++) {
      // Half before any hello, half after one.
      const p = seed % 2 === 0 ? await connectWithHello() : await connect();
      p.write(new Rng(seed * 7919).bytes(2048));
      peers.push(p);
    }
    for (const p of peers) {
      expect(await p.waitClosed(CLOSE_WITHIN_MS)).toBe(true);
      for (const f of p.inbox) expect(f).toMatchObject({ op: "error" });
    }
    // Random bytes behind a plausible length prefix: the body is not a CBOR map.
    for (let seed = 1; seed <= 4; seed++) {
      const p = await connectWithHello();
      p.write(frameOfBytes(new Uint8Array([0x1f, ...new Rng(seed).bytes(200)])));
      await expectErrorThenClose(p, "BAD_REQUEST", /not valid CBOR|not a CBOR map/);
    }
    await expectHealthy();
  });

  test("a 0xFFFFFFFF length prefix is FRAME_TOO_LARGE, then the connection is closed", async () => {
    const before = await connect();
    before.write(lengthPrefix(0xffffffff));
    await expectErrorThenClose(before, "FRAME_TOO_LARGE", /4294967295 bytes is above the limit/);
    const after = await connectWithHello();
    after.write(lengthPrefix(0xffffffff));
    await expectErrorThenClose(after, "FRAME_TOO_LARGE");
    await expectHealthy();
  });

  test("a frame of length 0 is BAD_REQUEST, then the connection is closed", async () => {
    const p = await connectWithHello();
    p.write(lengthPrefix(0));
    await expectErrorThenClose(p, "BAD_REQUEST", /length 0/);
    await expectHealthy();
  });

  test.each([
    ["an array", ["hello", 1]],
    ["an integer", 42],
    ["a string", "hello"],
    ["null", null],
    ["a byte string", new Uint8Array([1, 2, 3])],
    ["a tagged date", new Date(0)],
  ])("CBOR that is not a map (%s) is BAD_REQUEST, then the connection is closed", async (_what, value) => {
    const p = await connectWithHello();
    p.send(value);
    await expectErrorThenClose(p, "BAD_REQUEST", /not a CBOR map/);
    await expectHealthy();
  });

  test("an unknown op is UNKNOWN_OP with the request id, and the connection stays open", async () => {
    const p = await connectWithHello();
    expect(await p.request({ op: "frobnicate", rid: 7 })).toMatchObject({ op: "error", rid: 7, code: "UNKNOWN_OP", message: expect.stringContaining("frobnicate") });
    expect(await p.request({ op: "constructor", rid: 8 })).toMatchObject({ op: "error", rid: 8, code: "UNKNOWN_OP" });
    expect(await p.request(harmless())).toMatchObject(harmlessAnswer());
    expect(p.closed).toBe(false);
    await expectHealthy();
  });

  test("wrong field types, missing fields and extra fields are BAD_REQUEST naming the field, and the connection stays open", async () => {
    const p = await connectWithHello();
    const data = new Uint8Array([1]);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ op: "pub", rid: 10, id: "1", topic: "a", data }, "id"],
      [{ op: "pub", rid: 11, id: 1, topic: 7, data }, "topic"],
      [{ op: "pub", rid: 12, id: 1, topic: "a", data: "text, not bytes" }, "data"],
      [{ op: "pub", rid: 13, id: -1, topic: "a", data }, "id"],
      [{ op: "pub", rid: 14, id: 1.5, topic: "a", data }, "id"],
      [{ op: "pub", rid: 15, id: 1, topic: "a" }, "data"],
      [{ op: "sub", rid: 16, id: 1 }, "topics"],
      [{ op: "sub", rid: 17, id: 1, topics: [] }, "topics"],
      [{ op: "sub", rid: 18, id: 1, topics: ["a", 2] }, "topics"],
      [{ op: "sub", rid: 19, id: 1, topics: ["a"], from: 0 }, "from"],
      [{ op: "sub", rid: 20, id: 1, topics: ["a"], from: "yesterday" }, "from"],
      [{ op: "recv", rid: 21, id: 1, max: "all", wait: 0 }, "max"],
      [{ op: "destroy", rid: 22 }, "id"],
      [{ op: "topics", rid: 23, junk: true }, "junk"],
      [{ op: "create", rid: 24, __proto_: 1 }, "__proto_"],
      [{ op: "create", rid: "25" }, "rid"],
      [{ rid: 26 }, "op"],
      [{ op: 27, rid: 27 }, "op"],
    ];
    for (const [frame, field] of cases) {
      p.send(frame);
      const r = await p.next();
      expect({ sent: frame, got: r }).toMatchObject({ sent: frame, got: { op: "error", code: "BAD_REQUEST", message: expect.stringContaining(`"${field}"`) } });
      // The reply carries the request id whenever the request had a usable one.
      if (typeof frame.rid === "number") expect(r!.rid).toBe(frame.rid);
    }
    expect(await p.request(harmless())).toMatchObject(harmlessAnswer());
    expect(p.closed).toBe(false);
    await expectHealthy();
  });

  test("a first frame that is not hello is BAD_REQUEST, then the connection is closed", async () => {
    const p = await connect();
    p.send({ op: "topics", rid: 1 });
    await expectErrorThenClose(p, "BAD_REQUEST", /expected hello/);
    const q = await connect();
    q.send({ op: "hello", rid: 1, version: 2, broker: "future" });
    await expectErrorThenClose(q, "VERSION_MISMATCH");
    await expectHealthy();
  });

  test("a valid hello dribbled one byte at a time is answered", async () => {
    const p = await connect();
    const bytes = frameOf(helloFor(kind, 1));
    for (const b of bytes) {
      p.write(new Uint8Array([b]));
      await Bun.sleep(3);
    }
    expect(await p.reply(1)).toMatchObject({ op: "ok", version: 1 });
    expect(await p.request(harmless())).toMatchObject(harmlessAnswer());
    await expectHealthy();
  });

  test("a silent connection is closed once --hello-timeout-ms has passed", async () => {
    const silent = await connect();
    const partialHello = await connect();
    partialHello.write(frameOf(helloFor(kind, 1)).subarray(0, 6)); // started, never finished
    expect(await silent.waitClosed(HELLO_TIMEOUT_MS + 4000)).toBe(true);
    expect(await partialHello.waitClosed(CLOSE_WITHIN_MS)).toBe(true);
    expect(silent.all).toEqual([]);
    await expectHealthy();
  });

  test("a half-sent frame after hello is closed once --frame-timeout-ms has passed", async () => {
    const p = await connectWithHello();
    const frame = frameOf(harmless());
    p.write(frame.subarray(0, frame.length - 3));
    expect(await p.waitClosed(CLOSE_WITHIN_MS)).toBe(true);
    expect(p.inbox).toEqual([]); // the half frame was never answered
    await expectHealthy();
  });
});

describe("local broker: ack with count", () => {
  test("a count above the delivery's size, or not a non-negative integer, is BAD_REQUEST naming the field; the delivery stays pending and a valid count then works", async () => {
    const p = await helloPeer({ unix: local.socket }, "local");
    try {
      const id = ((await p.request({ op: "create", rid: 2 })) as { id: number }).id;
      expect(await p.request({ op: "sub", rid: 3, id, topics: ["sec.ackcount"] })).toMatchObject({ op: "ok" });
      expect(await p.request({ op: "pubs", rid: 4, id, topic: "sec.ackcount", payloads: [1, 2, 3].map((n) => new Uint8Array([n])) })).toMatchObject({ op: "ok", seqs: [1, 2, 3] });
      // All three buffered before the recv, so that one delivery holds them.
      let pending = 0;
      for (let i = 0, rid = 100; i < 200 && pending < 3; i++) {
        pending = ((await p.request({ op: "stats", rid: ++rid })).local as { pending: number }).pending;
        if (pending < 3) await Bun.sleep(10);
      }
      expect(pending).toBe(3);
      const got = await p.request({ op: "recv", rid: 5, id, max: 10, wait: 0 });
      expect((got.messages as Array<{ seq: number }>).map((m) => m.seq)).toEqual([1, 2, 3]);
      const tag = got.tag as number;
      const cases: Array<[unknown, RegExp]> = [
        [4, /"count" is 4, but delivery \d+ holds 3 messages/],
        [-1, /"count" must be a non-negative integer/],
        [1.5, /"count" must be a non-negative integer/],
        ["1", /"count" must be a non-negative integer/],
        [2 ** 53, /"count" must be a non-negative integer/],
      ];
      let rid = 10;
      for (const [count, message] of cases) {
        const r = await p.request({ op: "ack", rid: ++rid, id, tag, count });
        expect({ count, r }).toMatchObject({ count, r: { op: "error", rid, code: "BAD_REQUEST", message: expect.stringMatching(message) } });
      }
      // Still pending: one seen, two put back for the next recv, in order.
      expect(await p.request({ op: "ack", rid: 20, id, tag, count: 1 })).toMatchObject({ op: "ok" });
      const rest = await p.request({ op: "recv", rid: 21, id, max: 10, wait: 0 });
      expect((rest.messages as Array<{ seq: number }>).map((m) => m.seq)).toEqual([2, 3]);
      expect(await p.request({ op: "ack", rid: 22, id, tag: rest.tag, count: 0 })).toMatchObject({ op: "ok" });
      expect((((await p.request({ op: "recv", rid: 23, id, max: 10, wait: 0 })).messages) as Array<{ seq: number }>).map((m) => m.seq)).toEqual([2, 3]);
      expect(p.closed).toBe(false);
    } finally {
      p.end();
    }
  });
});
