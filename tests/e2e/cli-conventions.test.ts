/**
 * Shell conventions of the compiled CLI: version, help, completion, short flags, "did you
 * mean", conflicting flags, size flags, the terminal hint of `pub`, and the messages a user
 * reads when something is off.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { jsonLines, mq, mqCommand, startCluster, startLocal, startServer, teardown, tmpDir } from "./harness.ts";

/** No broker is needed (or reachable): these are decided before any connection. */
const offline = (args: string[], options: Parameters<typeof mq>[2] = {}) => mq("/nonexistent/mq.sock", args, options);
const ESC = "\x1b";
/** A terminal-ish environment that once made escapes leak into files. */
const colourfulEnv = { TERM: "xterm-256color", TMUX: "/tmp/tmux-0/default,1,0", COLORTERM: "truecolor" };

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster({ serverArgs: ["--max-message-bytes", "1K"] });
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

describe("mq version", () => {
  test("`mq version`, `--version` and `-v` print the package version", async () => {
    for (const args of [["version"], ["--version"], ["-v"]]) {
      const r = await offline(args);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout).toStartWith(`mq ${pkg.version} (bun `);
    }
    const j = await offline(["version", "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({ mq: pkg.version, platform: `${process.platform}-${process.arch}` });
  });
});

describe("mq help", () => {
  test("`mq help`, `mq --help` and no arguments list every command, with no escape codes off a terminal", async () => {
    const outputs = await Promise.all([["help"], ["--help"], []].map((a) => offline(a, { env: colourfulEnv })));
    for (const r of outputs) {
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain(ESC);
      for (const name of ["create", "pub", "sub", "unsub", "recv", "destroy", "topics", "stats", "bench", "server", "local", "up", "help", "version", "completion"]) {
        expect(r.stdout).toMatch(new RegExp(`^  ${name}\\b`, "m"));
      }
    }
    expect(outputs[1]!.stdout).toBe(outputs[0]!.stdout);
  });

  test("`mq help recv` equals `mq recv --help` and lists the short flags", async () => {
    const a = await offline(["help", "recv"], { env: colourfulEnv });
    const b = await offline(["recv", "--help"], { env: colourfulEnv });
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).not.toContain(ESC);
    for (const flag of ["-f, --follow", "-n, --count N", "-w, --wait SECONDS", "-j, --json", "-s, --socket PATH"]) expect(a.stdout).toContain(flag);
  });

  test("sub and unsub show that several topics are taken; server shows its defaults", async () => {
    expect((await offline(["sub", "--help"])).stdout).toContain("Usage: mq sub ID TOPIC... [options]");
    expect((await offline(["help", "unsub"])).stdout).toContain("Usage: mq unsub ID TOPIC... [options]");
    const server = (await offline(["server", "--help"])).stdout;
    expect(server).toMatch(/--max-message-bytes SIZE\s+largest message accepted \(K\/M\/G\) \(default 1M\)/);
    expect(server).toMatch(/--fsync POLICY\s+always \| interval \| never \(default always\)/);
  });

  test("help for an unknown command is bad usage with a suggestion", async () => {
    const r = await offline(["help", "recieve"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command \"recieve\"; did you mean `mq recv`?");
  });
});

describe("did you mean", () => {
  test("a mistyped command or option exits 2 and names the closest one", async () => {
    const cmd = await offline(["recvv", "3"]);
    expect(cmd).toMatchObject({ code: 2, stdout: "" });
    expect(cmd.stderr).toContain("did you mean `mq recv`?");
    const opt = await offline(["recv", "3", "--folow"]);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain("unknown option --folow for `mq recv`; did you mean --follow?");
    const far = await offline(["qwertyuiop"]);
    expect(far.code).toBe(2);
    expect(far.stderr).not.toContain("did you mean");
  });
});

describe("short flags", () => {
  test("-n, -j, -w and -s work like their long forms, also combined", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "short.flags"]);
    await cluster.run(["pub", String(id), "short.flags", "--lines"], { stdin: "a\nb\nc\n" });
    // -s instead of MQ_SOCKET
    const r = await mq(null, ["recv", String(id), "-n", "2", "-j", "-s", cluster.local.socket]);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout).map((m) => m.data)).toEqual(["a", "b"]);
    const rest = await cluster.run(["recv", String(id), "-jn5"]);
    expect(jsonLines(rest.stdout).map((m) => m.data)).toEqual(["c"]);
    const idle = await cluster.run(["recv", String(id), "-w", "0.2"]);
    expect(idle).toMatchObject({ code: 3, stdout: "" });
  });

  test("an unknown short flag is bad usage", async () => {
    const r = await offline(["recv", "3", "-x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option -x for `mq recv`");
  });
});

describe("conflicting and ignored flags are bad usage (exit 2), before any connection", () => {
  test.each([
    [["recv", "3", "--raw", "--json"], "--raw and --json cannot be used together"],
    [["pub", "3", "t", "hello", "--lines"], "MESSAGE and --lines cannot be used together"],
    [["pub", "3", "t", "hello", "--raw"], "MESSAGE and --raw cannot be used together"],
    [["pub", "3", "t", "--raw", "--lines"], "--raw and --lines cannot be used together"],
    [["server", "--max-message-bytes", "0"], "--max-message-bytes must be at least 1 byte"],
    [["server", "--max-message-bytes", "1Q"], "--max-message-bytes must be a size like"],
    [["completion", "tcsh"], 'unknown shell "tcsh"'],
    [["recv", "3", "-json"], "unknown option -json for `mq recv`; did you mean --json?"],
    [["recv", "3", "--json=no"], '--json is a switch: give --json or --no-json, not "--json=no"'],
    [["recv"], "`mq recv` needs ID: client id (from mq create)"],
    // An empty $id (`mq sub $id orders` → `mq sub orders`): the ID is named as missing, not the topic.
    [["sub", "orders"], '`mq sub` needs ID first, then TOPIC: got "orders" where the ID goes (an empty $id?'],
    [["pub", "orders"], '`mq pub` needs ID first, then TOPIC: got "orders" where the ID goes'],
    [["sub", "3"], "`mq sub` needs TOPIC: topic names or patterns"],
    [["sub", "3x"], '`mq sub` needs ID first, then TOPIC: got "3x" where the ID goes (ids are positive integers'],
    [["server", "--max-message-bytes", "5G"], "--max-message-bytes must be at most 1G"],
    [["pub", "3", "t", "-hello"], 'unknown option -h in -hello for `mq pub` (to pass an argument that starts with "-", put it after --)'],
    // Numbers past 2^53 - 1 lose their last digits: refused here, naming the value, not sent on rounded.
    [["sub", "3", "t", "--from", "9007199254740993"], '--from must be "earliest", "latest" or a seq from 1 to 9007199254740991, got "9007199254740993"'],
    [["recv", "3", "--wait", "1e300"], '--wait must be a number of seconds from 0 to 9007199254740, got "1e300"'],
    [["pub", "3", "t", "x", "--retry-for", "1e300"], '--retry-for must be a number of seconds from 0 to 9007199254740, got "1e300"'],
    [["sub", "3", "t", "--since", "99999999999999999999d"], '--since "99999999999999999999d" is too long: at most 9007199254740991 ms'],
    // The reason, when that is what is wrong: it said "must be a positive integer" of a positive integer.
    [["recv", "9007199254740993"], 'ID must be a positive integer (the output of `mq create`), got "9007199254740993": it is above 9007199254740991 (2^53 - 1)'],
    [["recv", "3", "--count", "9007199254740993"], 'got "9007199254740993": it is above 9007199254740991 (2^53 - 1)'],
    // Seconds are plain decimals, as the integer options: Number() took these.
    [["recv", "3", "--wait", "0x2"], '--wait must be a number of seconds from 0 to 9007199254740, got "0x2"'],
    [["recv", "3", "--wait", " 2"], '--wait must be a number of seconds from 0 to 9007199254740, got " 2"'],
    [["pub", "3", "t", "x", "--retry-for", "Infinity"], '--retry-for must be a number of seconds from 0 to 9007199254740, got "Infinity"'],
  ])("mq %p", async (args, message) => {
    const r = await offline(args);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toContain("UNAVAILABLE");
  });
});

describe("size flags", () => {
  test("--max-message-bytes takes K/M/G like the other size flags: 1K is 1024 bytes", async () => {
    const id = await cluster.create();
    const fits = await cluster.run(["pub", String(id), "size.flag", "x".repeat(1024)]);
    expect(fits.code).toBe(0);
    const over = await cluster.run(["pub", String(id), "size.flag", "x".repeat(1025)]);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain("MESSAGE_TOO_LARGE");
    expect(over.stderr).toContain("1024");
  });
});

describe("mq pub", () => {
  test("the no-subscriber warning says the message is kept, and a later --from earliest gets it", async () => {
    const id = await cluster.create();
    const r = await cluster.run(["pub", String(id), "warn.kept", "first"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('topic "warn.kept" is new and has no subscribers yet: the message is stored');
    expect(r.stderr).toContain("--from earliest");
    expect(r.stderr).not.toContain("nobody will receive");
    await cluster.run(["sub", String(id), "warn.kept", "--from", "earliest"]);
    expect((await cluster.run(["recv", String(id)])).stdout).toBe("first\n");
  });

  test("--lines drops the \\r of CRLF line ends", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "crlf"]);
    expect((await cluster.run(["pub", String(id), "crlf", "--lines"], { stdin: "one\r\ntwo\r\nthree" })).code).toBe(0);
    const r = await cluster.run(["recv", String(id), "-n", "5", "-j"]);
    expect(jsonLines(r.stdout).map((m) => m.data)).toEqual(["one", "two", "three"]);
  });

  test.skipIf(!Bun.which("script"))("a terminal on standard input gets a hint on stderr, then the typed message is published (needs util-linux script)", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "tty.hint"]);
    const command = [...mqCommand(), "pub", String(id), "tty.hint"].map((a) => `'${a}'`).join(" ");
    const proc = Bun.spawn(["script", "-qec", command, "/dev/null"], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    try {
      // The pty merges stdout and stderr; wait for the hint before typing.
      let seen = "";
      const reader = proc.stdout.getReader();
      while (!seen.includes("Ctrl-D")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      expect(seen).toContain("mq: warning: reading the message from the terminal");
      proc.stdin.write("typed at a terminal\n\x04");
      await proc.stdin.flush();
      expect(await proc.exited).toBe(0);
      reader.releaseLock();
    } finally {
      clearTimeout(killer);
      proc.kill("SIGKILL");
    }
    expect((await cluster.run(["recv", String(id)])).stdout).toBe("typed at a terminal\n");
  });

  test("--lines while the server stays down past --retry-for: what was not acknowledged, one error line, no stack traces, exit 4", async () => {
    const server = await startServer();
    const local = await startLocal(server.address);
    try {
      const id = Number((await mq(local.socket, ["create"])).stdout);
      await server.daemon.stop();
      const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}`).join("\n");
      const r = await mq(local.socket, ["pub", String(id), "down", "--lines", "--retry-for", "1"], { stdin: lines });
      expect(r.code).toBe(4);
      // The server was down from the start: the local broker sent nothing on, so nothing "may be stored".
      expect(r.stderr.trim().split("\n")).toEqual([
        "mq: warning: line 1 was not stored, nor any line after it: nothing was stored; give --msg-id KEY to make a run that can be repeated safely",
        expect.stringMatching(/^mq: UNAVAILABLE: /),
      ]);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });
});

describe("mq pub when its stdout reader goes away", () => {
  test("`mq pub --lines | head -1` still publishes every line, quietly, exit 0", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "pub.headless"]);
    const input = `${Array.from({ length: 3000 }, (_, i) => `line ${i + 1}`).join("\n")}\n`;
    const pub = [...mqCommand(), "pub", String(id), "pub.headless", "--lines"].map((a) => `'${a}'`).join(" ");
    const proc = Bun.spawn(["sh", "-c", `{ ${pub}; echo "pub exit $?" >&2; } | head -1`], {
      stdin: new Blob([input]),
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, MQ_SOCKET: cluster.local.socket },
    });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(killer);
    expect(out).toBe("pub.headless: seq 1, 1 subscriber\n");
    expect(err).toBe("pub exit 0\n");
    const got = await cluster.run(["recv", String(id), "-n", "5000"]);
    expect(got.stdout).toBe(input);
  }, 90_000);
});

describe("mq recv into a full disk", () => {
  test.skipIf(!fs.existsSync("/dev/full"))("says it cannot write standard output, exits 1, and leaves the message pending (needs /dev/full)", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "full.stdout"]);
    await cluster.run(["pub", String(id), "full.stdout", "kept"]);
    const recv = [...mqCommand(), "recv", String(id)].map((a) => `'${a}'`).join(" ");
    const proc = Bun.spawn(["sh", "-c", `${recv} > /dev/full`], { stdout: "ignore", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(killer);
    expect(code).toBe(1);
    expect(err).toStartWith("mq: error: Cannot write to standard output: ");
    expect(err).toContain("ENOSPC");
    expect((await cluster.run(["recv", String(id)])).stdout).toBe("kept\n");
  });
});

describe("mq local start errors name the socket and the fix", () => {
  test("a socket directory that cannot be made, and a socket name too long for a Unix socket", async () => {
    const dir = tmpDir("mq-socket-errors-");
    try {
      const cases: Array<[string, string]> = [
        ["/proc/nope/x.sock", "Cannot make the socket directory /proc/nope: "],
        [path.join(dir, `${"y".repeat(120)}.sock`), "a Unix socket path may hold 107"],
      ];
      for (const [socket, says] of cases) {
        const r = await mq(null, ["local", "--socket", socket, "--data", path.join(dir, "data"), "--server", "127.0.0.1:1"], { timeoutMs: 15_000 });
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(says);
        expect(r.stderr).toContain("choose another --socket");
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("mq unsub", () => {
  test("says when the id was not subscribed, in text and --json", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "unsub.real"]);
    const r = await cluster.run(["unsub", String(id), "unsub.real", "unsub.never"]);
    expect(r).toMatchObject({ code: 0, stdout: `unsubscribed ${id} from unsub.real\n${id} was not subscribed to unsub.never\n` });
    const j = await cluster.run(["unsub", String(id), "unsub.real", "--json"]);
    expect(jsonLines(j.stdout)).toEqual([{ topic: "unsub.real", unsubscribed: false }]);
  });
});

describe("mq completion", () => {
  const script = async (shell: string) => {
    const r = await offline(["completion", shell]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const dir = tmpDir("mq-completion-");
    const file = path.join(dir, `mq.${shell}`);
    fs.writeFileSync(file, r.stdout);
    return { file, dir, text: r.stdout };
  };

  test("bash: the script parses (bash -n) and completes commands, options and choices", async () => {
    const { file, dir } = await script("bash");
    try {
      expect(Bun.spawnSync(["bash", "-n", file]).exitCode).toBe(0);
      const complete = (words: string[]) => {
        const program = `source '${file}'; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _mq; printf '%s\\n' "\${COMPREPLY[@]}"`;
        const r = Bun.spawnSync(["bash", "-c", program], { env: { PATH: process.env.PATH ?? "", MQ_SOCKET: "/nonexistent/mq.sock" } });
        return r.stdout.toString().trim().split("\n");
      };
      expect(complete(["mq", "re"])).toEqual(["recv"]);
      expect(complete(["mq", "recv", "3", "--fo"])).toEqual(["--follow"]);
      expect(complete(["mq", "server", "--fsync", ""])).toEqual(["always", "interval", "never"]);
      expect(complete(["mq", "completion", "f"])).toEqual(["fish"]);
      // Options whose value is a path complete files, and only those (docs/cli.md, completion).
      for (const cmd of ["server", "local", "up"]) {
        for (const option of ["--config", "--data", "--token-file"]) expect(complete(["mq", cmd, option, `${dir}/mq.`])).toEqual([file]);
      }
      expect(complete(["mq", "local", "--tls-ca", `${dir}/mq.`])).toEqual([file]);
      for (const option of ["--max-open-files", "--dedupe-max-keys", "--local-http", "--listen"]) {
        expect(complete(["mq", "up", option, `${dir}/mq.`])).toEqual([""]);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.skipIf(!Bun.which("zsh"))("zsh: the script parses (zsh -n; .ci/run installs zsh)", async () => {
    const { file, dir, text } = await script("zsh");
    expect(text).toStartWith("#compdef mq");
    expect(Bun.spawnSync(["zsh", "-n", file]).exitCode).toBe(0);
    // _arguments splits a spec at unescaped colons: '--name[description]:message:action', so a
    // value hint such as host:port must come escaped, or zsh takes "port" for the action.
    const specs = text.split("\n").filter((line) => /^\s+'--[a-z-]+\[.*\]:/.test(line));
    expect(specs.length).toBeGreaterThan(20);
    for (const spec of specs) {
      const afterDescription = spec.replace(/\\./g, "").replace(/^[^\]]*\]/, "");
      expect({ spec, valuePart: /^:[^:]+:(\(.*\)|_files| )' \\$/.test(afterDescription) }).toEqual({ spec, valuePart: true });
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.skipIf(!Bun.which("fish"))("fish: the script parses and names every command (fish --no-execute; .ci/run installs fish)", async () => {
    const { file, dir, text } = await script("fish");
    expect(Bun.spawnSync(["fish", "--no-execute", file]).exitCode).toBe(0);
    for (const name of ["create", "pub", "recv", "server", "completion"]) expect(text).toContain(`-a ${name} `);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
