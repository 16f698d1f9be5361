/**
 * Damaged topic logs through the compiled binary: a subscriber gets every surviving
 * message, learns how many were lost (`lost` in `recv --json`, a warning in text mode),
 * the server counts the loss, and no seq is handed out twice after the tail was lost.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { createOn, jsonLines, mq, restartServer, startLocal, startServer, teardown, tmpDir } from "./harness.ts";
import { flipByte, layout, RECORD_HEADER, segmentFiles, v1Record } from "../store/segment-kit.ts";

const line = (i: number) => `m-${String(i).padStart(3, "0")}-${"x".repeat(20 + (i % 13))}`;

describe("damaged topic logs", () => {
  test("a subscriber with its cursor before the damage gets every surviving message, sees `lost`, and new publishes do not reuse lost seqs", async () => {
    const serverData = tmpDir("mq-server-");
    let server = await startServer({ dataDir: serverData, args: ["--max-segment-bytes", "1K"] });
    const port = server.port;
    let local = await startLocal(server.address);
    try {
      const publisher = await createOn(local.socket);
      const subscriber = await createOn(local.socket);
      expect((await mq(local.socket, ["sub", String(subscriber), "dmg"])).code).toBe(0);
      const n = 60;
      const input = `${Array.from({ length: n }, (_, i) => line(i + 1)).join("\n")}\n`;
      expect((await mq(local.socket, ["pub", String(publisher), "dmg", "--lines"], { stdin: input })).code).toBe(0);
      const first = await mq(local.socket, ["recv", String(subscriber), "--follow", "--count", "10", "--json"]);
      expect(jsonLines(first.stdout).map((m) => m.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
      // Both stop cleanly: the cursor (11) is on disk and nothing is buffered at the local broker.
      expect(await local.daemon.stop()).toBe(0);
      expect(await server.daemon.stop()).toBe(0);

      const topicDir = path.join(serverData, "topics", "dmg");
      const files = segmentFiles(topicDir);
      expect(files.length).toBeGreaterThanOrEqual(4);
      const records = layout(topicDir);
      // One flipped byte in a record of a middle segment, past the cursor…
      const middle = records.filter((r) => r.file === files[2]);
      const victim = middle[Math.floor(middle.length / 2)]!;
      expect(victim.seq).toBeGreaterThan(11);
      flipByte(victim.file, victim.start + RECORD_HEADER + 4);
      // …and the newest segment cut at a record boundary: its last two records are gone.
      const newest = records.filter((r) => r.file === files.at(-1));
      expect(newest.length).toBeGreaterThanOrEqual(2);
      const cutAt = newest.at(-2)!;
      fs.truncateSync(cutAt.file, cutAt.start);
      const tailLost = n - cutAt.seq + 1;
      expect(tailLost).toBe(2);

      server = await startServer({ dataDir: serverData, port, args: ["--max-segment-bytes", "1K"] });
      expect(server.daemon.log).toMatch(new RegExp(`ERROR.*topic "dmg": lost 2 messages, seqs ${cutAt.seq}\\.\\.${n}`));
      local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });

      const surviving = Array.from({ length: n }, (_, i) => i + 1).filter((s) => s >= 11 && s !== victim.seq && s < cutAt.seq);
      const r = await mq(local.socket, ["recv", String(subscriber), "--follow", "--count", String(surviving.length), "--json"]);
      expect(r.code).toBe(0);
      const got = jsonLines(r.stdout);
      expect(got.map((m) => m.seq)).toEqual(surviving);
      expect(got.map((m) => m.data)).toEqual(surviving.map(line));
      // Exactly the message after the hole says how many are missing before it.
      expect(got.filter((m) => m.lost !== undefined).map((m) => [m.seq, m.lost])).toEqual([[victim.seq + 1, 1]]);
      expect(server.daemon.log).toMatch(new RegExp(`ERROR.*topic "dmg": lost 1 message, seq ${victim.seq}: damaged bytes`));
      // Nothing more is pending: the hole at the end does not stall or announce anything.
      expect((await mq(local.socket, ["recv", String(subscriber), "--wait", "0.3"])).code).toBe(3);

      const stats = JSON.parse((await mq(local.socket, ["stats", "--json"])).stdout);
      expect(stats.server.lost).toBe(1 + tailLost);
      const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
      expect(topics.find((t) => t.topic === "dmg")).toEqual({ topic: "dmg", subscribers: 1, messages: n - 1 - tailLost, lost: 1 + tailLost });

      // The next publish gets a seq above every seq ever acknowledged.
      const p = await mq(local.socket, ["pub", String(publisher), "dmg", "after", "--json"]);
      expect(JSON.parse(p.stdout)).toMatchObject({ seq: n + 1, subscribers: 1 });
      const last = await mq(local.socket, ["recv", String(subscriber), "--wait", "10"]);
      expect({ code: last.code, stdout: last.stdout }).toEqual({ code: 0, stdout: "after\n" });
      expect(last.stderr).toBe(`mq: warning: the server lost ${tailLost} messages of topic "dmg" before seq ${n + 1} (damaged storage, or deleted by the server's hard retention limit); they will not come\n`);
    } finally {
      await teardown([local.daemon, server.daemon], [serverData, local.dataDir]);
    }
  });

  test("after the tail was lost, a subscriber that had received it gets every new message (none is taken for a duplicate)", async () => {
    const serverData = tmpDir("mq-server-");
    let server = await startServer({ dataDir: serverData });
    // This local broker stays up across the server's restart: it remembers the seqs it saw.
    const local = await startLocal(server.address);
    try {
      const publisher = await createOn(local.socket);
      const subscriber = await createOn(local.socket);
      await mq(local.socket, ["sub", String(subscriber), "tail"]);
      const batch = (from: number) => `${Array.from({ length: 60 }, (_, i) => line(from + i)).join("\n")}\n`;
      expect((await mq(local.socket, ["pub", String(publisher), "tail", "--lines"], { stdin: batch(1) })).code).toBe(0);
      const before = await mq(local.socket, ["recv", String(subscriber), "--follow", "--count", "60", "--json"]);
      expect(jsonLines(before.stdout).map((m) => m.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      // The last 50 records are gone from the disk.
      server = await restartServer(server, [local], {
        between: () => {
          const records = layout(path.join(serverData, "topics", "tail"));
          fs.truncateSync(records[10]!.file, records[10]!.start);
        },
      });

      const p = await mq(local.socket, ["pub", String(publisher), "tail", "--lines", "--json"], { stdin: batch(61) });
      expect(p.code).toBe(0);
      expect(jsonLines(p.stdout).map((r) => [r.seq, r.subscribers])).toEqual(Array.from({ length: 60 }, (_, i) => [61 + i, 1]));
      const after = await mq(local.socket, ["recv", String(subscriber), "--follow", "--count", "60", "--json"]);
      const got = jsonLines(after.stdout);
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 60 }, (_, i) => 61 + i));
      expect(got.map((m) => m.data)).toEqual(Array.from({ length: 60 }, (_, i) => line(61 + i)));
      // It had received 11..60 before they were lost: nothing is missing for it.
      expect(got.filter((m) => m.lost !== undefined)).toEqual([]);
      expect((await mq(local.socket, ["recv", String(subscriber), "--wait", "0.3"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, server.daemon], [serverData, local.dataDir]);
    }
  });

  test("a data directory written by mq 0.1 (segment format 1) is converted at start and served", async () => {
    const serverData = tmpDir("mq-server-");
    const topicDir = path.join(serverData, "topics", "old");
    fs.mkdirSync(topicDir, { recursive: true, mode: 0o700 });
    const records = Array.from({ length: 5 }, (_, i) => v1Record(i + 1, Date.UTC(2026, 0, 1) + i, Buffer.from(line(i + 1))));
    fs.writeFileSync(path.join(topicDir, `${"1".padStart(20, "0")}.log`), Buffer.concat(records), { mode: 0o600 });
    const server = await startServer({ dataDir: serverData });
    const local = await startLocal(server.address);
    try {
      expect(server.daemon.log).toMatch(/topic "old": converted segment 0+1\.log to format 2 \(5 records\)/);
      const reader = await createOn(local.socket);
      await mq(local.socket, ["sub", String(reader), "old", "--from", "earliest"]);
      const r = await mq(local.socket, ["recv", String(reader), "--follow", "--count", "5", "--json"]);
      expect(jsonLines(r.stdout).map((m) => [m.seq, m.data, m.time])).toEqual(Array.from({ length: 5 }, (_, i) => [i + 1, line(i + 1), new Date(Date.UTC(2026, 0, 1) + i).toISOString()]));
      const p = await mq(local.socket, ["pub", String(reader), "old", "new", "--json"]);
      expect(JSON.parse(p.stdout).seq).toBe(6);
    } finally {
      await teardown([local.daemon, server.daemon], [serverData, local.dataDir]);
    }
  });
});
