/**
 * What the servers on one PostgreSQL database share beside the tables (types.ts SharedStore):
 * the events on `mq_events` (events.ts), heard on one LISTEN connection per server, and the
 * singleton jobs, held as session advisory locks on one reserved connection (PostgreSQL
 * frees a dead session's locks, so a dead server's jobs pass to another).
 */
import type { ReservedSQL, SQL } from "bun";
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import { logger } from "../../log.ts";
import type { SharedStore, StoreEvent } from "../types.ts";
import { decodeEvent, encodeEvent } from "./events.ts";
import { EVENTS_CHANNEL } from "./schema.ts";

const log = logger("store");

/** Sends `event` from `serverId` inside the transaction `tx`: delivered at its commit, never on a rollback. */
export async function notify(tx: SQL, serverId: string, event: StoreEvent): Promise<void> {
  await tx`select pg_notify(${EVENTS_CHANNEL}, ${encodeEvent(serverId, event)})`;
}

export class PgShared implements SharedStore {
  /** Unique per process, without spaces (events.ts separates by spaces). */
  readonly serverId = `${os.hostname().replace(/\s/g, "_")}-${process.pid}-${randomBytes(4).toString("hex")}`;
  /** How this server's events begin (encodeEvent: `SERVER KIND …`). */
  private readonly ownPrefix = `${this.serverId} `;
  private readonly listeners: Array<(event: StoreEvent) => void> = [];
  private subscription: SQL.ListenSubscription | null = null;
  /** The connection holding the job locks; null until a job is asked for, and after it died. */
  private locks: ReservedSQL | null = null;
  /** Jobs whose lock `locks` holds. */
  private readonly held = new Set<string>();
  /** holds() one after another: they share one connection and `held`. */
  private lockQueue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(private readonly sql: SQL) {}

  /** Starts listening; resolves once PostgreSQL has acknowledged the LISTEN. */
  static async open(sql: SQL): Promise<PgShared> {
    const shared = new PgShared(sql);
    let listens = 0;
    shared.subscription = await sql.listen(
      EVENTS_CHANNEL,
      (payload) => shared.deliver(payload),
      // Called again each time Bun re-establishes the connection: what came meanwhile is lost.
      () => {
        if (listens++ > 0) shared.emit({ kind: "resync" });
      },
    );
    return shared;
  }

  onEvent(listener: (event: StoreEvent) => void): void {
    this.listeners.push(listener);
  }

  holds(job: string): Promise<boolean> {
    const result = this.lockQueue.then(() => this.tryHold(job));
    this.lockQueue = result.catch(() => {});
    return result;
  }

  private async tryHold(job: string): Promise<boolean> {
    if (this.closed) return false;
    try {
      this.locks ??= await this.sql.reserve();
      if (this.held.has(job)) {
        await this.locks`select 1`; // still held while the session lives
        return true;
      }
      const [row] = await this.locks`select pg_try_advisory_lock(hashtext(${`mq:${job}`})) as ok`;
      if (row.ok) this.held.add(job);
      return Boolean(row.ok);
    } catch (err) {
      // The session is gone and its locks with it: another server may hold the jobs now.
      log.debug(`the connection holding the jobs ${[...this.held].join(", ") || "(none)"} failed: ${(err as Error).message}`);
      this.held.clear();
      void this.locks?.close().catch(() => {});
      this.locks = null;
      return false;
    }
  }

  /** One payload from the channel; another server's event goes to the listeners. */
  private deliver(payload: string): void {
    // Most events on a busy server are its own (one per append batch): not even parsed.
    if (payload.startsWith(this.ownPrefix)) return;
    const decoded = decodeEvent(payload);
    if (!decoded) return;
    this.emit(decoded.event);
  }

  private emit(event: StoreEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        log.error(err);
      }
    }
  }

  /** Stops listening and gives up the jobs (before the pool closes). */
  async close(): Promise<void> {
    this.closed = true;
    await this.subscription?.unlisten().catch(() => {});
    await this.lockQueue;
    // Freed before the close returns (a session's end frees them too, but PostgreSQL ends it a moment later).
    if (this.locks) await this.locks`select pg_advisory_unlock_all()`.catch(() => {});
    // Closed, not returned to the pool: the session ends and PostgreSQL frees its locks.
    await this.locks?.close().catch(() => {});
    this.locks = null;
    this.held.clear();
  }
}
