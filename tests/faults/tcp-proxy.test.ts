/** The test kit's TCP proxy: byte-exact, ordered, delayed on demand, and cut when told. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { createOn, jsonLines, mq, startLocal, startServer, teardown } from "../e2e/harness.ts";
import { TcpProxy } from "./tcp-proxy.ts";

/** An echo server that also counts what it received and whether the peer hung up. */
let echo: TCPSocketListener<undefined>;
let received = 0;
let hangups = 0;
beforeAll(() => {
  echo = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data: (s, chunk) => {
        received += chunk.length;
        s.write(chunk);
      },
      close: () => void hangups++,
    },
  });
});
afterAll(() => echo.stop(true));

/** Connects through `proxy`, sends `payload` in pieces and collects what comes back until `want` bytes or close. */
async function roundTrip(proxy: TcpProxy, payload: Uint8Array, want: number): Promise<{ back: Uint8Array; closed: boolean }> {
  const chunks: Uint8Array[] = [];
  let got = 0;
  const done = Promise.withResolvers<boolean>();
  const timer = setTimeout(() => done.resolve(false), 20_000);
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: proxy.port,
    socket: {
      data: (_s, chunk) => {
        chunks.push(new Uint8Array(chunk));
        got += chunk.length;
        if (got >= want) done.resolve(false);
      },
      close: () => done.resolve(true),
    },
  });
  // Small pieces, so the proxy's queue holds many chunks at once.
  for (let i = 0; i < payload.length; i += 1000) {
    let piece = payload.subarray(i, i + 1000);
    while (piece.length > 0) {
      const n = socket.write(piece);
      piece = piece.subarray(n);
      if (piece.length > 0) await Bun.sleep(1);
    }
  }
  const closed = await done.promise;
  clearTimeout(timer);
  socket.end();
  return { back: new Uint8Array(Buffer.concat(chunks)), closed };
}

describe("TcpProxy", () => {
  test("forwards every byte in order both ways with a 10 ms delay each way", async () => {
    await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: echo.port }, { delayMs: 10 });
    const payload = new Uint8Array(300_000).map((_, i) => (i * 31 + 7) & 0xff);
    const { back } = await roundTrip(proxy, payload, payload.length);
    expect(back.length).toBe(payload.length);
    expect(Buffer.compare(back, payload)).toBe(0);
  });

  test("cutNextAfter(N) passes exactly N bytes up, then closes both sides", async () => {
    await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: echo.port });
    const before = { received, hangups };
    proxy.cutNextAfter(10);
    const { back, closed } = await roundTrip(proxy, new Uint8Array(5000).fill(1), 5000);
    expect(closed).toBe(true);
    expect(received - before.received).toBe(10);
    expect(back.length).toBeLessThanOrEqual(10);
    for (let i = 0; i < 100 && hangups === before.hangups; i++) await Bun.sleep(20);
    expect(hangups).toBe(before.hangups + 1);
  });

  test("refusing closes new connections at once; cutAll closes the open ones", async () => {
    await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: echo.port });
    proxy.refusing = true;
    expect((await roundTrip(proxy, new Uint8Array([1, 2, 3]), 3)).closed).toBe(true);
    expect(proxy.connections).toBe(0);
    proxy.refusing = false;
    const open = roundTrip(proxy, new Uint8Array(100), 1_000_000);
    for (let i = 0; i < 100 && proxy.open === 0; i++) await Bun.sleep(20);
    expect(proxy.open).toBe(1);
    proxy.cutAll();
    expect((await open).closed).toBe(true);
  });
});

describe("mq through the proxy", () => {
  test("a local broker 20 ms from its server delivers in order, and comes back after its connection is cut", async () => {
    const server = await startServer();
    await using proxy = await TcpProxy.start({ hostname: "127.0.0.1", port: server.port }, { delayMs: 10 });
    const local = await startLocal(proxy.address);
    try {
      const id = await createOn(local.socket);
      await mq(local.socket, ["sub", String(id), "far"]);
      const lines = Array.from({ length: 500 }, (_, i) => `m${i + 1}`);
      expect((await mq(local.socket, ["pub", String(id), "far", "--lines"], { stdin: `${lines.join("\n")}\n` })).code).toBe(0);
      const got = await mq(local.socket, ["recv", String(id), "--follow", "--count", "500", "--json"], { timeoutMs: 60_000 });
      expect(jsonLines(got.stdout).map((m) => m.data)).toEqual(lines);

      proxy.cutAll();
      await local.daemon.waitFor(/lost the server/);
      // Publish until the local broker is back (a publish while it is away fails with exit 4).
      let accepted = "";
      for (let i = 0; i < 120 && !accepted; i++) {
        const r = await mq(local.socket, ["pub", String(id), "far", `after the cut #${i}`]);
        if (r.code === 0) accepted = `after the cut #${i}`;
        else await Bun.sleep(250);
      }
      expect(accepted).not.toBe("");
      const after = jsonLines((await mq(local.socket, ["recv", String(id), "--wait", "10", "--count", "200", "--json"])).stdout).map((m) => m.data);
      expect(after.at(-1)).toBe(accepted);
      for (const data of after) expect(data).toMatch(/^after the cut #\d+$/);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  }, 90_000);
});
