/**
 * Which of the data directory's state files it has had (DATA/state-files): a file named there
 * and found missing at a start was deleted (or lost) while the server was down, and what it
 * held is gone. Those files are made at the first start and never removed, so their absence
 * alone says nothing about a directory written by a version before this list (an upgrade).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { logger } from "../log.ts";
import { writeFileAtomic } from "./fsutil.ts";
import { groupsFileText } from "./group-store.ts";
import { mirrorOf } from "./record-file.ts";

const log = logger("server");

export const STATE_FILES_NAME = "state-files";

/** Each state file (relative to DATA), whether it is a record file (two copies), and what its loss means. */
export const STATE_FILES: ReadonlyArray<{ name: string; copies: boolean; lost: string }> = [
  { name: "consumers", copies: true, lost: "every wildcard subscription (pattern) is lost, and which exact subscriptions a pattern also matched; the ids must subscribe to their patterns again" },
  { name: "scheduled/schedule", copies: true, lost: "every delayed message not yet appended to its topic is lost; publish them again" },
  { name: "groups.json", copies: false, lost: "every queue group and --max-deliver subscription (members, ack floors, what was done above them) is lost; their members must subscribe again" },
];

function exists(dir: string, f: { name: string; copies: boolean }): boolean {
  const file = path.join(dir, f.name);
  return fs.existsSync(file) || (f.copies && fs.existsSync(mirrorOf(file)));
}

/** Before the stores are opened (they make what is absent): logs at ERROR each listed file that is missing. */
export function checkStateFiles(dir: string): void {
  const list = path.join(dir, STATE_FILES_NAME);
  let known: string[] = [];
  try {
    const v = JSON.parse(fs.readFileSync(list, "utf8")) as unknown;
    if (Array.isArray(v)) known = v.filter((x): x is string => typeof x === "string");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`${list} cannot be read (${(err as Error).message}); a state file deleted while the server was down goes unreported at this start. It is written again`);
  }
  for (const f of STATE_FILES) {
    if (!known.includes(f.name) || exists(dir, f)) continue;
    const file = path.join(dir, f.name);
    const what = f.copies ? `${file} and its copy ${mirrorOf(file)} are both missing` : `${file} is missing`;
    log.error(`${what}, though this data directory had ${f.copies ? "them" : "it"} (${list}): deleted while the server was down? It starts empty: ${f.lost}`);
  }
}

/** After the stores are opened: makes groups.json if absent (it is otherwise written only with a group) and lists what exists. */
export function recordStateFiles(dir: string): void {
  const groups = path.join(dir, "groups.json");
  if (!fs.existsSync(groups)) writeFileAtomic(groups, groupsFileText([]));
  const present = STATE_FILES.filter((f) => exists(dir, f)).map((f) => f.name);
  const list = path.join(dir, STATE_FILES_NAME);
  const text = `${JSON.stringify(present)}\n`;
  try {
    if (fs.readFileSync(list, "utf8") === text) return;
  } catch {
    // absent or unreadable: written below
  }
  writeFileAtomic(list, text);
}
