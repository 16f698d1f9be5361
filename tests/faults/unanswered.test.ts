/**
 * A publish the server took and did not answer (frozen with SIGSTOP): `mq pub` exits 4, as
 * SPEC says for a server it cannot reach in 5 s, but the message may be stored: the error
 * says so, and how to publish again without a copy. It said only "did not answer in time".
 * With the server down, the local broker never sends it: then the error says it was not stored.
 */
import { afterEach, expect, test } from "bun:test";
import { createOn, jsonLines, mq, startLocal, startServer, teardown, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";

let server: ServerHandle | undefined;
let local: LocalHandle | undefined;

afterEach(async () => {
  if (server && server.daemon.proc.exitCode === null && server.daemon.proc.signalCode === null) process.kill(server.daemon.pid, "SIGCONT");
  await teardown([local?.daemon, server?.daemon].filter((d) => d !== undefined), [server?.dataDir, local?.dataDir].filter((d) => d !== undefined));
  server = local = undefined;
});

test("mq pub to a frozen server: exit 4 saying the message may be stored, and it is", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const id = await createOn(local.socket);
  expect((await mq(local.socket, ["pub", String(id), "frozen", "before"])).code).toBe(0);
  process.kill(server.daemon.pid, "SIGSTOP");
  const r = await mq(local.socket, ["pub", String(id), "frozen", "during", "--msg-id", "k1"]);
  expect(r.code).toBe(4);
  expect(r.stderr).toStartWith("mq: UNAVAILABLE: ");
  expect(r.stderr).toContain("the message may have been stored all the same: check with `mq topics`, or publishing it again with --msg-id k1 stores it once");
  process.kill(server.daemon.pid, "SIGCONT");
  // Published again with the same id once the server is back: stored once in all (whether the first one was or not).
  let again = await mq(local.socket, ["pub", String(id), "frozen", "during", "--msg-id", "k1"]);
  for (let i = 0; i < 50 && again.code !== 0; i++) {
    await Bun.sleep(100);
    again = await mq(local.socket, ["pub", String(id), "frozen", "during", "--msg-id", "k1"]);
  }
  expect(again.code).toBe(0);
  const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
  expect(topics.find((t) => t.topic === "frozen")?.messages).toBe(2);
});

test("mq pub with the server down: exit 4 saying the message was not stored (the local broker had no server to send it to)", async () => {
  server = await startServer();
  local = await startLocal(server.address);
  const id = await createOn(local.socket);
  process.kill(server.daemon.pid, "SIGKILL");
  await server.daemon.exited;
  const one = await mq(local.socket, ["pub", String(id), "down", "hello"]);
  expect(one.code).toBe(4);
  expect(one.stderr).toStartWith("mq: UNAVAILABLE: ");
  // It said "the message may have been stored all the same".
  expect(one.stderr).toContain("; the message was not stored: publish it again once the server is reachable");
  expect(one.stderr).not.toContain("may have been stored");
  const lines = await mq(local.socket, ["pub", String(id), "down", "--lines", "--retry-for", "1"], { stdin: "a\nb\n" });
  expect(lines.code).toBe(4);
  expect(lines.stderr).toStartWith("mq: warning: line 1 was not stored, nor any line after it: nothing was stored; ");
  expect(lines.stderr).not.toContain("may be stored");
});
