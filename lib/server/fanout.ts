/**
 * Fan-out once per local broker: the pushes of a topic that read the log now, by the
 * connection they push to and the seqs they read. A subscription of another id of the same
 * local broker whose next seq falls in such a read waits for it instead, and rides along: the
 * server reads and encodes the batch once, and sends one `msgs` frame whose `ids` lists the
 * riders (and `starts`, where each rider's messages begin when not all start at the first;
 * lib/server/topic.ts does the bookkeeping of each rider; docs/architecture.md).
 */
import type { Connection } from "../wire/connection.ts";

/** Up to this many reads of one connection are searched one by one for one holding a seq; more, and only their first seqs are looked up. */
const SCAN_READS = 16;

interface Read<S> {
  sub: S;
  from: number;
  count: number;
}

export class Readers<S> {
  private readonly byConn = new Map<Connection, Map<number, Read<S>>>();

  /**
   * The push reading `seq` for `conn`, if one is: one whose read starts at `seq`, or one
   * reading up to `maxCount` seqs from before it whose read holds it.
   */
  leaderFor(conn: Connection, seq: number, maxCount: number): S | undefined {
    const reads = this.byConn.get(conn);
    if (reads === undefined) return undefined;
    const exact = reads.get(seq);
    if (exact !== undefined) return exact.sub;
    if (reads.size <= SCAN_READS) {
      for (const read of reads.values()) if (read.from < seq && seq - read.from < Math.min(read.count, maxCount)) return read.sub;
      return undefined;
    }
    for (let from = seq - 1; from > seq - maxCount; from--) {
      const read = reads.get(from);
      if (read !== undefined && seq < from + read.count) return read.sub;
    }
    return undefined;
  }

  /** `sub` starts reading up to `count` seqs from `from` for `conn` (the first one there stays the leader). */
  start(sub: S, conn: Connection, from: number, count: number): void {
    let reads = this.byConn.get(conn);
    if (!reads) this.byConn.set(conn, (reads = new Map()));
    if (!reads.has(from)) reads.set(from, { sub, from, count });
  }

  /** The read of `sub` from `from` returned. */
  end(sub: S, conn: Connection, from: number): void {
    const reads = this.byConn.get(conn);
    if (reads?.get(from)?.sub !== sub) return;
    reads.delete(from);
    if (reads.size === 0) this.byConn.delete(conn);
  }
}
