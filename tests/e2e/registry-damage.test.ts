/**
 * Damaged registries through the compiled binary: one bad bit or a cut file in the server's
 * `clients`, a topic's `subscribers` or the local broker's `ids` costs nothing (the second
 * copy has it); a record damaged in both copies costs only that id, which then answers
 * UNKNOWN_ID saying why; no id is ever handed out twice; the previous format still opens.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { FileClientRegistry } from "../../lib/store/client-registry.ts";
import { copiesOf, flipBitInRecord, legacyBytes } from "../store/damage-kit.ts";
import { createOn, mq, startLocal, startServer, teardown, tmpDir, type LocalHandle, type ServerHandle } from "./harness.ts";

/**
 * The log lines of a daemon that contain `text` and are at ERROR level (matched by the
 * level word, not by the exact layout, which lib/log.ts owns).
 */
function errors(log: string, text: string): string[] {
  return log.split("\n").filter((l) => l.includes(text) && /\berror\b/i.test(l.replace(text, "")));
}

const identity = (local: LocalHandle) => fs.readFileSync(path.join(local.dataDir, "identity"), "utf8").trim();

/** Owners of global ids 1..n in a stopped server's registry (null: none), and whether each is marked lost. */
async function registryOf(dataDir: string, n: number): Promise<{ owners: Array<string | null>; lost: boolean[]; next: number }> {
  const reg = new FileClientRegistry(path.join(dataDir, "clients"));
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const out = { owners: ids.map((id) => reg.owner(id) ?? null), lost: ids.map((id) => reg.isLost(id)), next: reg.nextId };
  await reg.close();
  return out;
}

/**
 * A server and local broker A with id 1 subscribed to `topic` and id 2 to publish, one
 * message already received; then both stopped cleanly.
 */
async function prepared(topic: string): Promise<{ serverData: string; port: number; a: LocalHandle }> {
  const server = await startServer();
  const a = await startLocal(server.address);
  try {
    expect([await createOn(a.socket), await createOn(a.socket)]).toEqual([1, 2]);
    expect((await mq(a.socket, ["sub", "1", topic])).code).toBe(0);
    expect((await mq(a.socket, ["pub", "2", topic, "before"])).code).toBe(0);
    expect(await mq(a.socket, ["recv", "1", "--wait", "10"])).toEqual({ code: 0, stdout: "before\n", stderr: "" });
  } finally {
    expect(await a.daemon.stop()).toBe(0);
    expect(await server.daemon.stop()).toBe(0);
  }
  return { serverData: server.dataDir, port: server.port, a };
}

async function restart(p: { serverData: string; port: number; a: LocalHandle }): Promise<{ server: ServerHandle; a: LocalHandle }> {
  const server = await startServer({ dataDir: p.serverData, port: p.port });
  const a = await startLocal(server.address, { dataDir: p.a.dataDir, socket: p.a.socket });
  return { server, a };
}

describe("the server's registries damaged", () => {
  test("a bit flipped in the first record of a topic's `subscribers`: the subscriber survives from the copy and still receives", async () => {
    const p = await prepared("dmg.subs");
    const file = path.join(p.serverData, "topics", "dmg.subs", "subscribers");
    flipBitInRecord(file, 0);
    const { server, a } = await restart(p);
    try {
      expect(errors(server.daemon.log, `${file}: damaged bytes at 32..59; record 0 of 2 recovered from ${file}.mirror ({"s":1,"c":1})`)).toHaveLength(1);
      const pub = await mq(a.socket, ["pub", "2", "dmg.subs", "after", "--json"]);
      expect(JSON.parse(pub.stdout)).toEqual({ topic: "dmg.subs", seq: 2, subscribers: 1, created: false });
      expect(await mq(a.socket, ["recv", "1", "--wait", "10"])).toEqual({ code: 0, stdout: "after\n", stderr: "" });
    } finally {
      await teardown([a.daemon, server.daemon], [p.serverData, a.dataDir]);
    }
  });

  test.each([
    ["a bit flipped in its first record", (f: string) => flipBitInRecord(f, 0), "damaged bytes at"],
    ["truncated to 0 bytes", (f: string) => fs.truncateSync(f, 0), "empty (0 bytes)"],
  ])("`clients` %s: logged, recovered from the copy; subscriptions survive and no id goes to another broker", async (_name, damage, says) => {
    const p = await prepared("dmg.clients");
    const file = path.join(p.serverData, "clients");
    damage(file);
    const { server, a } = await restart(p);
    let b: LocalHandle | undefined;
    try {
      expect(errors(server.daemon.log, `${file}: ${says}`)).toHaveLength(1);
      expect(server.daemon.log).toContain(`recovered from ${file}.mirror`);
      expect(server.daemon.log).toContain(", 2 ids)");
      b = await startLocal(server.address);
      expect(await createOn(b.socket)).toBe(1);
      const pub = await mq(a.socket, ["pub", "2", "dmg.clients", "after", "--json"]);
      expect(JSON.parse(pub.stdout)).toMatchObject({ seq: 2, subscribers: 1 });
      expect(await mq(a.socket, ["recv", "1", "--wait", "10"])).toEqual({ code: 0, stdout: "after\n", stderr: "" });
      // Broker B's new id does not receive A's subscription (it would, had it got global id 1).
      expect(await mq(b.socket, ["recv", "1"])).toEqual({ code: 3, stdout: "", stderr: "" });
      await b.daemon.stop();
      await a.daemon.stop();
      await server.daemon.stop();
      expect(await registryOf(p.serverData, 3)).toEqual({ owners: [identity(a), identity(a), identity(b)], lost: [false, false, false], next: 4 });
    } finally {
      await teardown([...(b ? [b.daemon] : []), a.daemon, server.daemon], [p.serverData, a.dataDir, ...(b ? [b.dataDir] : [])]);
    }
  });

  test("the record of id 1 damaged in both copies of `clients`: id 1 answers UNKNOWN_ID (exit 1) saying its record was lost, never a silent exit 3; no id is reissued", async () => {
    const p = await prepared("dmg.lost");
    const file = path.join(p.serverData, "clients");
    for (const f of copiesOf(file)) flipBitInRecord(f, 0); // {c: 1, o: A}
    const { server, a } = await restart(p);
    let b: LocalHandle | undefined;
    try {
      expect(errors(server.daemon.log, `${file} and ${file}.mirror: record 0 of 2 damaged in both copies: what they recorded is lost`)).toHaveLength(1);
      expect(errors(server.daemon.log, "1 ids neither live nor known destroyed (1) are marked lost")).toHaveLength(1);
      expect(errors(server.daemon.log, "topic dmg.lost: subscriber id 1 (cursor 2) is dropped: client id 1 is no longer known: its record was lost")).toHaveLength(1);
      await a.daemon.waitFor(/the server lost the records/); // logged just after "connected"
      expect(errors(a.daemon.log, "the server lost the records of 1 ids of this host: 1 (global 1); they answer UNKNOWN_ID until destroyed")).toHaveLength(1);
      const lost = "mq: UNKNOWN_ID: client id 1 is no longer known: the server lost its record (global id 1; the server's DATA/clients was damaged); destroy it and create a new id\n";
      expect(await mq(a.socket, ["recv", "1"])).toEqual({ code: 1, stdout: "", stderr: lost });
      expect(await mq(a.socket, ["recv", "1", "--wait", "1"])).toEqual({ code: 1, stdout: "", stderr: lost });
      expect(await mq(a.socket, ["sub", "1", "dmg.other"])).toEqual({ code: 1, stdout: "", stderr: lost });
      // Id 2 is whole; the lost subscriber no longer counts.
      expect(JSON.parse((await mq(a.socket, ["pub", "2", "dmg.lost", "after", "--json"])).stdout)).toMatchObject({ seq: 2, subscribers: 0 });
      b = await startLocal(server.address);
      expect(await createOn(b.socket)).toBe(1);
      // Destroying the lost id is the way out; after that it is an ordinary unknown id.
      expect(await mq(a.socket, ["destroy", "1"])).toMatchObject({ code: 0, stderr: "" });
      expect(await mq(a.socket, ["recv", "1"])).toEqual({ code: 1, stdout: "", stderr: "mq: UNKNOWN_ID: no client with id 1\n" });
      expect(await createOn(a.socket)).toBe(3);
      await b.daemon.stop();
      await a.daemon.stop();
      await server.daemon.stop();
      expect(await registryOf(p.serverData, 4)).toEqual({ owners: [null, identity(a), identity(b), identity(a)], lost: [true, false, false, false], next: 5 });
    } finally {
      await teardown([...(b ? [b.daemon] : []), a.daemon, server.daemon], [p.serverData, a.dataDir, ...(b ? [b.dataDir] : [])]);
    }
  });
});

describe("ids the server no longer knows", () => {
  test("a server that came back without the id (a fresh data directory): once a pub is answered UNKNOWN_ID, recv of that id answers it too, not a silent exit 3", async () => {
    const first = await startServer();
    const a = await startLocal(first.address);
    let second: ServerHandle | undefined;
    try {
      expect(await createOn(a.socket)).toBe(1);
      expect((await mq(a.socket, ["sub", "1", "gone"])).code).toBe(0);
      expect(await first.daemon.stop()).toBe(0);
      second = await startServer({ port: first.port });
      await a.daemon.waitFor(/connected to the server[^]*connected to the server/);
      expect(await mq(a.socket, ["pub", "1", "gone", "x"])).toEqual({ code: 1, stdout: "", stderr: "mq: UNKNOWN_ID: no client with id 1\n" });
      await a.daemon.waitFor(/the server answered UNKNOWN_ID/);
      expect(errors(a.daemon.log, "id 1 (global 1): the server answered UNKNOWN_ID (no client with id 1); the id answers UNKNOWN_ID until destroyed")).toHaveLength(1);
      const gone = "mq: UNKNOWN_ID: client id 1 is no longer known to the server (global id 1): no client with id 1; destroy it and create a new id\n";
      expect(await mq(a.socket, ["recv", "1"])).toEqual({ code: 1, stdout: "", stderr: gone });
      expect(await mq(a.socket, ["destroy", "1"])).toMatchObject({ code: 0, stderr: "" });
      expect(await mq(a.socket, ["recv", "1"])).toEqual({ code: 1, stdout: "", stderr: "mq: UNKNOWN_ID: no client with id 1\n" });
    } finally {
      await teardown([a.daemon, ...(second ? [second.daemon] : []), first.daemon], [first.dataDir, a.dataDir, ...(second ? [second.dataDir] : [])]);
    }
  });
});

describe("the local broker's id table damaged", () => {
  test.each([
    ["a bit flipped in its first record", (f: string) => flipBitInRecord(f, 0), "damaged bytes at"],
    ["truncated to 0 bytes", (f: string) => fs.truncateSync(f, 0), "empty (0 bytes)"],
  ])("`ids` %s: logged, recovered from the copy; the ids still work and none is reissued", async (_name, damage, says) => {
    const p = await prepared("dmg.ids");
    const file = path.join(p.a.dataDir, "ids");
    damage(file);
    const { server, a } = await restart(p);
    try {
      expect(errors(a.daemon.log, `${file}: ${says}`)).toHaveLength(1);
      expect(a.daemon.log).toContain(`recovered from ${file}.mirror`);
      expect(a.daemon.log).toContain(", 2 ids)");
      expect((await mq(a.socket, ["pub", "2", "dmg.ids", "after"])).code).toBe(0);
      expect(await mq(a.socket, ["recv", "1", "--wait", "10"])).toEqual({ code: 0, stdout: "after\n", stderr: "" });
      expect(await createOn(a.socket)).toBe(3);
    } finally {
      await teardown([a.daemon, server.daemon], [p.serverData, a.dataDir]);
    }
  });

  test("the record of local id 1 damaged in both copies of `ids`: id 1 answers UNKNOWN_ID (exit 1) saying its record was lost; no local id is reissued", async () => {
    const p = await prepared("dmg.idlost");
    const file = path.join(p.a.dataDir, "ids");
    for (const f of copiesOf(file)) flipBitInRecord(f, 0); // {l: 1, g: 1}
    const { server, a } = await restart(p);
    try {
      expect(errors(a.daemon.log, `${file} and ${file}.mirror: record 0 of 2 damaged in both copies: what they recorded is lost`)).toHaveLength(1);
      expect(errors(a.daemon.log, "1 local ids neither mapped nor known destroyed (1) are marked lost")).toHaveLength(1);
      const lost = "mq: UNKNOWN_ID: client id 1 is no longer known: its record was lost when this host's id table (the local broker's DATA/ids) was damaged; create a new id\n";
      expect(await mq(a.socket, ["recv", "1"])).toEqual({ code: 1, stdout: "", stderr: lost });
      expect(await mq(a.socket, ["pub", "1", "dmg.idlost", "x"])).toEqual({ code: 1, stdout: "", stderr: lost });
      expect(await createOn(a.socket)).toBe(3);
      expect((await mq(a.socket, ["pub", "2", "dmg.idlost", "still mine"])).code).toBe(0);
    } finally {
      await teardown([a.daemon, server.daemon], [p.serverData, a.dataDir]);
    }
  });
});

describe("data directories of the previous format", () => {
  test("a server and a local broker whose `clients`, `subscribers` and `ids` are in the previous format open, convert and go on", async () => {
    const serverData = tmpDir("mq-server-");
    const localData = tmpDir("mq-local-");
    const me = "0f2b8c1e-5a8e-4c3b-9d57-3f4f2a9b6c10";
    // Written as the previous version laid them out: one file each, records from byte 0.
    fs.writeFileSync(path.join(serverData, "clients"), legacyBytes([{ c: 1, o: me }, { c: 2, o: me }]), { mode: 0o600 });
    fs.mkdirSync(path.join(serverData, "topics", "old.format"), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(serverData, "topics", "old.format", "subscribers"), legacyBytes([{ s: 1, c: 1 }]), { mode: 0o600 });
    fs.writeFileSync(path.join(localData, "identity"), `${me}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(localData, "ids"), legacyBytes([{ l: 1, g: 1 }, { l: 2, g: 2 }]), { mode: 0o600 });
    const server = await startServer({ dataDir: serverData });
    const a = await startLocal(server.address, { dataDir: localData });
    try {
      expect(server.daemon.log).toContain("; data " + serverData);
      expect(server.daemon.log).toContain(", 2 ids)");
      expect(server.daemon.log).toContain(`${path.join(serverData, "clients")}: converted from the previous format`);
      expect(a.daemon.log).toContain(`${path.join(localData, "ids")}: converted from the previous format`);
      expect(errors(server.daemon.log, "")).toEqual([]);
      expect(errors(a.daemon.log, "")).toEqual([]);
      const pub = await mq(a.socket, ["pub", "2", "old.format", "hello", "--json"]);
      expect(JSON.parse(pub.stdout)).toEqual({ topic: "old.format", seq: 1, subscribers: 1, created: false });
      expect(await mq(a.socket, ["recv", "1", "--wait", "10"])).toEqual({ code: 0, stdout: "hello\n", stderr: "" });
      expect(await createOn(a.socket)).toBe(3);
      for (const f of [path.join(serverData, "clients"), path.join(serverData, "topics", "old.format", "subscribers"), path.join(localData, "ids")]) {
        expect(fs.readFileSync(f).equals(fs.readFileSync(`${f}.mirror`))).toBe(true);
      }
      await a.daemon.stop();
      await server.daemon.stop();
      expect(await registryOf(serverData, 3)).toEqual({ owners: [me, me, me], lost: [false, false, false], next: 4 });
    } finally {
      await teardown([a.daemon, server.daemon], [serverData, localData]);
    }
  });
});
