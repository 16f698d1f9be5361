/**
 * Queue groups across two `mq server`s on one PostgreSQL database (issue 12, docs/scale-out.md):
 * one member per server, each on its own local broker, from the compiled binary. Each message
 * goes to one member across both servers; naks, --max-deliver counts and a dead server's
 * unacknowledged claims are the database's, not a server's.
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { MqClient } from "../../lib/client/client.ts";
import { createOn, jsonLines, mq } from "../e2e/harness.ts";
import { noPostgres, postgresForTests, type PostgresHandle } from "../pg-kit.ts";
import { sharedServers } from "./kit.ts";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const lines = (from: number, to: number) => range(from, to).map((i) => `m${i}`).join("\n") + "\n";

/** Every message `id` receives (and acknowledges) until none came for `idleSeconds`: the seqs. */
async function drain(socket: string, id: number, idleSeconds = 3): Promise<number[]> {
  const r = await mq(socket, ["recv", String(id), "--follow", "--count", "100000", "--wait", String(idleSeconds), "--json"], { timeoutMs: 90_000 });
  expect([0, 3]).toContain(r.code);
  return jsonLines(r.stdout).map((m) => m.seq as number);
}

async function sub(socket: string, id: number, topic: string, ...args: string[]): Promise<void> {
  const r = await mq(socket, ["sub", String(id), topic, ...args]);
  if (r.code !== 0) throw new Error(`mq sub ${id} ${topic} ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
}

async function pubLines(socket: string, id: number, topic: string, text: string): Promise<void> {
  const r = await mq(socket, ["pub", String(id), topic, "--lines"], { stdin: text });
  if (r.code !== 0) throw new Error(`mq pub exited ${r.code}: ${r.stderr}`);
}

/** Two servers on one database, a local broker on each, and one new id created through each. */
async function membersOnBoth(pg: PostgresHandle) {
  const c = await sharedServers(pg);
  const [a, b] = c.servers as [NonNullable<(typeof c.servers)[0]>, NonNullable<(typeof c.servers)[0]>];
  const onA = await c.local(a);
  const onB = await c.local(b);
  return { c, a, b, onA, onB, memberA: await createOn(onA.socket), memberB: await createOn(onB.socket), url: c.url, restart: (i: number) => c.restart(i), [Symbol.asyncDispose]: () => c[Symbol.asyncDispose]() };
}

type MembersOnBoth = Awaited<ReturnType<typeof membersOnBoth>>;

/** Both members subscribe to `topic` with the same arguments (a group, --max-deliver …). */
async function joinBoth(c: MembersOnBoth, topic: string, ...args: string[]): Promise<void> {
  await sub(c.onA.socket, c.memberA, topic, ...args);
  await sub(c.onB.socket, c.memberB, topic, ...args);
}

/** What each member receives until both are idle: [A's seqs, B's seqs]. */
function drainBoth(c: MembersOnBoth): Promise<[number[], number[]]> {
  return Promise.all([drain(c.onA.socket, c.memberA), drain(c.onB.socket, c.memberB)]);
}

const pgTest = test.skipIf(Boolean(noPostgres));

describe(`queue groups across two servers on one PostgreSQL database${noPostgres}`, () => {
  const postgres = postgresForTests();

  pgTest("members through A and B: each of 2000 messages delivered once in all (published through both)", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { onA, onB, memberA, memberB } = c;
    await joinBoth(c, "jobs", "--group", "workers");
    const [gotA, gotB] = await Promise.all([
      drain(onA.socket, memberA, 4),
      drain(onB.socket, memberB, 4),
      pubLines(onA.socket, memberA, "jobs", lines(1, 1000)).then(() => pubLines(onB.socket, memberB, "jobs", lines(1001, 2000))),
    ]);
    // Once in all: no seq twice, none missing (the split between them is timing's).
    expect(sorted([...gotA, ...gotB])).toEqual(range(1, 2000));
  }, 120_000);

  pgTest("a member joining through B (from the latest message) takes its share of what the group has not delivered yet, none skipped", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { onA, onB, memberA, memberB } = c;
    await sub(onA.socket, memberA, "backlog", "--group", "g");
    // More than A's member's window: A has claimed part of them when B's member joins.
    await pubLines(onA.socket, memberA, "backlog", lines(1, 1000));
    await sub(onB.socket, memberB, "backlog", "--group", "g");
    const [gotA, gotB] = await drainBoth(c);
    expect(sorted([...gotA, ...gotB])).toEqual(range(1, 1000));
  }, 120_000);

  pgTest("a nak through one server: the message comes again (to a member of either server); acknowledged, never again", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { onA, onB, memberA, memberB } = c;
    await joinBoth(c, "retry", "--group", "g", "--max-deliver", "5");
    await pubLines(onA.socket, memberA, "retry", "once\n");
    await using clientA = await MqClient.connect({ socket: onA.socket });
    await using clientB = await MqClient.connect({ socket: onB.socket });
    const clients = [
      { client: clientA, id: memberA },
      { client: clientB, id: memberB },
    ];
    // Whoever gets it first naks it; then it must come again, once, to someone.
    let naked = false;
    const seen: Array<[number, string]> = [];
    for (let round = 0; round < 60 && seen.length < 2; round++) {
      for (const { client, id } of clients) {
        const got = await client.recv(id, { waitMs: 250 });
        if (got.messages.length === 0) continue;
        for (const m of got.messages) seen.push([m.seq, m.text()]);
        if (!naked) {
          await got.nak();
          naked = true;
        } else await got.ack();
      }
    }
    expect(seen).toEqual([
      [1, "once"],
      [1, "once"],
    ]);
    for (const { client, id } of clients) expect((await client.recv(id, { waitMs: 1000 })).messages).toEqual([]);
  }, 120_000);

  pgTest("--max-deliver 3 counted across servers: members of both nak it, it is dead-lettered once, after 3 deliveries in all", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { onA, onB, memberA, memberB } = c;
    const watcher = await createOn(onA.socket);
    await joinBoth(c, "orders", "--group", "g", "--max-deliver", "3");
    await sub(onA.socket, watcher, "orders.dlq");
    await pubLines(onB.socket, memberB, "orders", "poison\n");
    await using clientA = await MqClient.connect({ socket: onA.socket });
    await using clientB = await MqClient.connect({ socket: onB.socket });
    let deliveries = 0;
    const dead: Array<Record<string, unknown>> = [];
    // Both members nak all they get until the dead letter arrives, then for one more second.
    const deadline = Date.now() + 60_000;
    let quietUntil = Infinity;
    while (Date.now() < Math.min(deadline, quietUntil)) {
      for (const [client, id] of [[clientA, memberA], [clientB, memberB]] as const) {
        const got = await client.recv(id, { waitMs: 200 });
        deliveries += got.messages.length;
        if (got.messages.length > 0) await got.nak();
      }
      if (dead.length === 0) {
        const r = await mq(onA.socket, ["recv", String(watcher), "--json"]);
        dead.push(...jsonLines(r.stdout));
        if (dead.length > 0) quietUntil = Date.now() + 1000;
      }
    }
    expect(dead.length).toBe(1);
    expect(dead[0]).toMatchObject({ topic: "orders.dlq", data: "poison", headers: { "mq-dead-topic": "orders", "mq-dead-seq": "1", "mq-dead-deliveries": "3" } });
    expect(deliveries).toBe(3);
    // Not dead-lettered again by the other server.
    expect(jsonLines((await mq(onA.socket, ["recv", String(watcher), "--wait", "1", "--json"])).stdout)).toEqual([]);
  }, 120_000);

  pgTest("SIGKILL of server A with its member's messages unacknowledged: B's member gets every one A's member did not acknowledge, and none it did", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { a, onA, onB, memberA, memberB } = c;
    await joinBoth(c, "crash", "--group", "g");
    // B's member is not reading yet: A's member gets its batch (claimed by A) first.
    await pubLines(onA.socket, memberA, "crash", lines(1, 200));
    const seen = jsonLines((await mq(onA.socket, ["recv", String(memberA), "--count", "3", "--wait", "10", "--json"])).stdout).map((m) => m.seq as number);
    expect(seen.length).toBe(3);
    expect(JSON.parse((await mq(onA.socket, ["stats", "--json"])).stdout).local.pending).toBeGreaterThan(0); // claimed by A, not acknowledged
    // The acks of those 3 are in the database before A dies.
    await using db = new SQL(c.url, { max: 1 });
    for (let i = 0; i < 100; i++) {
      const [row] = await db`select count(*)::int as n from mq_group_claims where seq = any(${`{${seen.join(",")}}`}::bigint[])`;
      if (row.n === 0) break;
      await Bun.sleep(50);
    }
    await a.daemon.kill9();
    const rest = await drain(onB.socket, memberB, 4);
    expect(rest.length).toBe(new Set(rest).size);
    expect(sorted(rest)).toEqual(range(1, 200).filter((seq) => !seen.includes(seq)));
  }, 120_000);

  pgTest("a member whose local broker fails over from A to B (--server A,B) stays in the group: B delivers to it", async () => {
    await using c = await sharedServers(postgres.current());
    const [a, b] = c.servers as [NonNullable<(typeof c.servers)[0]>, NonNullable<(typeof c.servers)[0]>];
    const moving = await c.local(a, b);
    const onB = await c.local(b);
    const memberA = await createOn(moving.socket);
    const memberB = await createOn(onB.socket);
    await sub(moving.socket, memberA, "moves", "--group", "g");
    await sub(onB.socket, memberB, "moves", "--group", "g");
    await a.daemon.kill9();
    await moving.daemon.waitFor(new RegExp(`connected to the server ${b.address.replace(/\./g, "\\.")}`), 30_000);
    // B's own member goes: what comes next is for the member that joined through A.
    expect((await mq(onB.socket, ["unsub", String(memberB), "moves"])).code).toBe(0);
    await pubLines(onB.socket, memberB, "moves", lines(1, 50));
    expect(sorted(await drain(moving.socket, memberA))).toEqual(range(1, 50));
  }, 120_000);

  pgTest("a group whose members left through both servers is forgotten: joined again, it starts from the next message, not where it stopped", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { onA, onB, memberA, memberB } = c;
    await joinBoth(c, "again", "--group", "g");
    await pubLines(onA.socket, memberA, "again", lines(1, 10));
    const [first, second] = await drainBoth(c);
    expect(sorted([...first, ...second])).toEqual(range(1, 10));
    expect((await mq(onA.socket, ["unsub", String(memberA), "again"])).code).toBe(0);
    expect((await mq(onB.socket, ["unsub", String(memberB), "again"])).code).toBe(0);
    await pubLines(onA.socket, memberA, "again", lines(11, 15));
    await sub(onA.socket, memberA, "again", "--group", "g");
    await pubLines(onA.socket, memberA, "again", lines(16, 18));
    expect(await drain(onA.socket, memberA)).toEqual([16, 17, 18]);
  }, 120_000);

  pgTest("a restart of server A (SIGTERM) keeps the group's position and A's member", async () => {
    await using c = await membersOnBoth(postgres.current());
    const { a, onA, onB, memberA, memberB } = c;
    await joinBoth(c, "work", "--group", "g");
    await pubLines(onB.socket, memberB, "work", lines(1, 100));
    const [first, second] = await drainBoth(c);
    expect(sorted([...first, ...second])).toEqual(range(1, 100));

    expect(await a.daemon.stop()).toBe(0);
    await c.restart(0);
    await onA.daemon.waitFor(/connected to the server[\s\S]*connected to the server/, 30_000);
    // B's member goes: what comes next is for A's member, from where the group was.
    expect((await mq(onB.socket, ["unsub", String(memberB), "work"])).code).toBe(0);
    await pubLines(onB.socket, memberB, "work", lines(101, 150));
    expect(sorted(await drain(onA.socket, memberA))).toEqual(range(101, 150));
  }, 120_000);
});
