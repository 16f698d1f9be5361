/**
 * The schedule of delayed messages (`mq pub --delay` / `--at`): what the server accepted and
 * has not yet appended to its topic.
 *
 * FileSchedule: `DATA/scheduled/schedule` (and its copy `schedule.mirror`), a RecordFile of
 *
 *     {n, t: topic, d: due, p: payload, m?: msgId, h?: headers, l?: ttl in ms}
 *                                                    accepted (fsynced before the publish is acknowledged)
 *     {r: [n, …]}                                    appended to their topics (written lazily)
 *
 * Readers ignore keys they do not know, so later fields are new optional keys of the
 * accepted record (`h` and `l` came so: a record without them is a message without). The
 * next acceptance number is the RecordFile's mark, so a number is never handed out twice,
 * even after records are lost.
 *
 * MemorySchedule: the same in memory (nothing survives the process).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RecordFile, type Record_ } from "./record-file.ts";
import type { ScheduledMessage, ScheduleStore } from "./types.ts";
import { headersProblem, type Headers } from "../wire/headers.ts";
import { logger } from "../log.ts";

const log = logger("store");

/** Compaction once the file is this big and holds more removed messages than pending ones. */
const COMPACT_MIN_BYTES = 1024 * 1024;

export class MemorySchedule implements ScheduleStore {
  protected readonly entries = new Map<number, ScheduledMessage>();
  protected next = 1;

  pending(): ScheduledMessage[] {
    return [...this.entries.values()].sort((a, b) => a.n - b.n);
  }

  async add(messages: Array<Omit<ScheduledMessage, "n">>): Promise<ScheduledMessage[]> {
    return messages.map((m) => this.put({ ...m, n: this.next++ }));
  }

  async remove(ns: number[]): Promise<void> {
    for (const n of ns) this.entries.delete(n);
  }

  async close(): Promise<void> {}

  protected put(entry: ScheduledMessage): ScheduledMessage {
    this.entries.set(entry.n, entry);
    return entry;
  }
}

export class FileSchedule extends MemorySchedule {
  private readonly file: RecordFile;
  /** Removed messages whose accepted records are still in the file (compaction drops them). */
  private garbage = 0;

  /** `dir`: DATA/scheduled, created if absent. */
  constructor(dir: string) {
    super();
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = RecordFile.open(path.join(dir, "schedule"), {
      apply: (r) => {
        const entry = toEntry(r);
        if (entry) {
          this.put(entry);
          this.next = Math.max(this.next, entry.n + 1);
        } else if (Array.isArray(r.r)) {
          for (const n of r.r) if (this.entries.delete(n as number)) this.garbage++;
        }
      },
      snapshot: () => [...this.entries.values()].map(toRecord),
      mark: () => this.next,
    });
    this.next = Math.max(this.next, this.file.mark);
  }

  override async add(messages: Array<Omit<ScheduledMessage, "n">>): Promise<ScheduledMessage[]> {
    const entries = messages.map((m) => ({ ...m, n: this.next++ }));
    // Pending only once durable: a failed write leaves nothing half-accepted (the numbers are skipped).
    await Promise.all(entries.map((e) => this.file.append(toRecord(e), true, e.n + 1)));
    return entries.map((e) => this.put(e));
  }

  override async remove(ns: number[]): Promise<void> {
    const gone = ns.filter((n) => this.entries.delete(n));
    if (gone.length === 0) return;
    this.garbage += gone.length;
    await this.file.append({ r: gone }, false);
    if (this.file.bytes > COMPACT_MIN_BYTES && this.garbage > this.entries.size) {
      this.garbage = 0;
      await this.file.rewrite();
    }
  }

  override async close(): Promise<void> {
    await this.file.close();
  }
}

function toRecord(e: ScheduledMessage): Record_ {
  const r: Record_ = { n: e.n, t: e.topic, d: e.due, p: e.data };
  if (e.msgId !== undefined) r.m = e.msgId;
  if (e.headers !== undefined) r.h = e.headers;
  if (e.ttlMs !== undefined) r.l = e.ttlMs;
  return r;
}

/** An accepted record, or null for anything else (a removal, or a record this version does not know). */
function toEntry(r: Record_): ScheduledMessage | null {
  if (!Number.isSafeInteger(r.n) || typeof r.t !== "string" || !Number.isSafeInteger(r.d) || !(r.p instanceof Uint8Array)) return null;
  // A copy: decoded byte strings share the buffer of the whole file.
  const entry: ScheduledMessage = { n: r.n as number, topic: r.t, due: r.d as number, data: r.p.slice() };
  if (typeof r.m === "string") entry.msgId = r.m;
  // Written only valid; anything else is not ours to deliver, so it is left out (and said).
  if (r.h !== undefined) {
    const problem = headersProblem(r.h);
    if (problem === null) entry.headers = r.h as Headers;
    else log.error(`delayed message ${entry.n} of topic "${entry.topic}": its stored headers are not valid (expected ${problem}); delivered without them`);
  }
  if (Number.isSafeInteger(r.l) && (r.l as number) >= 1) entry.ttlMs = r.l as number;
  return entry;
}
