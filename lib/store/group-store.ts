/**
 * Where the server keeps its queue groups (lib/server/group.ts): for each group, its topic,
 * name, ack floor (and above it how far delivery got and what is not done), redelivery
 * options and members. The file store writes them all to
 * DATA/groups.json, atomically, one write after another; the memory store keeps nothing
 * across a restart, like everything else it holds.
 */
import * as fs from "node:fs";
import { logger } from "../log.ts";
import { writeFileAtomicAsync } from "./fsutil.ts";
import type { GroupRecord, GroupStore } from "./types.ts";

const log = logger("server");

/** The text of DATA/groups.json holding `records`. */
export function groupsFileText(records: GroupRecord[]): string {
  return `${JSON.stringify({ version: 1, groups: records })}\n`;
}

export class FileGroupStore implements GroupStore {
  /** The writes of the file, one after another (each writes the records it was given). */
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  /** The groups as the file holds them; an invalid record is logged and left out (the next save drops it). */
  async load(): Promise<GroupRecord[]> {
    let records: unknown;
    try {
      records = (JSON.parse(await fs.promises.readFile(this.file, "utf8")) as { groups?: unknown }).groups;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new Error(`${this.file}: cannot read the queue groups: ${(err as Error).message}`, { cause: err });
    }
    const valid: GroupRecord[] = [];
    for (const r of Array.isArray(records) ? records : []) {
      const floorOnly = withoutProgress(r);
      if (isGroupRecord(r)) valid.push(r);
      else if (isGroupRecord(floorOnly)) {
        // The group and its members are kept; what was done above the floor is not known: it comes again.
        log.warn(`${this.file}: the next/undone of a queue group record are not valid and are ignored (its messages from its floor on are delivered again): ${JSON.stringify(r).slice(0, 200)}`);
        valid.push(floorOnly);
      } else log.error(`${this.file}: a queue group record is not valid and is dropped: ${JSON.stringify(r).slice(0, 200)}`);
    }
    return valid;
  }

  save(records: GroupRecord[]): Promise<void> {
    const text = groupsFileText(records);
    const write = this.writing.then(() => writeFileAtomicAsync(this.file, text));
    this.writing = write.catch(() => {});
    return write;
  }

  describe(): string {
    return this.file;
  }

  async close(): Promise<void> {
    await this.writing;
  }
}

/** Groups in this process only: `load` gives what the last `save` was given (nothing after a restart). */
export class MemoryGroupStore implements GroupStore {
  private records: GroupRecord[] = [];

  async load(): Promise<GroupRecord[]> {
    return this.records;
  }

  async save(records: GroupRecord[]): Promise<void> {
    this.records = records;
  }

  describe(): string {
    return "the memory store's groups";
  }

  async close(): Promise<void> {}
}

export function isGroupRecord(r: unknown): r is GroupRecord {
  const g = r as GroupRecord;
  return (
    typeof g === "object" && g !== null && typeof g.topic === "string" && (g.group === null || typeof g.group === "string") && Number.isSafeInteger(g.floor) && g.floor >= 0 &&
    Array.isArray(g.members) && g.members.length > 0 && g.members.every((id) => Number.isSafeInteger(id) && id > 0) &&
    (g.maxDeliver === undefined || (Number.isSafeInteger(g.maxDeliver) && g.maxDeliver >= 1)) && (g.deadLetter === undefined || typeof g.deadLetter === "string") &&
    (g.next === undefined || (Number.isSafeInteger(g.next) && g.next >= g.floor)) && (g.undone === undefined || (g.next !== undefined && Array.isArray(g.undone) && g.undone.every((run) => isRun(run, g.floor, g.next!))))
  );
}

/** `r` without what was done above its floor (`next`, `undone`): a record as the previous version wrote it. */
function withoutProgress(r: unknown): unknown {
  if (typeof r !== "object" || r === null) return r;
  const { next: _next, undone: _undone, ...rest } = r as Record<string, unknown>;
  return rest;
}

/** A run [first, last] of seqs in [floor, next). */
function isRun(run: unknown, floor: number, next: number): boolean {
  if (!Array.isArray(run) || run.length !== 2) return false;
  const [first, last] = run as unknown[];
  return Number.isSafeInteger(first) && Number.isSafeInteger(last) && floor <= (first as number) && (first as number) <= (last as number) && (last as number) < next;
}
