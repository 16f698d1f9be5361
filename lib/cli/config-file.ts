/**
 * `--config FILE` of the daemons (docs/cli.md): a TOML file (JSON if its name ends in
 * `.json`) whose keys are the command's long options, e.g. `listen = "0.0.0.0:7600"`,
 * `http = "127.0.0.1:7680"`, `insecure = true`. Its options are put before the command
 * line's, so that a flag given on the command line wins. A key the command does not have, or
 * a value of the wrong type, is bad usage (exit 2) naming the key and the file.
 */
import * as fs from "node:fs";
import { closest, type OptionDef } from "./help.ts";
import { UsageError } from "./output.ts";

/** The options of `argv` (after its command word) given with `--config`, if any. */
export function configFileOf(argv: readonly string[]): string | undefined {
  let file: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") break;
    if (a === "--config" && i + 1 < argv.length) file = argv[++i];
    else if (a.startsWith("--config=")) file = a.slice("--config=".length);
  }
  return file;
}

/**
 * The options in `file` as command-line words (`--listen=…`, `--insecure=true`) for the
 * command `command` whose options are `defs`, and the keys they set.
 */
export function configFileArgs(file: string, command: string, defs: Record<string, OptionDef>): { words: string[]; keys: string[] } {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    // A runtime error (exit 1), as for the TLS and token files: a service manager restarts it,
    // and a file on a mount that comes up late is read then. What it holds is checked below (exit 2).
    throw new Error(`Cannot read the --config file ${file}: ${(err as Error).message}; check the path, and that the daemon's user may read it`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = file.endsWith(".json") ? JSON.parse(text) : Bun.TOML.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${file} is not valid ${file.endsWith(".json") ? "JSON" : "TOML"}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError(`config file ${file}: expected a table of options (key = value), got ${Array.isArray(parsed) ? "a list" : typeof parsed}`);
  const options = Object.keys(defs).filter((k) => defs[k]!.type !== "positional" && k !== "config");
  const words: string[] = [];
  const keys: string[] = [];
  for (const [key, value] of Object.entries(parsed)) {
    const def = options.includes(key) ? defs[key]! : undefined;
    if (!def) {
      const guess = closest(key, options);
      throw new UsageError(`config file ${file}: unknown key ${JSON.stringify(key)} for \`mq ${command}\`${guess ? `; did you mean ${JSON.stringify(guess)}?` : ""} (keys are the long options of \`mq ${command} --help\`)`);
    }
    const wrong = (want: string) => new UsageError(`config file ${file}: key ${JSON.stringify(key)} must be ${want}, got ${JSON.stringify(value)}`);
    if (def.type === "boolean") {
      if (typeof value !== "boolean") throw wrong("true or false");
      words.push(`--${key}=${value}`);
    } else if (def.repeatable && Array.isArray(value)) {
      for (const v of value) words.push(`--${key}=${scalar(v, wrong)}`);
    } else words.push(`--${key}=${scalar(value, wrong)}`);
    keys.push(key);
  }
  return { words, keys };
}

/** A string option's value: a string, or a number written as the flag would be. */
function scalar(value: unknown, wrong: (want: string) => Error): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw wrong("a string or a number");
}
