/** What the CLI prints and how it exits (SPEC §2: the CLI contract). */
import { Code, MqError } from "../errors.ts";
import type { Message } from "../wire/messages.ts";

export const Exit = {
  Ok: 0,
  Refused: 1,
  Usage: 2,
  Empty: 3,
  Unavailable: 4,
} as const;

/** Bad usage, found before any connection is made: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The exit status for an error: 4 when the broker (or its server) cannot be reached or refused us, else 1. */
export function exitCodeFor(err: MqError): number {
  return err.code === Code.Unavailable || err.code === Code.AuthFailed || err.code === Code.VersionMismatch ? Exit.Unavailable : Exit.Refused;
}

/** `mq: CODE: message` on stderr. */
export function reportError(err: MqError): void {
  process.stderr.write(`mq: ${err.code}: ${err.message}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`mq: warning: ${message}\n`);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const newline = new Uint8Array([10]);

/** One received message as `--json` prints it: `data` when the payload is UTF-8, else `data_base64`. */
export function messageJson(m: Message): string {
  const base = { topic: m.topic, seq: m.seq, time: new Date(m.time).toISOString(), ...(m.lost ? { lost: m.lost } : {}) };
  try {
    return JSON.stringify({ ...base, data: utf8.decode(m.data) });
  } catch {
    return JSON.stringify({ ...base, data_base64: Buffer.from(m.data).toString("base64") });
  }
}

/** The bytes to write for a batch of received messages in the chosen format. */
export function renderMessages(messages: Message[], format: "text" | "raw" | "json"): Uint8Array {
  if (format === "json") return Buffer.from(messages.map((m) => `${messageJson(m)}\n`).join(""));
  const parts: Uint8Array[] = [];
  for (const m of messages) {
    if (m.lost) warn(`the server lost ${m.lost} message${m.lost === 1 ? "" : "s"} of topic "${m.topic}" before seq ${m.seq} (damaged storage); they will not come`);
    parts.push(m.data);
    if (format === "text") parts.push(newline);
  }
  return Buffer.concat(parts);
}

/** Writes to stdout and resolves once the bytes are handed to the OS (before we ack). */
export async function writeStdout(bytes: Uint8Array | string): Promise<void> {
  if (bytes.length === 0) return;
  await Bun.write(Bun.stdout, bytes);
}
