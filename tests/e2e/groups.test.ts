/** Queue groups through the compiled binary: shares, other subscribers, members leaving or dying, restarts, bad names. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { MqError } from "../../lib/errors.ts";
import { createOn, jsonLines, mq, startLocal, startServer, teardown, tmpDir, memoryStore, type LocalHandle, type ServerHandle, restartServer } from "./harness.ts";

/** Every message `id` receives until none came for `idleSeconds` (bounded by the harness timeout): the seqs. */
async function drain(socket: string, id: number, idleSeconds = 2): Promise<number[]> {
  const r = await mq(socket, ["recv", String(id), "--follow", "--count", "100000", "--wait", String(idleSeconds), "--json"], { timeoutMs: 60_000 });
  expect([0, 3]).toContain(r.code);
  return jsonLines(r.stdout).map((m) => m.seq as number);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const lines = (n: number, prefix = "m") => range(1, n).map((i) => `${prefix}${i}`).join("\n") + "\n";

let server: ServerHandle;
let hostA: LocalHandle;
let hostB: LocalHandle;
beforeAll(async () => {
  server = await startServer();
  hostA = await startLocal(server.address);
  hostB = await startLocal(server.address);
});
afterAll(async () => {
  await teardown([hostA?.daemon, hostB?.daemon, server?.daemon].filter((d) => d !== undefined), [hostA?.dataDir, hostB?.dataDir, server?.dataDir].filter((d) => d !== undefined));
});

describe("queue groups", () => {
  test("3 members on two local brokers share the messages, each exactly once; a plain id and a second group get all of them", async () => {
    const a1 = await createOn(hostA.socket);
    const a2 = await createOn(hostA.socket);
    const b1 = await createOn(hostB.socket);
    const plain = await createOn(hostA.socket);
    const other = await createOn(hostB.socket);
    for (const [socket, id] of [[hostA.socket, a1], [hostA.socket, a2], [hostB.socket, b1]] as const) {
      const r = await mq(socket, ["sub", String(id), "jobs", "--group", "workers"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("in group workers");
    }
    expect((await mq(hostA.socket, ["sub", String(plain), "jobs"])).code).toBe(0);
    expect((await mq(hostB.socket, ["sub", String(other), "jobs", "--group", "auditors"])).code).toBe(0);
    const p = await mq(hostA.socket, ["pub", String(plain), "jobs", "--lines"], { stdin: lines(300) });
    expect(p.code).toBe(0);

    const [got1, got2, got3, plainGot, otherGot] = await Promise.all([
      drain(hostA.socket, a1),
      drain(hostA.socket, a2),
      drain(hostB.socket, b1),
      drain(hostA.socket, plain),
      drain(hostB.socket, other),
    ]);
    for (const share of [got1, got2, got3]) expect(share.length).toBeGreaterThan(0);
    expect(sorted([...got1, ...got2, ...got3])).toEqual(range(1, 300));
    expect(plainGot).toEqual(range(1, 300));
    expect(sorted(otherGot)).toEqual(range(1, 300));
  });

  test("a member that unsubscribes hands its unacknowledged messages to another member", async () => {
    const stays = await createOn(hostA.socket);
    const leaves = await createOn(hostB.socket);
    await mq(hostA.socket, ["sub", String(stays), "handover", "--group", "g"]);
    await mq(hostB.socket, ["sub", String(leaves), "handover", "--group", "g"]);
    await mq(hostA.socket, ["pub", String(stays), "handover", "--lines"], { stdin: lines(100) });
    // `leaves` processes a few; the rest of its share waits, unacknowledged, in its local broker.
    const first = jsonLines((await mq(hostB.socket, ["recv", String(leaves), "--count", "5", "--wait", "10", "--json"])).stdout).map((m) => m.seq as number);
    expect(first.length).toBe(5);
    const before = JSON.parse((await mq(hostB.socket, ["stats", "--json"])).stdout);
    expect(before.local.pending).toBeGreaterThan(0);
    expect((await mq(hostB.socket, ["unsub", String(leaves), "handover"])).code).toBe(0);
    const rest = await drain(hostA.socket, stays);
    expect(sorted([...first, ...rest])).toEqual(range(1, 100));
  });

  test("a member that is destroyed hands its unacknowledged messages to another member", async () => {
    const stays = await createOn(hostB.socket);
    const goes = await createOn(hostA.socket);
    await mq(hostB.socket, ["sub", String(stays), "destroyed", "--group", "g"]);
    await mq(hostA.socket, ["sub", String(goes), "destroyed", "--group", "g"]);
    await mq(hostB.socket, ["pub", String(stays), "destroyed", "--lines"], { stdin: lines(100) });
    const first = jsonLines((await mq(hostA.socket, ["recv", String(goes), "--count", "2", "--wait", "10", "--json"])).stdout).map((m) => m.seq as number);
    expect(first.length).toBe(2);
    expect((await mq(hostA.socket, ["destroy", String(goes)])).code).toBe(0);
    const rest = await drain(hostB.socket, stays);
    expect(sorted([...first, ...rest])).toEqual(range(1, 100));
  });

  test("a member whose local broker is killed (SIGKILL) mid-stream: its unacknowledged messages reach another member", async () => {
    const doomed = await startLocal(server.address);
    try {
      const survivor = await createOn(hostA.socket);
      const victim = await createOn(doomed.socket);
      await mq(hostA.socket, ["sub", String(survivor), "crash", "--group", "g"]);
      await mq(doomed.socket, ["sub", String(victim), "crash", "--group", "g"]);
      await mq(hostA.socket, ["pub", String(survivor), "crash", "--lines"], { stdin: lines(100) });
      const seen = jsonLines((await mq(doomed.socket, ["recv", String(victim), "--count", "3", "--wait", "10", "--json"])).stdout).map((m) => m.seq as number);
      expect(seen.length).toBe(3);
      const stats = JSON.parse((await mq(doomed.socket, ["stats", "--json"])).stdout);
      expect(stats.local.pending).toBeGreaterThan(0); // its share, pushed and not yet received
      await doomed.daemon.kill9();
      await server.daemon.waitFor(new RegExp(`local broker ${stats.local.identity} disconnected`));
      const rest = await drain(hostA.socket, survivor);
      // At least once: the acks of `seen` may have died with the broker, so they may come again.
      const all = new Set([...seen, ...rest]);
      expect(sorted([...all])).toEqual(range(1, 100));
      expect(rest.length).toBe(new Set(rest).size);
      for (const seq of range(1, 100)) if (!seen.includes(seq)) expect(rest).toContain(seq);
    } finally {
      await teardown([doomed.daemon], [doomed.dataDir]);
    }
  });

  test("bad group names are refused with a message naming them: CLI exit 2, library BAD_REQUEST", async () => {
    const id = await createOn(hostA.socket);
    for (const bad of ["has space", "", "x".repeat(65), "slash/y", "star*"]) {
      const r = await mq(hostA.socket, ["sub", String(id), "t", "--group", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("invalid group name");
      expect(r.stderr).toContain("1 to 64 characters");
    }
    expect((await mq(hostA.socket, ["sub", String(id), "t", "--group", "ok_name-1.2"])).code).toBe(0);
    await using client = await MqClient.connect({ socket: hostA.socket });
    const err = await client.subscribe(id, ["t2"], { group: "no way" }).catch((e) => e);
    expect(err).toBeInstanceOf(MqError);
    expect((err as MqError).code).toBe("BAD_REQUEST");
    expect((err as MqError).message).toContain('"no way"');
  });

  test("a member gets the message's headers", async () => {
    const id = await createOn(hostA.socket);
    await mq(hostA.socket, ["sub", String(id), "with.headers", "--group", "g"]);
    expect((await mq(hostA.socket, ["pub", String(id), "with.headers", "hello", "--header", "k=v=w"])).code).toBe(0);
    const r = await mq(hostA.socket, ["recv", String(id), "--wait", "10", "--json"]);
    expect(JSON.parse(r.stdout)).toMatchObject({ data: "hello", headers: { k: "v=w" } });
  });

  test("a group on a pattern is refused: a group needs a topic", async () => {
    const id = await createOn(hostA.socket);
    const r = await mq(hostA.socket, ["sub", String(id), "jobs.*", "--group", "g"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('not the pattern "jobs.*"');
  });

  test("an id subscribed without a group cannot join a group on the same topic without unsubscribing", async () => {
    const id = await createOn(hostA.socket);
    expect((await mq(hostA.socket, ["sub", String(id), "plainfirst"])).code).toBe(0);
    const r = await mq(hostA.socket, ["sub", String(id), "plainfirst", "--group", "g"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("unsubscribe it first");
  });
});

describe("queue groups: review fixes", () => {
  test("a member behind a run of expired messages (150, --ttl 300ms) gets the live one after them", async () => {
    const pub = await createOn(hostA.socket);
    const member = await createOn(hostB.socket);
    expect((await mq(hostA.socket, ["pub", String(pub), "expiring.run", "--lines", "--ttl", "300ms"], { stdin: lines(150, "old") })).code).toBe(0);
    expect((await mq(hostA.socket, ["pub", String(pub), "expiring.run", "live"])).code).toBe(0);
    await Bun.sleep(400); // the 150 expire
    expect((await mq(hostB.socket, ["sub", String(member), "expiring.run", "--group", "h", "--from", "earliest"])).code).toBe(0);
    const r = await mq(hostB.socket, ["recv", String(member), "--wait", "10"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("live\n");
  });

  test("joining a group with another --max-deliver is refused naming both values (exit 1); the same options join", async () => {
    const first = await createOn(hostA.socket);
    const second = await createOn(hostB.socket);
    expect((await mq(hostA.socket, ["sub", String(first), "opts", "--group", "g", "--max-deliver", "3"])).code).toBe(0);
    const other = await mq(hostB.socket, ["sub", String(second), "opts", "--group", "g", "--max-deliver", "5"]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('queue group "g" of topic "opts" has --max-deliver 3 --dead-letter opts.dlq, and this sub asks for --max-deliver 5 --dead-letter opts.dlq');
    // The same id again with other options: refused too, not silently kept.
    const again = await mq(hostA.socket, ["sub", String(first), "opts", "--group", "g", "--max-deliver", "4"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("--max-deliver 3");
    expect((await mq(hostB.socket, ["sub", String(second), "opts", "--group", "g", "--max-deliver", "3"])).code).toBe(0);
  });

  test("a local broker stopped past the heartbeat (kill -STOP): its buffered messages are not counted as deliveries nor handed out twice", async () => {
    const srv = await startServer({ args: ["--heartbeat-ms", "200", "--heartbeat-missed", "2"] });
    const frozen = await startLocal(srv.address);
    try {
      const y = await createOn(frozen.socket);
      const watcher = await createOn(frozen.socket);
      expect((await mq(frozen.socket, ["sub", String(y), "t7", "--max-deliver", "1"])).code).toBe(0);
      expect((await mq(frozen.socket, ["sub", String(watcher), "t7.dlq"])).code).toBe(0);
      const identity = JSON.parse((await mq(frozen.socket, ["stats", "--json"])).stdout).local.identity as string;
      expect((await mq(frozen.socket, ["pub", String(y), "t7", "--lines"], { stdin: lines(3) })).code).toBe(0);
      for (let i = 0; i < 100 && JSON.parse((await mq(frozen.socket, ["stats", "--json"])).stdout).local.pending < 3; i++) await Bun.sleep(50);
      process.kill(frozen.daemon.pid, "SIGSTOP");
      try {
        await srv.daemon.waitFor(new RegExp(`local broker ${identity} disconnected`));
      } finally {
        process.kill(frozen.daemon.pid, "SIGCONT");
      }
      await frozen.daemon.waitFor(/lost the server[\s\S]*connected to the server/);
      const got = await mq(frozen.socket, ["recv", String(y), "--count", "3", "--wait", "10"]);
      expect(got.stdout).toBe(lines(3));
      // Each message once: the copies buffered before the loss were dropped, the server sent them again.
      expect((await mq(frozen.socket, ["recv", String(y), "--wait", "1"])).code).toBe(3);
      expect((await mq(frozen.socket, ["recv", String(watcher), "--wait", "1"])).code).toBe(3);
    } finally {
      await teardown([frozen.daemon, srv.daemon], [frozen.dataDir, srv.dataDir]);
    }
  });
});

describe("queue groups across a server restart", () => {
  // What a restart keeps is the file store's promise; the memory store keeps nothing.
  test.skipIf(memoryStore)("the group, its members and its ack floor survive a restart (SIGTERM); after a crash (SIGKILL) what was above the floor comes again", async () => {
    const data = tmpDir("mq-server-");
    let srv = await startServer({ dataDir: data });
    const one = await startLocal(srv.address);
    const two = await startLocal(srv.address);
    try {
      const m1 = await createOn(one.socket);
      const m2 = await createOn(two.socket);
      await mq(one.socket, ["sub", String(m1), "durable.jobs", "--group", "g"]);
      await mq(two.socket, ["sub", String(m2), "durable.jobs", "--group", "g"]);
      await mq(one.socket, ["pub", String(m1), "durable.jobs", "--lines"], { stdin: lines(20) });
      const before = [...(await drain(one.socket, m1)), ...(await drain(two.socket, m2))];
      expect(sorted(before)).toEqual(range(1, 20));

      srv = await restartServer(srv, [one, two]);
      const p = await mq(one.socket, ["pub", String(m1), "durable.jobs", "--lines", "--json"], { stdin: lines(20, "n") });
      expect(jsonLines(p.stdout)[0]!.subscribers).toBe(2);
      const [after1, after2] = await Promise.all([drain(one.socket, m1), drain(two.socket, m2)]);
      // Still one group: the new messages once, the acknowledged ones never again.
      expect(sorted([...after1, ...after2])).toEqual(range(21, 40));
      // The group's options are kept: a join asking for others is still refused.
      const m3 = await createOn(two.socket);
      const other = await mq(two.socket, ["sub", String(m3), "durable.jobs", "--group", "g", "--max-deliver", "2"]);
      expect(other.code).toBe(1);
      expect(other.stderr).toContain('queue group "g" of topic "durable.jobs" has no --max-deliver');

      // A crash: the floor on disk may lag behind the acks, never ahead; nothing is lost.
      await mq(one.socket, ["pub", String(m1), "durable.jobs", "--lines"], { stdin: lines(10, "c") });
      srv = await restartServer(srv, [one, two], { kill: true });
      const [c1, c2] = await Promise.all([drain(one.socket, m1, 4), drain(two.socket, m2, 4)]);
      for (const seq of range(41, 50)) expect([...c1, ...c2]).toContain(seq);
    } finally {
      await teardown([one.daemon, two.daemon, srv.daemon], [data, one.dataDir, two.dataDir]);
    }
  });

  test.skipIf(memoryStore)("a member that holds messages and never recvs does not make a clean restart (SIGTERM) deliver again what the others acknowledged", async () => {
    const data = tmpDir("mq-server-");
    let srv = await startServer({ dataDir: data });
    const one = await startLocal(srv.address);
    const two = await startLocal(srv.address);
    try {
      const idle = await createOn(one.socket);
      const busy = await createOn(two.socket);
      await mq(one.socket, ["sub", String(idle), "pinned.jobs", "--group", "w"]);
      await mq(two.socket, ["sub", String(busy), "pinned.jobs", "--group", "w"]);
      // The idle member holds its window (the lowest seqs among them), so the group's floor stays at its first one.
      await mq(one.socket, ["pub", String(idle), "pinned.jobs", "--lines"], { stdin: lines(2000) });
      const before = await drain(two.socket, busy);
      expect(before.length).toBeGreaterThan(1000);
      expect(before.length).toBeLessThan(2000);

      srv = await restartServer(srv, [one, two]);
      const [after1, after2] = await Promise.all([drain(one.socket, idle), drain(two.socket, busy)]);
      // Each message once over both lives of the server: the idle member's held ones come again (never received), the acknowledged ones never.
      expect(sorted([...before, ...after1, ...after2])).toEqual(range(1, 2000));
    } finally {
      await teardown([one.daemon, two.daemon, srv.daemon], [data, one.dataDir, two.dataDir]);
    }
  });
});
