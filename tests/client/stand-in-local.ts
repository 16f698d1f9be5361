/**
 * A stand-in local broker on a Unix socket, answering each frame with `frame` (a script of
 * the test): for the library against what a real local broker would not do on cue.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Connection } from "../../lib/wire/connection.ts";
import type { Frame } from "../../lib/wire/messages.ts";

/** Listens on a new socket; returns its path and the stop (the socket's directory removed). */
export function standInLocal(label: string, frame: (conn: Connection, f: Frame) => unknown): { socket: string; stop: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-stand-in-"));
  const socket = path.join(dir, "s.sock");
  const listener = Bun.listen<Connection>({
    unix: socket,
    socket: {
      open: (s) => {
        s.data = new Connection(s, { frame }, { maxFrameBytes: 1 << 20, label });
      },
      data: (s, d) => s.data.onData(d),
      drain: (s) => s.data.onDrain(),
      close: (s) => s.data.onClose(),
    },
  });
  return {
    socket,
    stop: () => {
      listener.stop(true);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
