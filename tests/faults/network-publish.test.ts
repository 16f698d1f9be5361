/**
 * One library client publishing to one topic with many batches in flight, through a local
 * broker 20 ms and 200 ms from its server (the test kit's delay proxy), the proxy cut
 * mid-stream: every publish is answered, seqs increase in publish order, the topic holds each
 * message once, in publish order; the local broker had several requests in flight at once
 * (`forwarding` in `mq stats`), and its forward window grows past its loopback size when the
 * publishes fill it. No assertion on time or rate.
 */
import { expect, test } from "bun:test";
import { MqClient, MqError, type PubResult } from "../../lib/client/index.ts";
import { MIN_FORWARD_BYTES } from "../../lib/local/forward-window.ts";
import { jsonLines, mq, startLocal, startServer, teardown } from "../e2e/harness.ts";
import { drain, verify } from "./fault-kit.ts";
import { TcpProxy } from "./tcp-proxy.ts";

const HEARTBEAT = ["--heartbeat-ms", "150", "--heartbeat-missed", "3"];

/**
 * Publishes `payloads` in order keeping up to `window` unanswered, letting the event loop
 * turn every `perTurn` publishes (each turn's publishes are one batch: small batches, many in
 * flight), calling `onAnswer` with the number answered so far; returns each publish's
 * outcome, in publish order.
 */
async function publishAll(client: MqClient, id: number, topic: string, payloads: Array<string | Uint8Array>, window: number, onAnswer: (answered: number) => void = () => {}, perTurn = Infinity): Promise<Array<PubResult | MqError>> {
  const outcomes = new Array<PubResult | MqError>(payloads.length);
  const waiting: Promise<void>[] = [];
  let answered = 0;
  for (let i = 0; i < payloads.length; i++) {
    waiting.push(
      client.publish(id, topic, payloads[i]!).then(
        (r) => void (outcomes[i] = r),
        (err) => void (outcomes[i] = err as MqError),
      ).then(() => onAnswer(++answered)),
    );
    if (waiting.length >= window) await waiting.shift();
    if ((i + 1) % perTurn === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(waiting);
  return outcomes;
}

/** Polls the local broker's stats every 20 ms until `stop` says so (at most 10 minutes); returns the largest of `pick`. */
function watchStats(socket: string, pick: (local: Record<string, number>) => number): { stop: () => Promise<number> } {
  let running = true;
  let most = 0;
  const watching = (async () => {
    const c = await MqClient.connect({ socket });
    try {
      for (let i = 0; running && i < 30_000; i++) {
        // Across the cut a stats request fails UNAVAILABLE (the server part is forwarded): skip it.
        const stats = await c.stats().catch((err) => {
          if (err instanceof MqError) return null;
          throw err;
        });
        if (stats) most = Math.max(most, pick(stats.local as unknown as Record<string, number>));
        await Bun.sleep(20);
      }
    } finally {
      c.close();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await watching;
      return most;
    },
  };
}

/** Every outcome a result, seqs 1, 2, … in publish order (none stored twice, none out of order). */
function expectInOrder(outcomes: Array<PubResult | MqError>): void {
  const errors = outcomes.filter((o) => o instanceof Error).map((e) => `${(e as MqError).code}: ${(e as MqError).message}`);
  expect(errors.slice(0, 5)).toEqual([]);
  const seqs = (outcomes as PubResult[]).map((r) => r.seq);
  const misplaced = seqs.map((s, i) => [i, s] as const).filter(([i, s]) => s !== i + 1);
  expect(misplaced.slice(0, 5)).toEqual([]);
}

for (const { rtt, count, window } of [
  { rtt: 20, count: 20_000, window: 4096 },
  { rtt: 200, count: 5_000, window: 2048 },
]) {
  test(`${rtt} ms away: ${count} publishes from one client to one topic, many batches in flight, the proxy cut mid-stream: all stored once, in publish order`, async () => {
    const server = await startServer({ args: HEARTBEAT });
    await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: server.port }, { delayMs: rtt / 2 });
    const local = await startLocal(proxy.address, { args: HEARTBEAT });
    const client = await MqClient.connect({ socket: local.socket });
    try {
      const id = await client.create();
      const payloads = Array.from({ length: count }, (_, i) => `m-${i}`);
      const forwarding = watchStats(local.socket, (l) => l.forwarding ?? 0);
      let cut = false;
      // The cut comes a quarter of a round trip after a quarter was answered: the batches sent
      // meanwhile are still in the proxy, lost with it, and sent again by the client, each on
      // its own retry timer: the server must store them in publish order all the same.
      const outcomes = await publishAll(
        client,
        id,
        "net.pubs",
        payloads,
        window,
        (answered) => {
          if (!cut && answered >= count / 4) {
            cut = true;
            setTimeout(() => proxy.cutAll(), rtt / 4);
          }
        },
        64,
      );
      const mostInFlight = await forwarding.stop();
      expect(cut).toBe(true);
      expectInOrder(outcomes);
      // One client, one topic: more than one request in flight at once is the pipeline.
      expect(mostInFlight).toBeGreaterThan(1);
      expect(proxy.connections).toBe(2);
      // What the topic holds: each payload once, at the seq its publish was answered with.
      const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
      expect(topics.find((t) => t.topic === "net.pubs")?.messages).toBe(count);
      const reader = await client.create();
      await client.subscribe(reader, ["net.pubs"], { from: "earliest" });
      const acked = (outcomes as PubResult[]).map((r, i) => ({ seq: r.seq, payload: payloads[i]! }));
      const got = await drain(local.socket, reader, new Set(acked.map((a) => a.seq)), Date.now() + 120_000);
      const verdict = verify(got, acked);
      expect(verdict.problems).toEqual([]);
      expect(verdict.distinct).toBe(count);
    } finally {
      client.close();
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  }, 300_000);
}

test("20 ms away: publishes that fill the forward window's bytes grow it past its loopback size; both topics stored in order", async () => {
  const server = await startServer({ args: HEARTBEAT });
  await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: server.port }, { delayMs: 10 });
  const local = await startLocal(proxy.address, { args: HEARTBEAT });
  const client = await MqClient.connect({ socket: local.socket });
  try {
    const id = await client.create();
    const stats = await client.stats();
    expect(stats.local.forward_window_bytes).toBe(MIN_FORWARD_BYTES);
    // 32 KiB each: 7 to a batch, 16 batches in flight per topic, two topics: about twice the 4 MiB window.
    const payloads = (tag: string) => Array.from({ length: 800 }, (_, i) => new Uint8Array(32 * 1024).fill(i % 251).map((b, k) => (k < 8 ? tag.charCodeAt(0) : b)));
    const [a, b] = await Promise.all([publishAll(client, id, "net.big.a", payloads("a"), 400), publishAll(client, id, "net.big.b", payloads("b"), 400)]);
    expectInOrder(a!);
    expectInOrder(b!);
    const after = (await client.stats()).local;
    expect(after.forward_window_bytes).toBeGreaterThan(MIN_FORWARD_BYTES);
    expect(after.forwarding).toBe(0);
  } finally {
    client.close();
    await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
  }
}, 300_000);
