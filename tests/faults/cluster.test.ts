/**
 * Fault tests of several servers on one PostgreSQL database (issue 12, docs/scale-out.md):
 * publishers and subscribers on two servers (local brokers `--server A,B` and `--server B,A`),
 * then SIGKILL of one server, or PostgreSQL stopped at once (like a crash) and started again,
 * in the middle of the stream. Every acknowledged publish must reach every subscriber, in seq
 * order per topic; re-deliveries (at least once) are counted, gaps are failures.
 */
import { describe, expect, test } from "bun:test";
import { createOn, mq, type LocalHandle } from "../e2e/harness.ts";
import { noPostgres, postgresForTests } from "../pg-kit.ts";
import { sharedServers } from "../cluster/kit.ts";
import { RecordingPublisher, drain, verify } from "./fault-kit.ts";

/** Resolves once `n` acks have been counted. */
function ackCounter(n: number) {
  let count = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  return { reached: promise, tick: () => ++count === n && resolve() };
}

/** One subscriber id per (local broker, topic), subscribed before the stream starts. */
async function subscribe(hosts: LocalHandle[], topics: string[]) {
  const subs: Array<{ host: LocalHandle; topic: string; id: number }> = [];
  for (const host of hosts) {
    for (const topic of topics) {
      const id = await createOn(host.socket);
      expect((await mq(host.socket, ["sub", String(id), topic])).code).toBe(0);
      subs.push({ host, topic, id });
    }
  }
  return subs;
}

/** Drains every subscriber and checks it against what its topic's publishers had acknowledged. */
async function check(subs: Awaited<ReturnType<typeof subscribe>>, publishers: RecordingPublisher[]) {
  const report: Record<string, unknown> = {};
  for (const s of subs) {
    const acked = publishers.filter((p) => p.topic === s.topic).flatMap((p) => p.acked);
    const v = verify(await drain(s.host.socket, s.id, new Set(acked.map((a) => a.seq)), Date.now() + 30_000), acked);
    report[`${s.topic}@${s.host.socket.split("/").at(-2)}:${s.id}`] = { acked: acked.length, received: v.received, distinct: v.distinct, duplicates: v.duplicates };
    expect(v.problems).toEqual([]);
  }
  return report;
}

describe(`two servers on one PostgreSQL database, faults${noPostgres}`, () => {
  const postgres = postgresForTests();

  test.skipIf(Boolean(noPostgres))("server A SIGKILLed mid-stream, publishers and subscribers on both: every acknowledged message reaches every subscriber, in order per topic", async () => {
    await using c = await sharedServers(postgres.current());
    const [a, b] = c.servers as [NonNullable<(typeof c.servers)[0]>, NonNullable<(typeof c.servers)[0]>];
    const hostA = await c.local(a, b);
    const hostB = await c.local(b, a);
    const topics = ["fa", "fb"];
    const subs = await subscribe([hostA, hostB], topics);
    // Two publishers per host, each host writing both topics: the servers take turns on each topic's row.
    const publishers: RecordingPublisher[] = [];
    for (const [h, host] of [hostA, hostB].entries()) {
      for (const topic of topics) publishers.push(new RecordingPublisher(`h${h}-${topic}`, host.socket, await createOn(host.socket), topic));
    }
    try {
      const deadline = Date.now() + 60_000;
      const kill = ackCounter(200);
      const running = publishers.map((p) => p.run(120, deadline, kill.tick));
      await kill.reached;
      await a.daemon.kill9();
      await Promise.all(running);
      await hostA.daemon.waitFor(new RegExp(`connected to the server ${b.address.replace(/\./g, "\\.")}`));
      const report = await check(subs, publishers);
      const failed = publishers.reduce((n, p) => n + p.failed, 0);
      console.log(`cluster fault (server SIGKILL): failed publishes ${failed}, ${JSON.stringify(report)}`);
      for (const p of publishers) expect(p.acked.length).toBe(120);
    } finally {
      for (const p of publishers) p.close();
    }
  });

  test.skipIf(Boolean(noPostgres))("PostgreSQL stopped mid-stream: publishes fail with exit 4 while it is away, nothing acknowledged is lost, publishing works again after", async () => {
    await using c = await sharedServers(postgres.current());
    const [a, b] = c.servers as [NonNullable<(typeof c.servers)[0]>, NonNullable<(typeof c.servers)[0]>];
    const hostA = await c.local(a, b);
    const hostB = await c.local(b, a);
    const subs = await subscribe([hostA, hostB], ["pg"]);
    const publishers = [new RecordingPublisher("pa", hostA.socket, await createOn(hostA.socket), "pg"), new RecordingPublisher("pb", hostB.socket, await createOn(hostB.socket), "pg")];
    const probe = await createOn(hostA.socket);
    try {
      const deadline = Date.now() + 90_000;
      const down = ackCounter(100);
      const running = publishers.map((p) => p.run(150, deadline, down.tick));
      await down.reached;
      await postgres.current().kill();
      // While PostgreSQL is away a publish is refused, exit 4 (UNAVAILABLE: send it again later).
      // A topic that exists and one that would be created.
      for (const topic of ["pg", "pg-probe"]) {
        const away = await mq(hostA.socket, ["pub", String(probe), topic, "while-away"]);
        expect({ code: away.code, stderr: away.stderr }).toMatchObject({ code: 4, stderr: expect.stringContaining("UNAVAILABLE") });
      }
      const failedWhileAway = publishers.reduce((n, p) => n + p.failed, 0);
      await postgres.current().start();
      // Back: the pools reconnect; a publish passes again within a bounded number of tries.
      let back = await mq(hostA.socket, ["pub", String(probe), "pg-probe", "after"]);
      for (let i = 0; i < 50 && back.code !== 0; i++) {
        await Bun.sleep(200);
        back = await mq(hostA.socket, ["pub", String(probe), "pg-probe", "after"]);
      }
      expect(back.code).toBe(0);
      await Promise.all(running);
      const report = await check(subs, publishers);
      console.log(`cluster fault (PostgreSQL restart): failed publishes ${publishers.reduce((n, p) => n + p.failed, 0)} (${failedWhileAway} by the time of the probe), ${JSON.stringify(report)}`);
      for (const p of publishers) expect(p.acked.length).toBe(150);
    } finally {
      for (const p of publishers) p.close();
    }
  });
});
