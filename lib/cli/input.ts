/**
 * What the CLI takes in besides its options: the raw command line (to refuse what the runtime
 * would have changed), standard input read to its end within a bound, and whether fd 0 or 1
 * was closed when mq started. Each is checked before anything is published or acknowledged.
 */
import * as fs from "node:fs";
import { Code, MqError } from "../errors.ts";
import { UsageError } from "./output.ts";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The runtime decodes argv as UTF-8 and puts U+FFFD for bytes that are not, so two message
 * ids that differ only there would collide (the second dropped as a duplicate), and a message
 * or topic would be stored as other bytes. The kernel's copy (/proc/self/cmdline, Linux)
 * still has the bytes: an argument that is not UTF-8 there is refused. Elsewhere, nothing is checked.
 */
export function checkArgumentsAreUtf8(args: readonly string[]): void {
  let raw: Buffer;
  try {
    raw = fs.readFileSync("/proc/self/cmdline");
  } catch {
    return;
  }
  const all: Buffer[] = [];
  for (let start = 0; start < raw.length; ) {
    const end = raw.indexOf(0, start);
    all.push(raw.subarray(start, end < 0 ? raw.length : end));
    start = end < 0 ? raw.length : end + 1;
  }
  // The user's arguments are the last ones (before them: the program, and the script when run by bun).
  const mine = all.slice(all.length - args.length);
  if (mine.length !== args.length) return;
  for (let i = 0; i < mine.length; i++) {
    try {
      strictUtf8.decode(mine[i]);
    } catch {
      throw new UsageError(`argument ${i + 1} (${JSON.stringify([...args[i]!].slice(0, 40).join(""))}${args[i]!.length > 40 ? "…" : ""}) is not valid UTF-8: mq takes text on the command line; give binary data on standard input (\`mq pub ID TOPIC < file\`)`);
    }
  }
}

/** O_CLOEXEC as /proc/self/fdinfo shows it (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * True when fd 0 or 1 was closed when mq started (`<&-`, `>&-`): Bun puts /dev/null there
 * then, opened close-on-exec — which a descriptor inherited across exec can never be. So
 * `mq recv ID >&-` is told apart from `mq recv ID > /dev/null` (the user's choice). Linux only.
 */
export function closedAtStart(fd: 0 | 1): boolean {
  try {
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
    const flags = /^flags:\s*([0-7]+)/m.exec(info);
    return flags !== null && (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0 && fs.readlinkSync(`/proc/self/fd/${fd}`) === "/dev/null";
  } catch {
    return false;
  }
}

/** Refuses a closed standard input before a message is read from it (it would be an empty one). */
export function checkStdinOpen(): void {
  if (closedAtStart(0)) throw new UsageError("standard input is closed (<&-): give MESSAGE as an argument, or the message on standard input (`mq pub ID TOPIC < file`)");
}

/** Refuses a closed standard output before anything is received (it would be acknowledged, and lost). */
export function checkStdoutOpen(what: string): void {
  if (closedAtStart(1)) throw new UsageError(`standard output is closed (>&-): ${what}; send it to a file or a pipe (\`> /dev/null\` to drop it on purpose)`);
}

/**
 * Standard input to its end, refused once above `limit` bytes (+1 for a final newline): a
 * stream that never ends (`yes | mq pub …`) is not read into memory. Read as a stream, so
 * files that say their size is 0 (/proc/…) give their bytes.
 */
export async function readStdin(limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of Bun.stdin.stream()) {
      size += chunk.length;
      if (size > limit + 1) {
        throw new MqError(Code.MessageTooLarge, `the message on standard input is above the server's limit of ${limit} bytes (read ${size} so far): nothing was published; split it, or give --lines for one message per line`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof MqError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const what = code === "EISDIR" ? "it is a directory" : (err as Error).message;
    throw new UsageError(`cannot read the message from standard input: ${what}; give a file, a pipe, or MESSAGE as an argument`);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}
