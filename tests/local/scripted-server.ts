/**
 * A stand-in for the server on loopback, answering each frame with a script, and a real
 * LocalBroker connected to it: for tests of what a local broker does against servers that
 * differ from ours (older ones, ones announcing fewer ops).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalBroker } from "../../lib/local/local.ts";
import { Connection } from "../../lib/wire/connection.ts";
import { PROTOCOL_VERSION, type Frame, type Message } from "../../lib/wire/messages.ts";

export interface ScriptedServer {
  local: LocalBroker;
  /** The server's port, and the local broker's client socket. */
  port: number;
  socket: string;
  /** The server ends of the local broker's connections, oldest first (to push frames on). */
  connections: Connection[];
  stop(): Promise<void>;
}

/**
 * Starts the stand-in (`answer` returns a frame's reply fields, or throws its error) and a
 * LocalBroker against it, and waits until the local broker is connected (a hello answered).
 */
export async function localAgainst(label: string, answer: (frame: Frame) => unknown): Promise<ScriptedServer> {
  const connected = Promise.withResolvers<void>();
  const connections: Connection[] = [];
  const server = Bun.listen<Connection>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        const frame = (conn: Connection, f: Frame) => {
          const reply = answer(f);
          if (f.op === "hello") {
            conn.helloDone = true;
            connected.resolve();
          }
          return reply;
        };
        s.data = new Connection(s, { frame }, { maxFrameBytes: 1 << 20, label });
        connections.push(s.data);
      },
      data: (s, d) => s.data.onData(d),
      drain: (s) => s.data.onDrain(),
      close: (s) => s.data.onClose(),
    },
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-scripted-"));
  const socket = path.join(dir, "s.sock");
  const local = await LocalBroker.start({ socketPath: socket, server: { hostname: "127.0.0.1", port: server.port }, dataDir: dir });
  const stop = async () => {
    await local.stop();
    server.stop(true);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await connected.promise;
    for (let i = 0; i < 100 && !local.connected; i++) await Bun.sleep(10);
    if (!local.connected) throw new Error(`the local broker did not connect to ${label}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { local, port: server.port, socket, connections, stop };
}

/** A stand-in server that hands out global ids 1001, 1002, … and records the frames it gets. */
export async function scripted() {
  const seen: Frame[] = [];
  let nextId = 1001;
  const server = await localAgainst("scripted server", (frame) => {
    seen.push(frame);
    if (frame.op === "hello") return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
    if (frame.op === "create") return { id: nextId++ };
    return {};
  });
  return { server, seen };
}

/** The messages buffered for `local` (the broker's inbox; test access to a private field). */
export function buffered(local: LocalBroker, id: number): Message[] {
  const inbox = (local as unknown as { inboxes: Map<number, { queue: Message[] }> }).inboxes.get(id);
  return inbox?.queue ?? [];
}
