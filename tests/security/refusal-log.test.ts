/**
 * A local broker's server address behind DNS round robin or a load balancer: the servers
 * behind it may refuse for two reasons, turn about (one has another token, one another
 * version). Each reason is logged once, not again at every turn (lib/log.ts, SaidOnce).
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Code, MqError } from "../../lib/errors.ts";
import { Connection } from "../../lib/wire/connection.ts";
import type { Frame } from "../../lib/wire/messages.ts";
import { startLocal, type LocalHandle } from "../e2e/harness.ts";

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

test("one server address refusing for two reasons turn about (a balancer): the local broker warns once per reason", async () => {
  const reasons = [
    new MqError(Code.AuthFailed, "wrong token (behind the balancer: server one)", { fatal: true }),
    new MqError(Code.VersionMismatch, "protocol version 99 only (behind the balancer: server two)", { fatal: true }),
  ];
  let hellos = 0;
  // A stand-in for the balanced address: the n-th hello is refused with reasons[n % 2].
  const balancer = Bun.listen<Connection>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        s.data = new Connection(
          s,
          {
            frame: (_conn: Connection, f: Frame) => {
              if (f.op !== "hello") throw new MqError(Code.BadRequest, "hello first");
              throw reasons[hellos++ % 2]!;
            },
          },
          { maxFrameBytes: 1 << 20, label: "balancer" },
        );
      },
      data: (s, d) => s.data.onData(d),
      drain: (s) => s.data.onDrain(),
      close: (s) => s.data.onClose(),
    },
  });
  cleanup.push(() => balancer.stop(true));
  const l: LocalHandle = await startLocal(`127.0.0.1:${balancer.port}`, { connected: false });
  cleanup.push(() => fs.rmSync(l.dataDir, { recursive: true, force: true }));
  cleanup.push(() => l.daemon[Symbol.asyncDispose]());
  // Reasons one, two, one (refusals are retried after 1 s, then 2 s); the fourth hello comes
  // after the third refusal was handled (and logged, if it was).
  for (let i = 0; i < 400 && hellos < 4; i++) await Bun.sleep(50);
  expect(hellos).toBeGreaterThanOrEqual(4);
  const warnings = l.daemon.log.split("\n").filter((line) => /WARN/.test(line) && /refused:/.test(line));
  expect(warnings).toHaveLength(2);
  expect(warnings[0]).toContain("refused: AUTH_FAILED: wrong token (behind the balancer: server one)");
  expect(warnings[1]).toContain("refused: VERSION_MISMATCH: protocol version 99 only (behind the balancer: server two)");
});
