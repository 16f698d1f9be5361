/**
 * Notices a peer that went silent (stopped, or behind a network that drops everything
 * without a reset) on a connection that otherwise looks open. Every `intervalMs` it looks
 * whether the peer showed any sign of life since the last look; a silent interval sends a
 * ping, and `maxMissed` silent intervals in a row declare the peer dead. The owner calls
 * `alive()` for every sign of life — any bytes received, not only pongs — so a busy
 * connection never sends a ping and a slow one is not cut off while its bytes still flow.
 */

/** What a heartbeat drives: ask the peer for a sign of life; give up on it. */
export interface HeartbeatPeer {
  ping(): void;
  dead(): void;
}

export class Heartbeat {
  private heard = true;
  private silent = 0;
  private timer: ReturnType<typeof setInterval> | null;

  /**
   * Starts at once. `maxMissed` (at least 2) silent intervals in a row mean dead: a peer
   * that says nothing is given up between `maxMissed` and `maxMissed + 1` intervals after
   * its last sign of life, and the first ping has `maxMissed - 1` intervals to be answered.
   */
  constructor(
    private readonly peer: HeartbeatPeer,
    readonly intervalMs: number,
    readonly maxMissed: number,
  ) {
    if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) throw new RangeError(`Heartbeat interval must be a positive number of ms, got ${intervalMs}`);
    if (!Number.isInteger(maxMissed) || maxMissed < 2) throw new RangeError(`Heartbeat maxMissed must be an integer >= 2, got ${maxMissed}`);
    this.timer = setInterval(() => this.tick(), intervalMs);
    // A heartbeat alone does not keep a process alive (the connection's socket does).
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** The peer showed a sign of life (bytes arrived, or it took bytes we had queued). */
  alive(): void {
    this.heard = true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get stopped(): boolean {
    return this.timer === null;
  }

  // Intervals are counted, not measured against the clock: if this process itself was
  // stopped (SIGSTOP, a long GC), the late tick counts as one silent interval, not many,
  // and the peer gets its pings before it is given up.
  private tick(): void {
    if (this.heard) {
      this.heard = false;
      this.silent = 0;
      return;
    }
    if (++this.silent >= this.maxMissed) {
      this.stop();
      this.peer.dead();
      return;
    }
    this.peer.ping();
  }
}
