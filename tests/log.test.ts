/** lib/log.ts: level names, colour choice, error text and the JSON line (the binary's formats: tests/e2e/logs.test.ts). */
import { afterAll, describe, expect, test } from "bun:test";
import { Code, MqError } from "../lib/errors.ts";
import { colorFor, configureLog, errorText, formatLine, logJsonOf, logLevelOf, SaidOnce } from "../lib/log.ts";

afterAll(() => configureLog());

const date = new Date("2026-11-30T15:42:51.123Z");
function json(args: unknown[], level = 0): Record<string, string> {
  return JSON.parse(formatLine({ level, tag: "t", args, date }));
}

/** A system error as Node and Bun throw them: a `code` and, for sockets, a bare message. */
function sysError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("logLevelOf", () => {
  test("takes the names (any case) and consola's numbers 0-5, nothing else", () => {
    expect(["error", "warn", "info", "debug", "trace", "DEBUG", "0", "4", "5"].map(logLevelOf)).toEqual([0, 1, 3, 4, 5, 4, 0, 4, 5]);
    expect(["", "6", "-1", "verbose", "4.5", "loud"].map(logLevelOf)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
  });

});

describe("logJsonOf", () => {
  test("takes 1/true and 0/false/empty; anything else is undefined (a usage error upstream)", () => {
    expect(["1", "true", "0", "false", "", undefined, "yes"].map(logJsonOf)).toEqual([true, true, false, false, false, false, undefined]);
  });
});

describe("colorFor", () => {
  test("follows the stream it writes to, FORCE_COLOR before NO_COLOR, TERM=dumb off", () => {
    const tty = { isTTY: true };
    const file = { isTTY: false };
    expect(colorFor(tty, { TERM: "xterm" })).toBe(true);
    expect(colorFor(file, { TERM: "xterm-256color", TMUX: "/tmp/tmux" })).toBe(false);
    expect(colorFor(tty, { TERM: "dumb" })).toBe(false);
    expect(colorFor(tty, { NO_COLOR: "1" })).toBe(false);
    expect(colorFor(tty, { NO_COLOR: "" })).toBe(true);
    expect(colorFor(file, { FORCE_COLOR: "1" })).toBe(true);
    expect(colorFor(file, { FORCE_COLOR: "1", NO_COLOR: "1" })).toBe(true);
    expect(colorFor(tty, { FORCE_COLOR: "0" })).toBe(false);
  });
});

describe("errorText", () => {
  test("names a bare socket error by its code; Node-style messages stay as they are", () => {
    expect(errorText(sysError("Failed to listen at 127.0.0.1", "EADDRINUSE"))).toBe("address already in use (EADDRINUSE)");
    expect(errorText(sysError("Failed to connect", "ECONNREFUSED"))).toBe("connection refused (ECONNREFUSED)");
    expect(errorText(sysError("ENOSPC: no space left on device, write", "ENOSPC"))).toBe("ENOSPC: no space left on device, write");
    expect(errorText("plain")).toBe("plain");
  });
});

describe("formatLine with --log-json", () => {
  test("one JSON object with time, level, tag, msg; an error joins the message after a colon", () => {
    configureLog({ json: true });
    expect(formatLine({ level: 3, tag: "server", args: ["listening on", "127.0.0.1:7600"], date })).toBe(
      '{"time":"2026-11-30T15:42:51.123Z","level":"info","tag":"server","msg":"listening on 127.0.0.1:7600"}\n',
    );
    expect(json(["topic a: cannot append:", sysError("ENOSPC: no space left on device, write", "ENOSPC")])).toEqual({
      time: "2026-11-30T15:42:51.123Z",
      level: "error",
      tag: "t",
      msg: "topic a: cannot append: ENOSPC: no space left on device, write",
      code: "ENOSPC",
    });
  });

  test("an expected error (MqError, a system error, or one caused by it) has no stack; a bug keeps it", () => {
    configureLog({ json: true });
    expect(json([new MqError(Code.UnknownId, "no client with id 7")]).stack).toBeUndefined();
    const wrapped = new MqError(Code.Unavailable, "Cannot listen on 127.0.0.1:7600: address already in use (EADDRINUSE)", { cause: sysError("Failed to listen at 127.0.0.1", "EADDRINUSE") });
    expect(json([wrapped])).toMatchObject({ msg: wrapped.message, code: "EADDRINUSE" });
    expect(json([wrapped]).stack).toBeUndefined();
    expect(json([new Error("read failed", { cause: sysError("Connection reset", "ECONNRESET") })]).stack).toBeUndefined();

    const bug = new TypeError("x is undefined");
    expect(json(["uncaught exception (kept running):", bug])).toMatchObject({ msg: "uncaught exception (kept running): x is undefined" });
    expect(json([bug]).stack).toMatch(/^ {4}at /);
    // INTERNAL wraps a bug: the bug's stack is shown.
    expect(json(["client 1: request 3 failed:", new MqError(Code.Internal, "internal error: x is undefined", { cause: bug })]).stack).toMatch(/^ {4}at /);
  });

  test("at debug level an expected error shows its stack too", () => {
    configureLog({ json: true, level: "debug" });
    expect(json([new MqError(Code.UnknownId, "no client with id 7")]).stack).toMatch(/^ {4}at /);
  });

  test("control characters from a peer's text are escaped: one event, one line", () => {
    configureLog({ json: false, color: false });
    const line = formatLine({ level: 1, tag: "server", args: ["local broker a\nb\x1b[31m: refused"], date });
    expect(line.split("\n")).toHaveLength(2);
    expect(line).toEndWith(" WARN  [server] local broker a\\nb\\x1b[31m: refused\n");
    expect(line).not.toContain("\x1b");
  });
});

describe("SaidOnce", () => {
  test("says a key's failure once per reason until it is forgotten; past max keys it starts over", () => {
    const said = new SaidOnce(2);
    expect([said.first("a", "refused"), said.first("a", "refused"), said.first("a", "timeout"), said.first("a", "timeout")]).toEqual([true, false, true, false]);
    // Two peers of one host failing for two reasons, turn about: each reason once, not at every turn.
    expect([said.first("a", "refused"), said.first("a", "timeout"), said.first("a", "refused")]).toEqual([false, false, false]);
    said.forget("a");
    expect(said.first("a", "timeout")).toBe(true);
    expect(said.first("b", "x")).toBe(true);
    // A third key: the two remembered are dropped (a peer cannot grow the map without bound).
    expect(said.first("c", "x")).toBe(true);
    expect(said.first("a", "timeout")).toBe(true);
    expect(said.first("a", "timeout")).toBe(false);
  });

  test("with one reason a key it says a reason again when it comes back after another (a local broker's history of one server)", () => {
    const said = new SaidOnce(1024, 1);
    expect([said.first("s", "expired"), said.first("s", "expired"), said.first("s", "unknown ca"), said.first("s", "expired")]).toEqual([true, false, true, true]);
  });

  test("with two reasons a key (a local broker's history of one server address), two reasons turn about are each said once", () => {
    const said = new SaidOnce(1024, 2);
    const turns = ["wrong token", "version 9", "wrong token", "version 9", "wrong token", "version 9"].map((why) => said.first("lb:7600", why));
    expect(turns).toEqual([true, true, false, false, false, false]);
    // A third reason is news, and so is one of the two before it when it comes back after that.
    expect([said.first("lb:7600", "expired"), said.first("lb:7600", "wrong token")]).toEqual([true, true]);
  });

  test("keeps at most 8 reasons a key: a peer cannot grow one key's set without bound", () => {
    const said = new SaidOnce();
    for (let i = 0; i < 8; i++) expect(said.first("h", `reason ${i}`)).toBe(true);
    expect(said.first("h", "reason 0")).toBe(false);
    expect(said.first("h", "reason 8")).toBe(true); // the ninth: the set starts over
    expect(said.first("h", "reason 0")).toBe(true);
  });
});
