/**
 * The libc calls of lib/store/fsutil.ts on this machine, and what the data-directory lock does
 * when they are out of reach: it refuses, never runs unlocked. (Across processes and under a
 * race: tests/e2e/restart.test.ts. Other platforms: tests/release and docs/release.md.)
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code, MqError } from "../../lib/errors.ts";
import { loadLibc, lockDataDir, pollFd, POLLERR, POLLOUT, readAtIntoSync, readAtSync, type Libc } from "../../lib/store/fsutil.ts";

const dirs: string[] = [];
function tmp(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-fsutil-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("lockDataDir", () => {
  test("lockDataDir refuses a directory locked through another open file, naming the holder's pid, and takes it once released", () => {
    const dir = tmp();
    const release = lockDataDir(dir, "mq server");
    expect(fs.readFileSync(path.join(dir, "lock"), "utf8")).toBe(`${process.pid}\n`);
    let err: unknown;
    try {
      lockDataDir(dir, "mq server");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MqError);
    expect((err as MqError).code).toBe(Code.Unavailable);
    expect((err as MqError).message).toBe(`Cannot use the data directory ${dir}: another mq server (pid ${process.pid}) is using it; stop it first or choose another --data`);
    release();
    lockDataDir(dir, "mq server")();
  });

  test("lockDataDir refuses to run unlocked when libc cannot be loaded, naming what it tried", () => {
    const dir = tmp();
    const noLibc = () => {
      try {
        return loadLibc("linux", ["libmq-no-such-libc.so.1"]);
      } catch (err) {
        return err as Error;
      }
    };
    expect(() => lockDataDir(dir, "mq local", noLibc)).toThrow(
      new RegExp(`^Cannot lock the data directory ${dir}: flock\\(2\\) is out of reach on ${process.platform}-${process.arch}: cannot load libc \\(libmq-no-such-libc\\.so\\.1: .+\\); mq local does not run on a data directory it cannot lock$`),
    );
    expect(fs.existsSync(path.join(dir, "lock"))).toBe(false);
  });

  test("lockDataDir says when flock fails for another reason than a holder (a file system without locks)", () => {
    const dir = tmp();
    const ENOLCK = 37;
    const failing: Libc = { flock: () => -1, poll: () => 0, getrlimit: () => -1, execve: () => -1, errno: () => ENOLCK, EWOULDBLOCK: 11 };
    expect(() => lockDataDir(dir, "mq server", () => failing)).toThrow(
      `Cannot lock the data directory ${dir}: flock(2) failed with errno ${ENOLCK} (a file system without locks?); choose another --data`,
    );
  });
});

describe("loadLibc", () => {
  test("loadLibc opens this platform's libc", () => {
    const c = loadLibc();
    expect(typeof c.flock).toBe("function");
    expect(c.EWOULDBLOCK).toBe(process.platform === "darwin" ? 35 : 11);
  });

  test("loadLibc names a platform it has no libc for", () => {
    expect(() => loadLibc("win32")).toThrow("no libc is known for platform win32 (known: linux, darwin)");
  });
});

describe("pollFd", () => {
  test("pollFd reports POLLOUT on a writable file", () => {
    const fd = fs.openSync("/dev/null", "w");
    try {
      expect(pollFd(fd, POLLOUT, 0)).toBe(POLLOUT);
    } finally {
      fs.closeSync(fd);
    }
  });

  test("pollFd reports POLLERR on a pipe whose reader is gone", () => {
    const fifo = path.join(tmp(), "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const writer = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    try {
      expect(pollFd(writer, POLLOUT, 0)).toBe(POLLOUT);
      fs.closeSync(reader);
      expect(pollFd(writer, 0, 0)! & POLLERR).toBe(POLLERR);
    } finally {
      fs.closeSync(writer);
    }
  });
});

describe("reads at a position", () => {
  test("readAtIntoSync fills the caller's buffer and gives a view of what was read: all of it, or less at the end of the file", () => {
    const file = path.join(tmp(), "f");
    fs.writeFileSync(file, Buffer.from("0123456789"));
    const fd = fs.openSync(file, "r");
    try {
      const buf = new Uint8Array(8);
      const a = readAtIntoSync(fd, buf, 8, 0);
      expect(a.buffer).toBe(buf.buffer);
      expect(Buffer.from(a).toString()).toBe("01234567");
      const b = readAtIntoSync(fd, buf, 4, 2); // shorter than the buffer
      expect(Buffer.from(b).toString()).toBe("2345");
      const c = readAtIntoSync(fd, buf, 8, 7); // past the end: 3 bytes
      expect(Buffer.from(c).toString()).toBe("789");
      expect(readAtIntoSync(fd, buf, 8, 10).length).toBe(0);
      expect(Buffer.from(readAtSync(fd, 20, 5)).toString()).toBe("56789");
    } finally {
      fs.closeSync(fd);
    }
  });
});
