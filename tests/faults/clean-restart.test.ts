/**
 * SPEC §3: no duplicate after a clean (SIGTERM) restart. Messages a client received and
 * acknowledged from the local broker's buffer while the server was away: the server has not
 * heard of those acks. A local broker stopped cleanly then kept them (DATA/unsent-acks.json)
 * and its next run neither delivers them again nor loses what came after.
 */
import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MqClient } from "../../lib/client/index.ts";
import { createOn, jsonLines, mq, startLocal, startServer, teardown, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";

let server: ServerHandle | undefined;
let local: LocalHandle | undefined;

afterEach(async () => {
  await teardown([local?.daemon, server?.daemon].filter((d) => d !== undefined), [server?.dataDir, local?.dataDir].filter((d) => d !== undefined));
  server = local = undefined;
});

async function recvSeqs(socket: string, id: number, count: number): Promise<number[]> {
  const r = await mq(socket, ["recv", String(id), "--count", String(count), "--json"]);
  return jsonLines(r.stdout).map((m) => m.seq as number);
}

test("acks made while the server was away survive a clean stop of the local broker: none of those messages comes again (500 did), none after them is lost", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const sub = await createOn(local.socket);
  const pub = await createOn(local.socket);
  expect((await mq(local.socket, ["sub", String(sub), "away"])).code).toBe(0);
  const lines = Array.from({ length: 3000 }, (_, i) => String(i + 1)).join("\n");
  expect((await mq(local.socket, ["pub", String(pub), "away", "--lines"], { stdin: lines })).code).toBe(0);
  expect(await recvSeqs(local.socket, sub, 1)).toEqual([1]);
  // The server stops cleanly; the local broker keeps serving its buffer.
  expect(await server.daemon.stop()).toBe(0);
  await local.daemon.waitFor(/lost the server/);
  const away = await recvSeqs(local.socket, sub, 500);
  expect(away.length).toBeGreaterThan(0);
  const last = away.at(-1)!;
  expect(away).toEqual(Array.from({ length: last - 1 }, (_, i) => i + 2));
  // Then the local broker stops cleanly too, and keeps those acks.
  expect(await local.daemon.stop()).toBe(0);
  const kept = JSON.parse(fs.readFileSync(path.join(local.dataDir, "unsent-acks.json"), "utf8"));
  expect(kept).toEqual({ [String(sub)]: { away: last } });
  server = await startServer({ dataDir: server.dataDir, port: server.port });
  local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
  // Sent on the first session, and the file is gone.
  expect(fs.existsSync(path.join(local.dataDir, "unsent-acks.json"))).toBe(false);
  const after: number[] = [];
  for (let i = 0; i < 20 && after.length < 3000 - last; i++) after.push(...(await recvSeqs(local.socket, sub, 1000)));
  expect(after).toEqual(Array.from({ length: 3000 - last }, (_, i) => last + 1 + i));
  // A third clean restart, the server up all along: nothing comes again, nothing is kept.
  expect(await local.daemon.stop()).toBe(0);
  expect(fs.existsSync(path.join(local.dataDir, "unsent-acks.json"))).toBe(false);
  local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
  const again = await mq(local.socket, ["recv", String(sub), "--count", "10", "--json"]);
  expect(again.code).toBe(3);
});

test("a damaged unsent-acks.json is reported and left out: the local broker starts, and delivers (again) rather than loses", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const sub = await createOn(local.socket);
  const pub = await createOn(local.socket);
  expect((await mq(local.socket, ["sub", String(sub), "damaged"])).code).toBe(0);
  expect((await mq(local.socket, ["pub", String(pub), "damaged", "one"])).code).toBe(0);
  expect(await local.daemon.stop()).toBe(0);
  for (const bad of ["{not json", '{"x": {"damaged": 1}}', `{"${sub}": {"damaged": -4}}`, "[]"]) {
    fs.writeFileSync(path.join(local.dataDir, "unsent-acks.json"), bad);
    local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
    await local.daemon.waitFor(/unsent-acks\.json: .*; left out/);
    expect((await mq(local.socket, ["topics"])).code).toBe(0);
    expect(await local.daemon.stop()).toBe(0);
  }
  local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
  expect(await recvSeqs(local.socket, sub, 10)).toEqual([1]);
});

test("a clean stop lets a client acknowledge the batch it holds (up to 1 s) and hands out nothing more: that batch does not come again", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const sub = await createOn(local.socket);
  const pub = await createOn(local.socket);
  expect((await mq(local.socket, ["sub", String(sub), "held"])).code).toBe(0);
  expect((await mq(local.socket, ["pub", String(pub), "held", "--lines"], { stdin: "1\n2\n3\n4\n5" })).code).toBe(0);
  const c = await MqClient.connect({ socket: local.socket });
  try {
    const follow = await c.follow(sub, { credits: 2 });
    const batch = await follow.next({ max: 2, waitMs: 5000 });
    expect(batch.messages.map((m) => m.seq)).toEqual([1, 2]);
    // The stop begins while the batch is being worked on; its ack comes a moment later.
    const stopped = local.daemon.stop();
    await Bun.sleep(200);
    await batch.ack();
    expect(await stopped).toBe(0);
  } finally {
    c.close();
  }
  local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
  // 1 and 2 were acknowledged: they came again when the stop closed the connection at once.
  expect(await recvSeqs(local.socket, sub, 10)).toEqual([3, 4, 5]);
});

test("a clean stop of the server lets a queue group member's client acknowledge what it holds (drain): that batch does not go back to the group and come again", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const worker = await createOn(local.socket);
  const pub = await createOn(local.socket);
  expect((await mq(local.socket, ["sub", String(worker), "jobs", "--group", "workers"])).code).toBe(0);
  expect((await mq(local.socket, ["pub", String(pub), "jobs", "--lines"], { stdin: "1\n2\n3\n4\n5" })).code).toBe(0);
  const c = await MqClient.connect({ socket: local.socket });
  try {
    const follow = await c.follow(worker, { credits: 2 });
    const batch = await follow.next({ max: 2, waitMs: 5000 });
    expect(batch.messages.map((m) => m.seq)).toEqual([1, 2]);
    // The server's stop begins while the batch is being worked on; its ack comes a moment later.
    const stopped = server.daemon.stop();
    await Bun.sleep(200);
    await batch.ack();
    expect(await stopped).toBe(0);
    await follow.close().catch(() => {});
  } finally {
    c.close();
  }
  server = await startServer({ dataDir: server.dataDir, port: server.port });
  await local.daemon.waitFor(/connected to the server .* after \d+ attempts/);
  // 1 and 2 were acknowledged: they went back to the group and came again when the server closed at once.
  const got: number[] = [];
  for (let i = 0; i < 20 && got.length < 3; i++) got.push(...(await recvSeqs(local.socket, worker, 10)));
  expect(got).toEqual([3, 4, 5]);
});
