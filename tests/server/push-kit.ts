/**
 * What the unit tests of the server's push (Subscription.push, fan-out, Credits, TTL) share:
 * a connection that records the `msgs` frames, a wait for the memory log's reads, and a
 * memory log whose reads wait until the test lets them return.
 */
import { MemoryTopicLog } from "../../lib/store/memory-store.ts";
import type { StoredMessage } from "../../lib/store/types.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import type { MsgsFrame } from "../../lib/wire/messages.ts";

/** A connection that is always writable (until closed) and keeps what is sent. */
export function fakeConnection(): { conn: Connection; frames: MsgsFrame[] } {
  const frames: MsgsFrame[] = [];
  const conn = { writable: true, closed: false, send: (frame: MsgsFrame) => void frames.push(frame) } as unknown as Connection;
  return { conn, frames };
}

/** Every read of a memory log resolves in a microtask: one timer turn later they all have. */
export const settled = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** A memory log whose reads wait for `open()`, and which counts the reads in flight at once. */
export class GatedLog extends MemoryTopicLog {
  private gate = Promise.withResolvers<void>();
  inFlight = 0;
  mostInFlight = 0;
  reads = 0;

  override async read(from: number, maxCount: number, maxBytes: number): Promise<StoredMessage[]> {
    this.reads++;
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    // What is stored when the read starts, as a database would answer.
    const got = super.read(from, maxCount, maxBytes);
    await this.gate.promise;
    this.inFlight--;
    return got;
  }

  /** Lets the reads waiting now return; later reads wait for the next `open`. */
  open(): void {
    this.gate.resolve();
    this.gate = Promise.withResolvers<void>();
  }
}
