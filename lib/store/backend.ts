/**
 * The one place that knows the storage backends: `openStorage` makes the server's Storage
 * (types.ts) of the kind asked for, and owns what the kind needs besides (the data
 * directory and its lock for `file`; nothing for `memory`; the connection pool for
 * `postgres`).
 *
 * A new member of Storage is one more entry of `parts` in each of `openFile`, `openMemory`
 * and `openPostgres`; `close` closes every part, in the order they are listed.
 */
import * as path from "node:path";
import { FileBrokerCredentials, MemoryBrokerCredentials } from "./broker-credentials.ts";
import { FileClientRegistry, MemoryClientRegistry } from "./client-registry.ts";
import { FileConsumerStore, MemoryConsumerStore } from "./consumer-store.ts";
import { FileTopicStore } from "./file-store.ts";
import { lockDataDir, makeDataDir } from "./fsutil.ts";
import { FileGroupStore, MemoryGroupStore } from "./group-store.ts";
import { MemoryTopicStore } from "./memory-store.ts";
import { defaultMaxOpenFiles, OpenFiles } from "./open-files.ts";
import { connectPostgres } from "./pg/connect.ts";
import { postgresLocation } from "./pg/url.ts";
import { PgConsumerStore } from "./pg/consumers.ts";
import { PgBrokerCredentials } from "./pg/credentials.ts";
import { PgGroupStore } from "./pg/groups.ts";
import { PgGroupClaims } from "./pg/group-claims.ts";
import { PgClientRegistry } from "./pg/registry.ts";
import { PgSchedule } from "./pg/schedule.ts";
import { PgShared } from "./pg/shared.ts";
import { PgTopicStore } from "./pg/topic-store.ts";
import { FileSchedule, MemorySchedule } from "./schedule.ts";
import { checkStateFiles, recordStateFiles } from "./state-files.ts";
import type { DeliverAfter, FsyncPolicy, Storage, StoreKind } from "./types.ts";

export const STORE_KINDS: readonly StoreKind[] = ["file", "memory", "postgres"];

export interface StorageOptions {
  kind: StoreKind;
  /** The data directory of a file store (unused by memory and postgres). */
  dataDir: string;
  /** postgres: the database, `postgres://USER[:PASSWORD]@HOST:PORT/DB` (the password is never logged). */
  url?: string;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** A file log under `--fsync always`: readable once written (default) or once synced. */
  deliverAfter?: DeliverAfter;
  /** A file log rolls its segment at this size; default 64 MiB. */
  maxSegmentBytes?: number;
  /** Most topic files kept open at once; default `defaultMaxOpenFiles()`. */
  maxOpenFiles?: number;
  /** Who takes the data directory's lock, for the refusal another process gets ("mq server"). */
  owner: string;
}

/** What one Storage is made of: each member has a `close`. */
type Parts = Omit<Storage, "kind" | "close">;

/**
 * Opens the storage of `options.kind`. A file store that fails to open leaves its directory
 * unlocked; a postgres one closes its pool.
 */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  switch (options.kind) {
    case "file":
      return openFile(options);
    case "memory":
      return openMemory();
    case "postgres":
      return openPostgres(options);
    default:
      throw new Error(`unknown store ${JSON.stringify(options.kind)}: use ${STORE_KINDS.join(", ")}`);
  }
}

function openFile(options: StorageOptions): Storage {
  const dir = options.dataDir;
  makeDataDir(dir);
  const unlock = lockDataDir(dir, options.owner);
  try {
    checkStateFiles(dir);
    const parts: Parts = {
      topics: new FileTopicStore(dir, {
        fsync: options.fsync,
        fsyncIntervalMs: options.fsyncIntervalMs,
        ...(options.deliverAfter !== undefined ? { deliverAfter: options.deliverAfter } : {}),
        maxSegmentBytes: options.maxSegmentBytes ?? 64 * 1024 * 1024,
        files: new OpenFiles(options.maxOpenFiles ?? defaultMaxOpenFiles()),
      }),
      clients: new FileClientRegistry(path.join(dir, "clients")),
      credentials: new FileBrokerCredentials(path.join(dir, "brokers")),
      consumers: new FileConsumerStore(path.join(dir, "consumers")),
      schedule: new FileSchedule(path.join(dir, "scheduled")),
      groups: new FileGroupStore(path.join(dir, "groups.json")),
    };
    recordStateFiles(dir);
    return storage("file", parts, unlock);
  } catch (err) {
    unlock(); // a failed open (unreadable data) leaves the directory free
    throw err;
  }
}

/** Everything in this process's memory: nothing is written, nothing survives a restart. */
function openMemory(): Storage {
  return storage("memory", {
      topics: new MemoryTopicStore(),
      clients: new MemoryClientRegistry(),
      credentials: new MemoryBrokerCredentials(),
      consumers: new MemoryConsumerStore(),
      schedule: new MemorySchedule(),
      groups: new MemoryGroupStore(),
    }, () => {});
}

/**
 * Several servers share one database (lib/store/pg/): `--fsync always` commits with
 * synchronous_commit on, interval and never with it off.
 */
async function openPostgres(options: StorageOptions): Promise<Storage> {
  if (!options.url) throw new Error("the postgres store needs a URL: --store postgres://USER@HOST:PORT/DB");
  const synchronousCommit = options.fsync === "always";
  const sql = await connectPostgres(options.url, synchronousCommit);
  const opened: Array<{ close(): Promise<void> }> = [];
  const track = <T extends { close(): Promise<void> }>(part: T): T => (opened.push(part), part);
  try {
    const shared = track(await PgShared.open(sql));
    const parts: Parts = {
      topics: track(new PgTopicStore(sql, shared.serverId, { synchronousCommit })),
      clients: track(await PgClientRegistry.open(sql, shared.serverId)),
      credentials: track(await PgBrokerCredentials.open(sql)),
      consumers: track(new PgConsumerStore(sql, shared.serverId)),
      schedule: track(await PgSchedule.open(sql)),
      groups: track(new PgGroupStore(sql, shared.serverId, postgresLocation(options.url))),
      groupClaims: track(await PgGroupClaims.open(sql, shared)),
      // Last: it stops listening and gives up the jobs once the others are closed.
      shared,
    };
    return storage("postgres", parts, () => sql.close());
  } catch (err) {
    for (const part of opened.reverse()) await part.close().catch(() => {});
    await sql.close().catch(() => {});
    throw err;
  }
}

function storage(kind: StoreKind, parts: Parts, release: () => void | Promise<void>): Storage {
  let closing: Promise<void> | null = null;
  const close = async () => {
    // Every part is closed even when one fails; the first failure is thrown once all are.
    let failure: unknown = null;
    for (const part of Object.values(parts) as Array<{ close(): Promise<void> }>) {
      try {
        await part.close();
      } catch (err) {
        failure ??= err;
      }
    }
    try {
      await release();
    } catch (err) {
      failure ??= err;
    }
    if (failure) throw failure;
  };
  return {
    kind,
    ...parts,
    close: () => (closing ??= close()),
  };
}
