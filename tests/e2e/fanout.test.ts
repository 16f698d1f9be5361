/**
 * Fan-out once per local broker, through the binary: the server sends a message of a topic
 * once to each local broker with subscribers (`msgs` with `ids`), and the broker serves its
 * ids from that copy; every id still gets every message once, in order, with its own cursor.
 * The server's `fanout_shared` counts the deliveries that rode in a frame sent for another id.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "../../lib/client/index.ts";
import { MIN_WINDOW_MESSAGES } from "../../lib/server/window.ts";
import { MSGS_IDS_CAP } from "../../lib/wire/ops.ts";
import { helloPeer, type WireMap } from "../security/kit.ts";
import { createOn, jsonLines, mq, startLocal, startServer, startUp, teardown, tmpDir } from "./harness.ts";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const lines = (from: number, to: number) => range(from, to).map((n) => `m${n}\n`).join("");

async function serverStats(socket: string): Promise<{ delivered: number; fanout_shared: number }> {
  const r = await mq(socket, ["stats", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout).server;
}

/** `mq recv ID --follow --count N --json` → [seq, data] of each message. */
async function recvAll(socket: string, id: number, count: number): Promise<Array<[number, string]>> {
  const r = await mq(socket, ["recv", String(id), "--follow", "--count", String(count), "--json"], { timeoutMs: 60_000 });
  expect(r.code).toBe(0);
  return jsonLines(r.stdout).map((m) => [m.seq as number, m.data as string]);
}

const expected = (from: number, to: number) => range(from, to).map((n): [number, string] => [n, `m${n}`]);

async function subscribeAll(socket: string, ids: number[], topic: string): Promise<void> {
  for (const id of ids) expect((await mq(socket, ["sub", String(id), topic])).code).toBe(0);
}

/**
 * `count` new ids of the local broker at `socket`, subscribed to `topic`, and `n` messages
 * published to it, nothing acknowledged; waits (100 polls of 50 ms at most) until the server
 * delivered them to every id. Returns the ids and the server's `delivered` and `fanout_shared`
 * for these messages.
 */
async function publishToNewIds(socket: string, count: number, topic: string, n: number): Promise<{ ids: number[]; delivered: number; shared: number }> {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(await createOn(socket));
  await subscribeAll(socket, ids, topic);
  const before = await serverStats(socket);
  expect((await mq(socket, ["pub", String(ids[0]), topic, "--lines"], { stdin: lines(1, n) })).code).toBe(0);
  for (let i = 0; i < 100 && (await serverStats(socket)).delivered - before.delivered < count * n; i++) await Bun.sleep(50);
  const after = await serverStats(socket);
  return { ids, delivered: after.delivered - before.delivered, shared: after.fanout_shared - before.fanout_shared };
}

describe("fan-out once per local broker", () => {
  test("ids of one local broker get one copy per message from the server; each receives all, in order, once", async () => {
    const server = await startServer();
    const local = await startLocal(server.address);
    try {
      // Nothing acknowledged yet, and 200 messages fit every window: each read goes to all 6 ids in one frame.
      const { ids, delivered, shared } = await publishToNewIds(local.socket, 6, "fan", 200);
      expect({ delivered, shared }).toEqual({ delivered: 6 * 200, shared: 5 * 200 });
      const after = await serverStats(local.socket);
      for (const got of await Promise.all(ids.map((id) => recvAll(local.socket, id, 200)))) expect(got).toEqual(expected(1, 200));

      // More than a window, received as it comes: acks drive the pushes, and sharing goes on.
      expect((await mq(local.socket, ["pub", String(ids[0]), "fan", "--lines"], { stdin: lines(201, 1000) })).code).toBe(0);
      for (const got of await Promise.all(ids.map((id) => recvAll(local.socket, id, 800)))) expect(got).toEqual(expected(201, 1000));
      const end = await serverStats(local.socket);
      expect(end.fanout_shared).toBeGreaterThan(after.fanout_shared);
      // Nothing more for anyone: exactly once.
      for (const id of ids) expect((await mq(local.socket, ["recv", String(id), "--wait", "0.3"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test("one id not receiving and one unsubscribing midway do not hold the others back; the slow one gets everything later", async () => {
    const server = await startServer();
    const local = await startLocal(server.address);
    try {
      const [slow, a, b, leaving] = [await createOn(local.socket), await createOn(local.socket), await createOn(local.socket), await createOn(local.socket)];
      await subscribeAll(local.socket, [slow!, a!, b!, leaving!], "fan.slow");
      expect((await mq(local.socket, ["pub", String(a), "fan.slow", "--lines"], { stdin: lines(1, 900) })).code).toBe(0);
      const left = recvAll(local.socket, leaving!, 100).then(async (got) => {
        expect((await mq(local.socket, ["unsub", String(leaving), "fan.slow"])).code).toBe(0);
        return got;
      });
      const [gotA, gotB, gotLeaving] = await Promise.all([recvAll(local.socket, a!, 900), recvAll(local.socket, b!, 900), left]);
      expect(gotA).toEqual(expected(1, 900));
      expect(gotB).toEqual(expected(1, 900));
      expect(gotLeaving).toEqual(expected(1, 100));
      const topics = JSON.parse((await mq(local.socket, ["topics", "--json"])).stdout.split("\n")[0]!);
      expect(topics).toMatchObject({ topic: "fan.slow", subscribers: 3 });
      // The slow id had one window buffered; the rest comes as it acknowledges.
      expect(await recvAll(local.socket, slow!, 900)).toEqual(expected(1, 900));
      expect((await mq(local.socket, ["recv", String(slow), "--wait", "0.3"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test("ids that read apart get the same messages in frames of their own: the local broker holds them once (`reused`); each id receives all, in order, once", async () => {
    const server = await startServer();
    const local = await startLocal(server.address);
    try {
      // Past a window (a subscription's, 1,024 at first) of what the three were pushed together.
      const n = 2 * MIN_WINDOW_MESSAGES + 200;
      const [ahead, behind, last] = [await createOn(local.socket), await createOn(local.socket), await createOn(local.socket)];
      await subscribeAll(local.socket, [ahead!, behind!, last!], "fan.apart");
      expect((await mq(local.socket, ["pub", String(ahead), "fan.apart", "--lines"], { stdin: lines(1, n) })).code).toBe(0);
      // One id receives everything first: past the first window, the server reads for it alone.
      expect(await recvAll(local.socket, ahead!, n)).toEqual(expected(1, n));
      const before = (JSON.parse((await mq(local.socket, ["stats", "--json"])).stdout).local as { reused: number }).reused;
      // Then the others, one after the other: each in frames of its own, of messages the first one was pushed.
      expect(await recvAll(local.socket, behind!, n)).toEqual(expected(1, n));
      expect(await recvAll(local.socket, last!, n)).toEqual(expected(1, n));
      const after = (JSON.parse((await mq(local.socket, ["stats", "--json"])).stdout).local as { reused: number; received: number }).reused;
      expect(after).toBeGreaterThan(before);
      for (const id of [ahead, behind, last]) expect((await mq(local.socket, ["recv", String(id), "--wait", "0.3"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test("local broker killed with shared deliveries buffered: restarted, each id resumes from its own cursor", async () => {
    const server = await startServer();
    const data = tmpDir("mq-local-");
    let local = await startLocal(server.address, { dataDir: data });
    try {
      const ids = [await createOn(local.socket), await createOn(local.socket), await createOn(local.socket)];
      await subscribeAll(local.socket, ids, "fan.restart");
      expect((await mq(local.socket, ["pub", String(ids[0]), "fan.restart", "--lines"], { stdin: lines(1, 100) })).code).toBe(0);
      // Each id receives (and acknowledges) a different part.
      for (const [i, id] of ids.entries()) expect(await recvAll(local.socket, id, 10 * (i + 1))).toEqual(expected(1, 10 * (i + 1)));
      expect((await serverStats(local.socket)).fanout_shared).toBeGreaterThan(0);
      await local.daemon.kill9();
      local = await startLocal(server.address, { dataDir: data, socket: local.socket });
      for (const [i, id] of ids.entries()) {
        expect(await recvAll(local.socket, id, 100 - 10 * (i + 1))).toEqual(expected(10 * (i + 1) + 1, 100));
        expect((await mq(local.socket, ["recv", String(id), "--wait", "0.3"])).code).toBe(3);
      }
    } finally {
      await teardown([local.daemon, server.daemon], [data, server.dataDir]);
    }
  });

  test("two local brokers: each gets its own copy, shared among its ids", async () => {
    const server = await startServer();
    const one = await startLocal(server.address);
    const two = await startLocal(server.address);
    try {
      const onOne = [await createOn(one.socket), await createOn(one.socket)];
      const onTwo = [await createOn(two.socket), await createOn(two.socket)];
      await subscribeAll(one.socket, onOne, "fan.two");
      await subscribeAll(two.socket, onTwo, "fan.two");
      expect((await mq(one.socket, ["pub", String(onOne[0]), "fan.two", "--lines"], { stdin: lines(1, 100) })).code).toBe(0);
      for (let i = 0; i < 100 && (await serverStats(one.socket)).delivered < 4 * 100; i++) await Bun.sleep(50);
      // One copy per broker: of the 4 deliveries of each message, 2 rode along.
      expect(await serverStats(one.socket)).toMatchObject({ delivered: 4 * 100, fanout_shared: 2 * 100 });
      const got = await Promise.all([...onOne.map((id) => recvAll(one.socket, id, 100)), ...onTwo.map((id) => recvAll(two.socket, id, 100))]);
      for (const g of got) expect(g).toEqual(expected(1, 100));
    } finally {
      await teardown([one.daemon, two.daemon, server.daemon], [one.dataDir, two.dataDir, server.dataDir]);
    }
  });

  test("the server sends ids only to a local broker that announced msgs.ids; to one that did not (an older one), one frame per id", async () => {
    const server = await startServer();
    try {
      for (const announces of [false, true]) {
        const peer = await helloPeer({ hostname: "127.0.0.1", port: server.port }, "server", announces ? { caps: [MSGS_IDS_CAP] } : {});
        try {
          const a = (await peer.request({ op: "create", rid: 2 })).id as number;
          const b = (await peer.request({ op: "create", rid: 3 })).id as number;
          const topic = `fan.raw.${announces}`;
          for (const [rid, id] of [[4, a], [5, b]] as const) expect(await peer.request({ op: "sub", rid, id, topics: [topic] })).toMatchObject({ op: "ok" });
          expect(await peer.request({ op: "pubs", rid: 6, id: a, topic, payloads: [new Uint8Array([1]), new Uint8Array([2])] })).toMatchObject({ op: "ok" });
          const pushes: WireMap[] = [];
          const count = () => pushes.reduce((n, f) => n + (f.payloads as unknown[]).length * (1 + ((f.ids as unknown[] | undefined)?.length ?? 0)), 0);
          // Bounded: each frame is awaited at most 5 s; 4 deliveries in all.
          for (let i = 0; i < 10 && count() < 4; i++) {
            const f = await peer.next();
            if (f?.op === "msgs") pushes.push(f);
          }
          const frames = pushes.map((f) => [f.id, f.ids, f.seq, (f.payloads as unknown[]).length]);
          expect(frames).toEqual(announces ? [[a, [b], 1, 2]] : [[a, undefined, 1, 2], [b, undefined, 1, 2]]);
        } finally {
          peer.end();
        }
      }
    } finally {
      await teardown([server.daemon], [server.dataDir]);
    }
  });

  test("1,000 messages published at once reach 4 ids in frames shared by all before any ack, and one recv of 1,000 takes them: a subscription's window holds 1,024", async () => {
    const server = await startServer();
    const local = await startLocal(server.address);
    try {
      // With the windows of before (256 messages) it stopped at 4 × 256.
      const { ids, delivered, shared } = await publishToNewIds(local.socket, 4, "fan.window", 1000);
      expect({ delivered, shared }).toEqual({ delivered: 4 * 1000, shared: 3 * 1000 });
      const client = await connect({ socket: local.socket });
      try {
        for (const id of ids) {
          const batch = await client.recv(id, { max: 1000, waitMs: 5000 });
          expect(batch.messages.map((m) => m.seq)).toEqual(range(1, 1000));
          await batch.ack();
        }
      } finally {
        client.close();
      }
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test.each(["mq server + mq local (TCP)", "mq up (in memory)"])("8 ids reading apart, through %s: each receives every message once, in order", async (how) => {
    const server = how.startsWith("mq server") ? await startServer() : null;
    const local = server ? await startLocal(server.address) : await startUp();
    const N = 4000;
    try {
      const ids: number[] = [];
      for (let k = 0; k < 8; k++) ids.push(await createOn(local.socket));
      await subscribeAll(local.socket, ids, "fan.8");
      const publisher = await connect({ socket: local.socket });
      // Subscriber k starts receiving once k parts are published, and takes batches of its own
      // size, acknowledging each: the ids read at seqs and paces of their own.
      const published = Array.from({ length: 9 }, () => Promise.withResolvers<void>());
      const receiving = ids.map(async (id, k) => {
        const client = await connect({ socket: local.socket });
        try {
          await published[k]!.promise;
          const got: string[] = [];
          // Bounded: N batches with messages, and 300 empty ones (200 ms each) at most.
          for (let round = 0; round < N + 300 && got.length < N; round++) {
            const batch = await client.recv(id, { max: 40 + 130 * k, waitMs: 200 });
            for (const m of batch.messages) got.push(`${m.seq}:${new TextDecoder().decode(m.data)}`);
            if (batch.messages.length > 0) await batch.ack();
          }
          return got;
        } finally {
          client.close();
        }
      });
      published[0]!.resolve();
      for (let part = 0; part < 8; part++) {
        await Promise.all(Array.from({ length: N / 8 }, (_, i) => publisher.publish(ids[0]!, "fan.8", `m${part * (N / 8) + i + 1}`)));
        published[part + 1]!.resolve();
      }
      publisher.close();
      const want = range(1, N).map((n) => `${n}:m${n}`);
      for (const got of await Promise.all(receiving)) expect(got).toEqual(want);
      // Pushed once per id (nothing twice), whether in frames of its own or shared.
      expect((await serverStats(local.socket)).delivered).toBe(8 * N);
      for (const id of ids) expect((await mq(local.socket, ["recv", String(id), "--wait", "0.2"])).code).toBe(3);
    } finally {
      await teardown(server ? [local.daemon, server.daemon] : [local.daemon], server ? [local.dataDir, server.dataDir] : [local.dataDir]);
    }
  });
});
