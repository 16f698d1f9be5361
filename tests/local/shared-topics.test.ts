/**
 * The topic list asked by many clients of one host at once. Its answer grows with the
 * server's topics, and each client's request was forwarded on its own: 200 at once over
 * 1,000 topics of 200-byte names made the server queue more than a connection may hold, and
 * it cut the host's whole session as a slow consumer (every client UNAVAILABLE, both daemons
 * keeping the memory). Now the local broker makes one call for all who ask meanwhile.
 */
import { afterEach, expect, test } from "bun:test";
import { MqClient, MqError } from "../../lib/client/index.ts";
import { SharedCall } from "../../lib/local/shared-call.ts";
import { createOn, startLocal, startServer, teardown, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { helloPeer, type RawPeer } from "../security/kit.ts";

let server: ServerHandle | undefined;
let local: LocalHandle | undefined;
const clients: MqClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await teardown([local?.daemon, server?.daemon].filter((d) => d !== undefined));
  server = local = undefined;
});

test("200 clients asking for 1,000 long topic names at once all get them, and the host's session to the server stays up", async () => {
  server = await startServer({ args: ["--fsync", "never"] });
  local = await startLocal(server.address);
  const id = await createOn(local.socket);
  const owner = await MqClient.connect({ socket: local.socket });
  clients.push(owner);
  const names = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(4, "0")}.${"t".repeat(195)}`);
  await owner.subscribe(id, names);
  const askers = await Promise.all(Array.from({ length: 200 }, () => MqClient.connect({ socket: local!.socket })));
  clients.push(...askers);
  const all = (await owner.topics()).length; // the 1,000 and the server's default topics
  expect(all).toBeGreaterThanOrEqual(1000);
  const serverLog = server.daemon.log.length;
  const answers = await Promise.all(askers.map((c) => c.topics().then((list) => list.length, (err: unknown) => (err instanceof MqError ? `${err.code}: ${err.message}` : String(err)))));
  expect(answers.filter((n) => n !== all)).toEqual([]);
  // The session was not cut: the server logged no disconnect, and a publish goes through it.
  expect(server.daemon.log.slice(serverLog)).not.toContain("disconnected");
  expect((await owner.publish(id, names[0]!, "after")).seq).toBe(1);
});

test("SharedCall: callers while one call runs share the next one, which starts after it; a failure reaches who shared it", async () => {
  let calls = 0;
  const gates: Array<PromiseWithResolvers<number>> = [];
  const shared = new SharedCall(() => {
    calls++;
    const g = Promise.withResolvers<number>();
    gates.push(g);
    return g.promise;
  });
  const a = shared.call();
  const b = shared.call();
  const c = shared.call();
  expect(calls).toBe(1); // b and c wait for the next call: one begun before them would not see what they did just before
  gates[0]!.resolve(1);
  expect(await a).toBe(1);
  await Bun.sleep(0);
  expect(calls).toBe(2);
  const d = shared.call(); // the running call began before d asked: d waits for a third
  gates[1]!.resolve(2);
  expect([await b, await c]).toEqual([2, 2]);
  await Bun.sleep(0);
  expect(calls).toBe(3);
  gates[2]!.reject(new Error("server gone"));
  expect(await d.catch((err: Error) => err.message)).toBe("server gone");
  // Nothing running: the next caller starts a call at once.
  const e = shared.call();
  expect(calls).toBe(4);
  gates[3]!.resolve(4);
  expect(await e).toBe(4);
});

test("a client that sends 200 pattern subs matching 3,000 topics and reads nothing: the host's session stays up, another client publishes, the server is asked 2 at a time", async () => {
  server = await startServer({ args: ["--fsync", "never", "--store", "memory"] });
  local = await startLocal(server.address);
  const c = await MqClient.connect({ socket: local.socket });
  clients.push(c);
  const pub = await c.create();
  const pad = "x".repeat(180);
  await Promise.all(Array.from({ length: 3000 }, (_, i) => c.publish(pub, `m.${pad}.${i}`, "x")));
  const id = await c.create();
  const serverLog = server.daemon.log.length;
  // Each answer lists the 3,000 matches (~0.7 MB): 200 of them unread were 140 MB the server
  // queued for this host, and it cut the host's session as a slow consumer.
  let hog: RawPeer | undefined = await helloPeer({ unix: local.socket }, "local");
  try {
    hog.pause();
    for (let i = 0; i < 200; i++) hog.send({ op: "sub", rid: 10 + i, id, topics: ["m.>"] });
    await Bun.sleep(3000); // the local broker works through them
    const r = await c.publish(pub, "victim", "hello");
    expect(r.seq).toBe(1);
    expect(server.daemon.log.slice(serverLog)).not.toContain("disconnected");
    expect(local.daemon.log).not.toContain("lost the server");
  } finally {
    hog?.end();
    hog = undefined;
  }
}, 120_000);
