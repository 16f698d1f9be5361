/**
 * Acknowledgements the server has not heard of: clients acknowledged messages from the buffer
 * while the server was away. The inbox remembers the floors, and acknowledges again what the
 * server sends again after the reconnect; but a local broker stopped cleanly before that would
 * forget them, and its next run would deliver them all again (SPEC §3: no duplicate after a
 * clean restart). So a graceful stop writes them to `DATA/unsent-acks.json`, the next start
 * seeds the inboxes with them, and the first session sends them and removes the file.
 *
 * Only cumulative floors (`{topic, seq}`) are kept: messages acknowledged one by one (queue
 * groups, --max-deliver) went back to the server when the session ended, as documented.
 */
import * as fs from "node:fs";
import { writeFileAtomic } from "../store/fsutil.ts";

export class UnsentAcks {
  /** Local id → topic → the highest floor acknowledged here and not sent. */
  private readonly floors = new Map<number, Map<string, number>>();

  constructor(readonly file: string) {}

  get size(): number {
    return this.floors.size;
  }

  record(local: number, topic: string, seq: number): void {
    let topics = this.floors.get(local);
    if (!topics) this.floors.set(local, (topics = new Map()));
    if (seq > (topics.get(topic) ?? 0)) topics.set(topic, seq);
  }

  /** The id is destroyed or gone: nothing of it is sent or kept. */
  dropId(local: number): void {
    this.floors.delete(local);
  }

  /** The id left the topic (unsubscribed): a later subscription starts afresh. */
  dropTopic(local: number, topic: string): void {
    this.floors.get(local)?.delete(topic);
  }

  /** Every floor, forgotten here: the caller sends them. The file goes too (what it held is in the list). */
  take(): Array<{ local: number; topic: string; seq: number }> {
    const out: Array<{ local: number; topic: string; seq: number }> = [];
    for (const [local, topics] of this.floors) for (const [topic, seq] of topics) out.push({ local, topic, seq });
    this.floors.clear();
    fs.rmSync(this.file, { force: true });
    return out;
  }

  /** At a graceful stop: what was not sent, kept for the next start (none: no file). */
  save(): void {
    if (this.floors.size === 0) {
      fs.rmSync(this.file, { force: true });
      return;
    }
    const json: Record<string, Record<string, number>> = {};
    for (const [local, topics] of this.floors) if (topics.size > 0) json[local] = Object.fromEntries(topics);
    writeFileAtomic(this.file, `${JSON.stringify(json)}\n`);
  }

  /**
   * What a graceful stop left; kept in memory until sent. A file that is not what save()
   * writes is reported and left out: the worst it costs is messages delivered again.
   */
  load(): { floors: Array<{ local: number; topic: string; seq: number }>; problem?: string } {
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { floors: [] };
      return { floors: [], problem: `cannot read it: ${(err as Error).message}` };
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      return { floors: [], problem: `not JSON: ${(err as Error).message}` };
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) return { floors: [], problem: "not an object of ids" };
    const floors: Array<{ local: number; topic: string; seq: number }> = [];
    for (const [id, topics] of Object.entries(json)) {
      const local = Number(id);
      if (!/^\d+$/.test(id) || !Number.isSafeInteger(local) || local < 1) return { floors: [], problem: `id ${JSON.stringify(id)} is not a positive integer` };
      if (typeof topics !== "object" || topics === null || Array.isArray(topics)) return { floors: [], problem: `id ${id}: not an object of topics` };
      for (const [topic, seq] of Object.entries(topics)) {
        if (!(typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 1)) return { floors: [], problem: `id ${id}, topic ${JSON.stringify(topic)}: seq ${JSON.stringify(seq)} is not a positive integer` };
        floors.push({ local, topic, seq });
      }
    }
    for (const f of floors) this.record(f.local, f.topic, f.seq);
    return { floors };
  }
}
