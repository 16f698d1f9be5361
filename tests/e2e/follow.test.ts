/**
 * Push delivery on the client hop (`follow` / `credit` / `unfollow`; docs/protocol.md, "Push
 * delivery"): `mq recv --follow` and the library's `messages()` are pushed their messages
 * within the credits they grant, acknowledge exactly what they consumed, and give back the
 * rest when they stop or die. Real `mq server` + `mq local` from the compiled binary.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { MqClient } from "../../lib/client/client.ts";
import { Code, MqError } from "../../lib/errors.ts";
import { helloPeer, type RawPeer, type WireMap } from "../security/kit.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, type LocalHandle } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;

beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `m${from + i}`).join("\n");
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function localStats(socket = cluster.local.socket) {
  const c = await MqClient.connect({ socket });
  try {
    return (await c.stats()).local;
  } finally {
    c.close();
  }
}

/** Waits (bounded) until `check` holds, polling the local broker's stats. */
async function until(what: string, check: (local: Awaited<ReturnType<typeof localStats>>) => boolean, socket?: string): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 300; i++) {
    const local = await localStats(socket);
    if (check(local)) return;
    last = local;
    await Bun.sleep(20);
  }
  throw new Error(`${what}: not within 300 polls; last stats ${JSON.stringify(last)}`);
}

/** Takes the `delivery` frames the peer got so far; their messages' seqs. */
function pushedSeqs(peer: RawPeer): number[] {
  const seqs: number[] = [];
  for (let i = peer.inbox.length - 1; i >= 0; i--) {
    const f = peer.inbox[i]!;
    if (f.op !== "delivery") continue;
    peer.inbox.splice(i, 1);
    seqs.unshift(...(f.messages as WireMap[]).map((m) => m.seq as number));
  }
  return seqs;
}

describe("mq recv --follow on push delivery", () => {
  test("gets what was published before and after it started, in order, exactly once, across many batches", async () => {
    const id = await cluster.create();
    expect((await cluster.run(["sub", String(id), "f.order"])).code).toBe(0);
    expect((await cluster.run(["pub", String(id), "f.order", "--lines"], { stdin: lines(1, 1500) })).code).toBe(0);
    const pushedBefore = (await localStats()).pushed;
    const reader = mq(cluster.local.socket, ["recv", String(id), "--follow", "--count", "3000", "--json"], { timeoutMs: 60_000 });
    expect((await cluster.run(["pub", String(id), "f.order", "--lines"], { stdin: lines(1501, 3000) })).code).toBe(0);
    const r = await reader;
    expect(r.code).toBe(0);
    const got = jsonLines(r.stdout);
    expect(got.map((m) => m.seq)).toEqual(range(1, 3000));
    expect(got.map((m) => m.data)).toEqual(range(1, 3000).map((n) => `m${n}`));
    // Pushed, not asked for batch by batch; and all of it acknowledged: nothing comes again.
    expect((await localStats()).pushed - pushedBefore).toBeGreaterThanOrEqual(3000);
    expect((await cluster.run(["recv", String(id), "--wait", "1"])).code).toBe(3);
  });

  test("--count N takes exactly N: what was pushed beyond goes back for the next reader", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.count"]);
    await cluster.run(["pub", String(id), "f.count", "--lines"], { stdin: lines(1, 1200) });
    // 1000 credits: more than asked for is pushed and given back by the unfollow.
    const first = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "1100", "--json"], { timeoutMs: 30_000 })).stdout);
    expect(first.map((m) => m.seq)).toEqual(range(1, 1100));
    const rest = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "100", "--json"])).stdout);
    expect(rest.map((m) => m.seq)).toEqual(range(1101, 1200));
  });

  test("a follower killed (SIGKILL) mid-stream loses nothing: the next reader gets exactly what it had not acknowledged", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.kill"]);
    await cluster.run(["pub", String(id), "f.kill", "--lines"], { stdin: lines(1, 100) });
    const proc = Bun.spawn([process.execPath, path.join(import.meta.dir, "follow-kill-fixture.ts"), String(id), "20"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, MQ_SOCKET: cluster.local.socket },
    });
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      for (let i = 0; i < 100 && !out.includes("\n"); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      // 20 acknowledged, 5 more taken and not acknowledged, up to 10 pushed (its credits).
      expect(out.trim()).toBe(`ready ${range(1, 25).join(",")}`);
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    const again = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "80", "--json"])).stdout);
    expect(again.map((m) => m.seq)).toEqual(range(21, 100));
    expect((await cluster.run(["recv", String(id), "--wait", "1"])).code).toBe(3);
  });
});

describe("the library's messages() on push delivery", () => {
  test("credits bound what is pushed ahead: a loop that stops reading leaves the rest in the local broker's buffer", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.credits"]);
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      const before = await localStats();
      const loop = c.messages(id, { credits: 5 });
      const first = loop.next();
      await cluster.run(["pub", String(id), "f.credits", "--lines"], { stdin: lines(1, 50) });
      expect((await first).value?.seq).toBe(1);
      // The loop holds message 1 and does not ask for more: 5 pushed, 45 wait in the buffer.
      await until("50 received, 45 of them not pushed", (l) => l.received - before.received === 50 && l.pending - before.pending === 45);
      const seqs = [1];
      for await (const m of { [Symbol.asyncIterator]: () => loop }) {
        seqs.push(m.seq);
        if (seqs.length === 50) break;
      }
      expect(seqs).toEqual(range(1, 50));
    } finally {
      c.close();
    }
    expect((await cluster.run(["recv", String(id), "--wait", "1"])).code).toBe(3);
  });

  test("a loop left early acknowledges what it saw; the next loop on the connection gets the rest, in order", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.break"]);
    await cluster.run(["pub", String(id), "f.break", "--lines"], { stdin: lines(1, 30) });
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      const seen: number[] = [];
      for await (const m of c.messages(id, { batch: 7 })) {
        seen.push(m.seq);
        if (seen.length === 10) break;
      }
      for await (const m of c.messages(id)) {
        seen.push(m.seq);
        if (seen.length === 30) break;
      }
      expect(seen).toEqual(range(1, 30));
    } finally {
      c.close();
    }
  });

  test("a follow of an id destroyed meanwhile ends with UNKNOWN_ID", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.gone"]);
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      const follow = await c.follow(id);
      const next = follow.next().catch((e: unknown) => e);
      expect((await cluster.run(["destroy", String(id)])).code).toBe(0);
      const err = await next;
      expect(err).toBeInstanceOf(MqError);
      expect((err as MqError).code).toBe(Code.UnknownId);
      expect((err as MqError).message).toContain(`client id ${id} was destroyed`);
      await follow.close();
    } finally {
      c.close();
    }
  });

  test("bad credits are a RangeError naming the value", async () => {
    const id = await cluster.create();
    const c = await MqClient.connect({ socket: cluster.local.socket });
    try {
      for (const credits of [0, 65_537, 1.5, Number.NaN]) {
        expect(c.follow(id, { credits })).rejects.toThrow(`Cannot follow with credits ${credits}: it must be an integer from 1 to 65536`);
      }
      expect(c.follow(id, { bytes: 0 })).rejects.toThrow("Cannot follow with bytes 0");
    } finally {
      c.close();
    }
  });
});

describe("a local broker restart while following", () => {
  test("the loop ends with UNAVAILABLE once what it holds is given; after the restart the unacknowledged messages come again", async () => {
    let local: LocalHandle = await startLocal(cluster.server.address);
    const c = await MqClient.connect({ socket: local.socket });
    try {
      const id = await c.create();
      await c.subscribe(id, ["f.restart"]);
      const published = Array.from({ length: 10 }, (_, i) => c.publish(id, "f.restart", `m${i + 1}`));
      const loop = c.messages(id, { batch: 3 });
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) seen.push((await loop.next()).value!.seq);
      expect(seen).toEqual([1, 2, 3, 4]);
      // Delivered before their fsync: the publishes may still wait for their answers (a slow
      // disk), and one the kill below cut off would be rejected with no one to handle it.
      await Promise.all(published);
      // Answered through the server after the ack of 1-3 went there: the server has it.
      await c.stats();
      await local.daemon.kill9();
      let err: unknown;
      for (let i = 0; i < 10 && err === undefined; i++) await loop.next().then((r) => (r.value ? seen.push(r.value.seq) : (err = "ended quietly")), (e: unknown) => (err = e));
      // The batch in hand (4-6) is given whole, as before push delivery; its ack cannot go out.
      expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
      expect(err).toBeInstanceOf(MqError);
      expect((err as MqError).code).toBe(Code.Unavailable);
      expect((err as MqError).message).toContain("closed");
      local = await startLocal(cluster.server.address, { dataDir: local.dataDir, socket: local.socket });
      const again = jsonLines((await mq(local.socket, ["recv", String(id), "--follow", "--count", "7", "--json"])).stdout);
      expect(again.map((m) => m.seq)).toEqual(range(4, 10));
    } finally {
      c.close();
      await local.daemon[Symbol.asyncDispose]();
    }
  });
});

test("mq recv --follow exits 4 when its local broker goes away, and what it had not written comes to the next reader", async () => {
  let local: LocalHandle = await startLocal(cluster.server.address);
  try {
    const id = await createOn(local.socket);
    await mq(local.socket, ["sub", String(id), "f.cli-restart"]);
    const reader = mq(local.socket, ["recv", String(id), "--follow", "--json"], { timeoutMs: 30_000 });
    await mq(local.socket, ["pub", String(id), "f.cli-restart", "--lines"], { stdin: lines(1, 5) });
    await until("5 pushed", (l) => l.pushed >= 5, local.socket);
    await local.daemon.kill9();
    const r = await reader;
    expect(r.code).toBe(4);
    const written = jsonLines(r.stdout).map((m) => m.seq as number);
    local = await startLocal(cluster.server.address, { dataDir: local.dataDir, socket: local.socket });
    // Until 2 s without a message: those written may or may not have been acknowledged in time.
    const again = jsonLines((await mq(local.socket, ["recv", String(id), "--follow", "--wait", "2", "--json"])).stdout);
    // Every message was written once at least: none lost; and the second reader's run is whole, in order.
    expect(again.map((m) => m.seq)).toEqual(range(5 - again.length + 1, 5));
    expect([...new Set([...written, ...again.map((m) => m.seq as number)])].sort((x, y) => x - y)).toEqual(range(1, 5));
  } finally {
    await local.daemon[Symbol.asyncDispose]();
  }
});

describe("the follow ops at the local broker's edge", () => {
  test("credits bound what is pushed; acks on credit frames are cumulative and exact; unfollow gives back the rest", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "f.raw"]);
    const before = await localStats();
    await cluster.run(["pub", String(id), "f.raw", "--lines"], { stdin: lines(1, 10) });
    await until("10 buffered", (l) => l.received - before.received === 10);
    const peer = await helloPeer({ unix: cluster.local.socket }, "local");
    try {
      expect(await peer.request({ op: "follow", rid: 2, id, credits: 3 })).toEqual({ op: "ok", rid: 2 });
      // A request answered after the pushes the follow made: they are in.
      expect(await peer.request({ op: "credit", rid: 3, id })).toEqual({ op: "ok", rid: 3 });
      expect(pushedSeqs(peer)).toEqual([1, 2, 3]);
      // Ack 2 of the 3, grant 2: two more come (3 unacknowledged at most).
      expect(await peer.request({ op: "credit", rid: 4, id, acked: 2, credits: 2 })).toEqual({ op: "ok", rid: 4 });
      expect(pushedSeqs(peer)).toEqual([4, 5]);
      // Only 3 are unacknowledged: acking 4 is refused, and nothing is acknowledged.
      expect(await peer.request({ op: "credit", rid: 5, id, acked: 4 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: `credit: field "acked" is 4, but the follow of id ${id} has 3 unacknowledged messages` });
      expect(await peer.request({ op: "credit", rid: 6, id, acked: 1, credits: 70_000 })).toMatchObject({ op: "error", code: "BAD_REQUEST" });
      expect((await peer.request({ op: "credit", rid: 7, id, acked: 1 })).op).toBe("ok");
      expect(await peer.request({ op: "unfollow", rid: 8, id })).toEqual({ op: "ok", rid: 8 });
      // After unfollow: nothing more is pushed, and its credits and acks are refused.
      expect(await peer.request({ op: "credit", rid: 9, id, acked: 1, credits: 1 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: `credit: id ${id} is not followed on this connection; send follow first (after unfollow, credits and acks are not taken)` });
      expect(await peer.request({ op: "unfollow", rid: 10, id })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: `unfollow: id ${id} is not followed on this connection` });
      expect(pushedSeqs(peer)).toEqual([]);
    } finally {
      peer.end();
    }
    // 1-3 acknowledged; 4 and 5 were pushed and not: they come again, first.
    const rest = jsonLines((await cluster.run(["recv", String(id), "--follow", "--count", "7", "--json"])).stdout);
    expect(rest.map((m) => m.seq)).toEqual(range(4, 10));
  });

  test("bad follows are refused naming the value: credits 0, huge or not a number, an unknown id, a second follow of an id", async () => {
    const id = await cluster.create();
    const peer = await helloPeer({ unix: cluster.local.socket }, "local");
    try {
      expect(await peer.request({ op: "follow", rid: 2, id, credits: 0 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'follow: field "credits" is 0; it must be from 1 to 65536 messages' });
      expect(await peer.request({ op: "follow", rid: 3, id, credits: 2 ** 40 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: `follow: field "credits" is ${2 ** 40}; it must be from 1 to 65536 messages` });
      expect(await peer.request({ op: "follow", rid: 4, id, credits: "ten" })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'follow: field "credits" must be a non-negative integer' });
      expect(await peer.request({ op: "follow", rid: 5, id, credits: 10, bytes: 0 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'follow: field "bytes" is 0; it must be from 1 to 1073741824 bytes' });
      expect(await peer.request({ op: "follow", rid: 6, id: 999_999, credits: 10 })).toMatchObject({ op: "error", code: "UNKNOWN_ID", message: "no client with id 999999" });
      expect(await peer.request({ op: "follow", rid: 7, id, credits: 10 })).toEqual({ op: "ok", rid: 7 });
      expect(await peer.request({ op: "follow", rid: 8, id, credits: 10 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: `follow: id ${id} is followed on this connection already; one follow per id and connection (unfollow it first)` });
      expect(await peer.request({ op: "credit", rid: 9, id: id + 1000, credits: 1 })).toMatchObject({ op: "error", code: "BAD_REQUEST" });
      // None of this cost the connection.
      expect(await peer.request({ op: "unfollow", rid: 10, id })).toEqual({ op: "ok", rid: 10 });
    } finally {
      peer.end();
    }
  });
});
