/**
 * Fault tests 1 and 2 of the durability issue: SIGKILL of the server, of the local brokers
 * and of a publishing CLI in the middle of a stream of publishes. Every publish that
 * returned success must reach each subscriber in seq order; duplicates are counted.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { mq, mqCommand, startLocal, startServer, tmpDir, type LocalHandle, type ServerHandle, createOn, teardown } from "../e2e/harness.ts";
import { RecordingPublisher, drain, verify, type Acked } from "./fault-kit.ts";

const TOPIC = "faults";

/** Resolves once `n` acks have been counted. */
function ackCounter(n: number) {
  let count = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  return { reached: promise, tick: () => ++count === n && resolve() };
}

test("server SIGKILLed during concurrent publishes: every acknowledged publish reaches every subscriber, in order", async () => {
  const dataDir = tmpDir("mq-fault-server-");
  let server: ServerHandle = await startServer({ dataDir });
  const pubHost = await startLocal(server.address);
  const subHost = await startLocal(server.address);
  const publishers: RecordingPublisher[] = [];
  try {
    const subscribers = [await createOn(subHost.socket), await createOn(subHost.socket)];
    for (const s of subscribers) expect((await mq(subHost.socket, ["sub", String(s), TOPIC])).code).toBe(0);
    for (let p = 0; p < 3; p++) publishers.push(new RecordingPublisher(`p${p}`, pubHost.socket, await createOn(pubHost.socket), TOPIC));

    const deadline = Date.now() + 60_000;
    const kill = ackCounter(150);
    const running = publishers.map((p) => p.run(200, deadline, kill.tick));
    await kill.reached;
    await server.daemon.kill9();
    await Bun.sleep(300);
    server = await startServer({ dataDir, port: server.port });
    await Promise.all(running);

    const acked: Acked[] = publishers.flatMap((p) => p.acked);
    const want = new Set(acked.map((a) => a.seq));
    const report: Record<string, unknown> = { attempts: publishers.reduce((n, p) => n + p.attempts, 0), acked: acked.length, failed: publishers.reduce((n, p) => n + p.failed, 0) };
    for (const s of subscribers) {
      const v = verify(await drain(subHost.socket, s, want, Date.now() + 30_000), acked);
      report[`subscriber ${s}`] = { received: v.received, distinct: v.distinct, duplicates: v.duplicates };
      expect(v.problems).toEqual([]);
    }
    console.log(`fault 1 (server SIGKILL): ${JSON.stringify(report)}`);
    expect(acked.length).toBe(600);
  } finally {
    for (const p of publishers) p.close();
    await pubHost.daemon[Symbol.asyncDispose]();
    await subHost.daemon[Symbol.asyncDispose]();
    await server.daemon[Symbol.asyncDispose]();
    for (const d of [dataDir, pubHost.dataDir, subHost.dataDir]) fs.rmSync(d, { recursive: true, force: true });
  }
});

test("local brokers SIGKILLed (subscriber's, then publisher's) during publishes: nothing acknowledged is lost", async () => {
  const server = await startServer();
  let pubHost: LocalHandle = await startLocal(server.address);
  let subHost: LocalHandle = await startLocal(server.address);
  const publishers: RecordingPublisher[] = [];
  try {
    const subscriber = await createOn(subHost.socket);
    await mq(subHost.socket, ["sub", String(subscriber), TOPIC]);
    for (let p = 0; p < 3; p++) publishers.push(new RecordingPublisher(`q${p}`, pubHost.socket, await createOn(pubHost.socket), TOPIC));
    // The subscriber receives part of the stream before its broker dies, so some messages are
    // acknowledged, some buffered, some in flight at the moment of the kill.
    const early = await drain(subHost.socket, subscriber, new Set([1]), Date.now() + 5_000).catch(() => []);

    const deadline = Date.now() + 60_000;
    const first = ackCounter(100);
    const second = ackCounter(250);
    const running = publishers.map((p) => p.run(150, deadline, () => (first.tick(), second.tick())));
    await first.reached;
    await subHost.daemon.kill9();
    subHost = await startLocal(server.address, { dataDir: subHost.dataDir, socket: subHost.socket });
    await second.reached;
    await pubHost.daemon.kill9();
    pubHost = await startLocal(server.address, { dataDir: pubHost.dataDir, socket: pubHost.socket });
    await Promise.all(running);

    const acked = publishers.flatMap((p) => p.acked);
    const got = [...early, ...(await drain(subHost.socket, subscriber, new Set(acked.map((a) => a.seq)), Date.now() + 30_000))];
    const v = verify(got, acked);
    console.log(`fault 2 (local brokers SIGKILL): ${JSON.stringify({ acked: acked.length, failed: publishers.reduce((n, p) => n + p.failed, 0), received: v.received, distinct: v.distinct, duplicates: v.duplicates })}`);
    expect(v.problems).toEqual([]);
    expect(acked.length).toBe(450);
  } finally {
    for (const p of publishers) p.close();
    await pubHost.daemon[Symbol.asyncDispose]();
    await subHost.daemon[Symbol.asyncDispose]();
    await server.daemon[Symbol.asyncDispose]();
    for (const d of [server.dataDir, pubHost.dataDir, subHost.dataDir]) fs.rmSync(d, { recursive: true, force: true });
  }
});

test("a publishing `mq pub --lines` SIGKILLed mid-stream: every line it reported as published is delivered", async () => {
  const server = await startServer();
  const local = await startLocal(server.address);
  try {
    const publisher = await createOn(local.socket);
    const subscriber = await createOn(local.socket);
    await mq(local.socket, ["sub", String(subscriber), TOPIC]);
    const proc = Bun.spawn([...mqCommand(), "pub", String(publisher), TOPIC, "--lines", "--json"], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "ignore",
      env: { ...process.env, MQ_SOCKET: local.socket },
    });
    // Feed lines and read the acknowledgements as they come; kill after 200 of them.
    const feeding = (async () => {
      for (let i = 0; i < 20_000 && proc.exitCode === null && proc.signalCode === null; i++) {
        proc.stdin.write(`line-${i}\n`);
        if (i % 100 === 99) await proc.stdin.flush();
      }
    })().catch(() => {});
    let text = "";
    const acked: Acked[] = [];
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk, { stream: true });
      const lines = text.split("\n");
      text = lines.pop()!;
      for (const l of lines) {
        const r = JSON.parse(l);
        acked.push({ seq: r.seq, payload: `line-${r.seq - 1}` });
      }
      if (acked.length >= 200 && proc.signalCode === null) proc.kill("SIGKILL");
    }
    await proc.exited;
    await feeding;
    expect(proc.signalCode).toBe("SIGKILL");
    const v = verify(await drain(local.socket, subscriber, new Set(acked.map((a) => a.seq)), Date.now() + 30_000), acked);
    console.log(`fault 2b (publisher SIGKILL): ${JSON.stringify({ acked: acked.length, received: v.received, distinct: v.distinct, duplicates: v.duplicates })}`);
    expect(v.problems).toEqual([]);
  } finally {
    await teardown([local.daemon, server.daemon], [server.dataDir, local.dataDir]);
  }
});
