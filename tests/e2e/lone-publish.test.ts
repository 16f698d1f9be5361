/**
 * One publish in flight under `--fsync always`: a lone publisher's commits sync on the event
 * loop, other shapes on the thread pool (lib/store/sync-place.ts). Whichever ran it, every
 * acknowledged publish is on disk: all are there after a SIGKILL, in order, exactly once.
 */
import { describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { createOn, jsonLines, memoryStore, mq, startUp, teardown } from "./harness.ts";

describe.skipIf(memoryStore)("one publish in flight, --fsync always", () => {
  test("lone, then two topics at once, then lone again: every acknowledged publish survives a SIGKILL of mq up", async () => {
    let up = await startUp({ args: ["--fsync", "always"] });
    const { dataDir, port } = up;
    try {
      const id = await createOn(up.socket);
      expect((await mq(up.socket, ["sub", String(id), "lone", "other"])).code).toBe(0);
      const c = await MqClient.connect({ socket: up.socket });
      const acked: Record<string, string[]> = { lone: [], other: [] };
      const publish = async (topic: string, data: string) => {
        const r = await c.publish(id, topic, data);
        expect(r.seq).toBe(acked[topic]!.length + 1);
        acked[topic]!.push(data);
      };
      await publish("lone", "first");
      // Past the rule's quiet time (100 ms): the commits of "lone" now sync on the event loop.
      await Bun.sleep(150);
      for (let i = 0; i < 100; i++) await publish("lone", `a${i}`);
      // Two topics in turn: back on the pool.
      for (let i = 0; i < 40; i++) await publish(i % 2 ? "other" : "lone", `b${i}`);
      await Bun.sleep(150);
      for (let i = 0; i < 100; i++) await publish("lone", `c${i}`);
      c.close();
      await up.daemon.kill9();

      up = await startUp({ dataDir, port, args: ["--fsync", "always"] });
      const total = acked.lone!.length + acked.other!.length;
      const r = await mq(up.socket, ["recv", String(id), "--follow", "--count", String(total), "--json"], { timeoutMs: 30_000 });
      const got = jsonLines(r.stdout);
      for (const topic of ["lone", "other"]) {
        const mine = got.filter((m) => m.topic === topic);
        expect(mine.map((m) => m.seq)).toEqual(Array.from({ length: acked[topic]!.length }, (_, i) => i + 1));
        expect(mine.map((m) => m.data)).toEqual(acked[topic]!);
      }
    } finally {
      await teardown([up.daemon], [dataDir]);
    }
  });
});
