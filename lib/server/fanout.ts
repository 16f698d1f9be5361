/**
 * Fan-out once per local broker: the pushes of a topic that read the log now, by the
 * connection they push to and the seq they read from. A subscription of another id of the
 * same local broker that would read the same seqs waits for that read instead, and rides
 * along: the server reads and encodes the batch once, and sends one `msgs` frame whose `ids`
 * lists the riders (lib/server/topic.ts does the bookkeeping of each rider; docs/architecture.md).
 */
import type { Connection } from "../wire/connection.ts";

export class Readers<S> {
  /**
   * Kept per connection once made, even empty (a WeakMap: it goes with the connection): a map
   * deleted at each read's end made `leaderFor` meet undefined and a map by turns, and the JIT
   * threw away the code it compiled for one of them (docs/benchmarks.md).
   */
  private readonly byConn = new WeakMap<Connection, Map<number, S>>();

  /** The push reading from `from` for `conn`, if one is. */
  leaderFor(conn: Connection, from: number): S | undefined {
    return this.byConn.get(conn)?.get(from);
  }

  /** `sub` starts reading from `from` for `conn` (the first one there stays the leader). */
  start(sub: S, conn: Connection, from: number): void {
    let reads = this.byConn.get(conn);
    if (!reads) this.byConn.set(conn, (reads = new Map()));
    if (!reads.has(from)) reads.set(from, sub);
  }

  /** The read of `sub` from `from` returned. */
  end(sub: S, conn: Connection, from: number): void {
    const reads = this.byConn.get(conn);
    if (reads?.get(from) !== sub) return;
    reads.delete(from);
  }
}
