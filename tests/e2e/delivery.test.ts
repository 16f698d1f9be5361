/** Delivery through the three tiers: fan-out, order, several local brokers and clients. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { Connection } from "../../lib/wire/connection.ts";
import { PROTOCOL_VERSION } from "../../lib/wire/messages.ts";
import { mq, startCluster, startLocal, jsonLines } from "./harness.ts";

/** A hand-made local-broker connection to the server, speaking the protocol directly. */
async function rawServerConnection(port: number, broker: string): Promise<Connection> {
  const socket = await Bun.connect<Connection>({
    hostname: "127.0.0.1",
    port,
    socket: {
      open: (s) => {
        s.data = new Connection(s, { frame: () => undefined }, { maxFrameBytes: 1 << 20, label: "raw" });
      },
      data: (s, d) => s.data.onData(d),
      drain: (s) => s.data.onDrain(),
      close: (s) => s.data.onClose(),
    },
  });
  await socket.data.request({ op: "hello", version: PROTOCOL_VERSION, broker, secret: `secret of ${broker}` }, 5000);
  return socket.data;
}

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

describe("delivery", () => {
  test("fans out every message to every subscribed id, and not to the unsubscribed one", async () => {
    const subs = [await cluster.create(), await cluster.create(), await cluster.create()];
    const outsider = await cluster.create();
    for (const id of subs) await cluster.run(["sub", String(id), "fan"]);
    await cluster.run(["sub", String(outsider), "fan"]);
    await cluster.run(["unsub", String(outsider), "fan"]);
    const p = await cluster.run(["pub", String(subs[0]), "fan", "--lines", "--json"], { stdin: "m1\nm2\n" });
    expect(jsonLines(p.stdout).map((r) => r.subscribers)).toEqual([3, 3]);
    for (const id of subs) expect((await cluster.run(["recv", String(id), "--count", "10"])).stdout).toBe("m1\nm2\n");
    expect((await cluster.run(["recv", String(outsider)])).code).toBe(3);
  });

  test("1,000 messages arrive in seq order, without gaps", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "order"]);
    const input = Array.from({ length: 1000 }, (_, i) => `msg-${i + 1}`).join("\n") + "\n";
    const p = await cluster.run(["pub", String(id), "order", "--lines"], { stdin: input });
    expect(p.code).toBe(0);
    const r = await cluster.run(["recv", String(id), "--follow", "--count", "1000", "--json"], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    const got = jsonLines(r.stdout);
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(got.map((m) => m.data)).toEqual(input.trim().split("\n"));
  });

  test("messages of several topics keep per-topic order", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "mix.a", "mix.b"]);
    for (let i = 1; i <= 5; i++) {
      await cluster.run(["pub", String(id), "mix.a", `a${i}`]);
      await cluster.run(["pub", String(id), "mix.b", `b${i}`]);
    }
    const got = jsonLines((await cluster.run(["recv", String(id), "--count", "10", "--json"])).stdout);
    expect(got.filter((m) => m.topic === "mix.a").map((m) => m.data)).toEqual(["a1", "a2", "a3", "a4", "a5"]);
    expect(got.filter((m) => m.topic === "mix.b").map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  test("two local brokers on one server: a message crosses from one host's id to the other's", async () => {
    await using second = await (async () => {
      const l = await startLocal(cluster.server.address);
      return { ...l, async [Symbol.asyncDispose]() { await l.daemon[Symbol.asyncDispose](); } };
    })();
    const here = await cluster.create();
    const there = Number((await mq(second.socket, ["create"])).stdout);
    // Local ids are per host: both brokers may hand out the same small number.
    expect(there).toBeGreaterThan(0);
    expect((await mq(second.socket, ["sub", String(there), "cross"])).code).toBe(0);
    await cluster.run(["sub", String(here), "cross"]);
    const p = await cluster.run(["pub", String(here), "cross", "over", "--json"]);
    expect(JSON.parse(p.stdout).subscribers).toBe(2);
    expect((await mq(second.socket, ["recv", String(there), "--wait", "10"])).stdout).toBe("over\n");
    expect((await cluster.run(["recv", String(here), "--wait", "10"])).stdout).toBe("over\n");
  });

  test("a peer forging another local broker's global id gets UNKNOWN_ID and changes nothing", async () => {
    // The victim's global id: the server numbers ids from 1, and this cluster's broker owns them.
    const victim = await cluster.create();
    await cluster.run(["sub", String(victim), "forged"]);
    const intruder = await rawServerConnection(cluster.server.port, "intruder-broker");
    try {
      for (const gid of [1, 2, victim]) {
        const err = await intruder.request({ op: "pub", id: gid, topic: "forged", data: new Uint8Array([1]) }, 5000).catch((e) => e);
        expect(err).toMatchObject({ code: "UNKNOWN_ID" });
        expect(await intruder.request({ op: "destroy", id: gid }, 5000).catch((e) => e.code)).toBe("UNKNOWN_ID");
        expect(await intruder.request({ op: "unsub", id: gid, topics: ["forged"] }, 5000).catch((e) => e.code)).toBe("UNKNOWN_ID");
      }
    } finally {
      intruder.close();
    }
    const t = jsonLines((await cluster.run(["topics", "--json"])).stdout).find((r) => r.topic === "forged");
    expect(t).toEqual({ topic: "forged", subscribers: 1, messages: 0 });
  });

  test("several clients on one local broker: concurrent publishers, one subscriber gets all", async () => {
    const sink = await cluster.create();
    await cluster.run(["sub", String(sink), "many"]);
    const publishers = await Promise.all([1, 2, 3, 4].map(() => MqClient.connect({ socket: cluster.local.socket })));
    try {
      const ids = await Promise.all(publishers.map((c) => c.create()));
      await Promise.all(publishers.map(async (c, p) => {
        for (let i = 0; i < 50; i++) await c.publish(ids[p]!, "many", `p${p}-${i}`);
      }));
      const r = await cluster.run(["recv", String(sink), "--follow", "--count", "200", "--json"]);
      const got = jsonLines(r.stdout);
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      // Each publisher's own messages keep their order.
      for (let p = 0; p < 4; p++) {
        expect(got.map((m) => String(m.data)).filter((d) => d.startsWith(`p${p}-`))).toEqual(Array.from({ length: 50 }, (_, i) => `p${p}-${i}`));
      }
    } finally {
      for (const c of publishers) c.close();
    }
  });

  test("two clients receiving for one id share the stream without duplicates", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "shared"]);
    await cluster.run(["pub", String(id), "shared", "--lines"], { stdin: Array.from({ length: 40 }, (_, i) => `s${i}`).join("\n") });
    const [a, b] = await Promise.all([
      cluster.run(["recv", String(id), "--count", "20", "--follow", "--json"]),
      cluster.run(["recv", String(id), "--count", "20", "--follow", "--json"]),
    ]);
    const seqs = [...jsonLines(a.stdout), ...jsonLines(b.stdout)].map((m) => m.seq as number).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  test("a message taken by a client that dies before acknowledging is delivered again", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "unacked"]);
    await cluster.run(["pub", String(id), "unacked", "keep-me"]);
    const c = await MqClient.connect({ socket: cluster.local.socket });
    const got = await c.recv(id, { waitMs: 5000 });
    expect(got.messages.map((m) => new TextDecoder().decode(m.data))).toEqual(["keep-me"]);
    c.close(); // no ack
    const again = await cluster.run(["recv", String(id), "--wait", "10"]);
    expect(again.stdout).toBe("keep-me\n");
    expect((await cluster.run(["recv", String(id)])).code).toBe(3);
  });

  test("the TypeScript client's message stream yields in order", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const id = await c.create();
    await c.subscribe(id, ["stream"]);
    for (let i = 1; i <= 5; i++) await c.publish(id, "stream", `n${i}`);
    const seen: number[] = [];
    for await (const m of c.messages(id)) {
      seen.push(m.seq);
      if (seen.length === 5) break;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    await c.destroy(id);
  });
});

describe("races on one id", () => {
  test("batches a dying client took are put back in order", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "race.order"]);
    await cluster.run(["pub", String(id), "race.order", "--lines"], { stdin: "1\n2\n3\n4\n" });
    const a = await MqClient.connect({ socket: cluster.local.socket });
    expect((await a.recv(id, { max: 2, waitMs: 5000 })).messages.map((m) => m.seq)).toEqual([1, 2]);
    expect((await a.recv(id, { max: 2, waitMs: 5000 })).messages.map((m) => m.seq)).toEqual([3, 4]);
    a.close(); // neither batch acknowledged
    const r = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "4", "--json"])).stdout);
    expect(r.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
  });

  test("a batch a client took before the id unsubscribed and subscribed again is not put back into the new subscription (no duplicates)", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "race.resub"]);
    await cluster.run(["pub", String(id), "race.resub", "--lines"], { stdin: `${Array.from({ length: 10 }, (_, i) => i + 1).join("\n")}\n` });
    const holder = await MqClient.connect({ socket: cluster.local.socket });
    expect((await holder.recv(id, { max: 5, waitMs: 5000 })).messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect((await cluster.run(["unsub", String(id), "race.resub"])).code).toBe(0);
    expect((await cluster.run(["sub", String(id), "race.resub", "--from", "1"])).code).toBe(0);
    // The new subscription's first message is here (its track too) before the holder goes.
    await using reader = await MqClient.connect({ socket: cluster.local.socket });
    const first = await reader.recv(id, { max: 1, waitMs: 5000 });
    expect(first.messages.map((m) => m.seq)).toEqual([1]);
    await first.nak();
    holder.close(); // its batch, of the ended subscription, is not given back
    const got = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "10", "--json"])).stdout);
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect((await cluster.run(["recv", String(id), "--wait", "0.5"])).code).toBe(3);
  });

  test("two concurrent subscribes of one id to one topic give one subscription that delivers everything from its start", async () => {
    const id = await cluster.create();
    await cluster.run(["pub", String(id), "race.sub", "--lines"], { stdin: `${Array.from({ length: 600 }, (_, i) => i + 1).join("\n")}\n` });
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      const [first, second] = await Promise.all([c.subscribe(id, ["race.sub"], { from: "earliest" }), c.subscribe(id, ["race.sub"], { from: "latest" })]);
      expect(second[0]!.from).toBe(first[0]!.from);
      const want = 600 - first[0]!.from! + 1;
      const got = want > 0 ? jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", String(want), "--json"], { timeoutMs: 30_000 })).stdout) : [];
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: want }, (_, i) => first[0]!.from! + i));
    } finally {
      c.close();
    }
  });

  test("destroy racing a subscribe leaves no subscription behind", async () => {
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      const id = await c.create();
      await c.subscribe(id, ["race.d0"]);
      const topics = Array.from({ length: 20 }, (_, i) => `race.d${i + 1}`);
      await Promise.allSettled([...topics.map((t) => c.subscribe(id, [t])), c.destroy(id)]);
      const rows = jsonLines((await cluster.run(["topics", "--json"])).stdout).filter((t) => String(t.topic).startsWith("race.d"));
      expect(rows.filter((t) => t.subscribers !== 0)).toEqual([]);
    } finally {
      c.close();
    }
  });
});

describe("publish batching", () => {
  test("publishes made together travel as few requests, keep call order and get consecutive seqs", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const id = await c.create();
    await c.subscribe(id, ["batched"]);
    const before = JSON.parse((await cluster.run(["stats", "--json"])).stdout).local.forwarded as number;
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => c.publish(id, "batched", `b${i}`)));
    const after = JSON.parse((await cluster.run(["stats", "--json"])).stdout).local.forwarded as number;
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(results.every((r) => r.subscribers === 1 && r.created === false)).toBe(true);
    // 500 publishes, one forwarded request (the stats request itself is one more).
    expect(after - before).toBeLessThanOrEqual(3);
    const got = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "500", "--json"])).stdout);
    expect(got.map((m) => m.data)).toEqual(Array.from({ length: 500 }, (_, i) => `b${i}`));
  });

  test("a batch that fails fails every publish in it, and the next one works", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const id = await c.create();
    const bad = await Promise.allSettled([c.publish(id, "bad topic", "x"), c.publish(id, "bad topic", "y")]);
    expect(bad.map((r) => r.status === "rejected" && (r.reason as { code: string }).code)).toEqual(["INVALID_TOPIC", "INVALID_TOPIC"]);
    const [first] = await Promise.all([c.publish(id, "batch.fresh", "1"), c.publish(id, "batch.fresh", "2")]);
    expect(first).toMatchObject({ seq: 1, created: true });
  });
});

describe("publish batching edge cases", () => {
  test("a buffer changed right after publish() is stored as it was at the call", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const id = await c.create();
    await c.subscribe(id, ["reuse"]);
    const buf = new TextEncoder().encode("A");
    const first = c.publish(id, "reuse", buf);
    buf[0] = "B".charCodeAt(0);
    const second = c.publish(id, "reuse", buf);
    await Promise.all([first, second]);
    expect((await cluster.run(["recv", String(id), "--count", "2"])).stdout).toBe("A\nB\n");
  });

  test("requests keep the order they were made in: a publish before a destroy is stored", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const witness = await c.create();
    await c.subscribe(witness, ["order.kept"]);
    const id = await c.create();
    const [pub, destroyed] = await Promise.allSettled([c.publish(id, "order.kept", "last words"), c.destroy(id)]);
    expect(pub).toMatchObject({ status: "fulfilled", value: { topic: "order.kept", seq: 1, subscribers: 1 } });
    expect(destroyed.status).toBe("fulfilled");
    // Stored, not only answered: the witness receives it.
    expect((await cluster.run(["recv", String(witness), "--wait", "10", "--json"])).stdout).toContain('"data":"last words"');
  });

  test("a client waiting on an id gets a dying client's batches back in order", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "putback.wait"]);
    await cluster.run(["pub", String(id), "putback.wait", "--lines"], { stdin: "1\n2\n" });
    const dying = await MqClient.connect({ socket: cluster.local.socket });
    expect((await dying.recv(id, { max: 1, waitMs: 5000 })).messages.map((m) => m.seq)).toEqual([1]);
    expect((await dying.recv(id, { max: 1, waitMs: 5000 })).messages.map((m) => m.seq)).toEqual([2]);
    await using waiting = await MqClient.connect({ socket: cluster.local.socket });
    const pending = waiting.recv(id, { max: 10, waitMs: 10_000 });
    await Bun.sleep(100); // let the waiting recv reach the local broker
    dying.close();
    const got = await pending;
    expect(got.messages.map((m) => m.seq)).toEqual([1, 2]);
    await got.ack();
  });
});
