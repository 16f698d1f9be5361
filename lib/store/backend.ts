/**
 * The one place that knows the storage backends: `openStorage` makes the server's Storage
 * (types.ts) of the kind asked for, and owns what the kind needs besides (the data
 * directory and its lock for `file`; nothing for `memory`).
 *
 * A new member of Storage is one more entry of `parts` in each of
 * `openFile` and `openMemory`; `close` closes every part, in the order they are listed.
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
import { FileSchedule, MemorySchedule } from "./schedule.ts";
import type { FsyncPolicy, Storage, StoreKind } from "./types.ts";

export const STORE_KINDS: readonly StoreKind[] = ["file", "memory"];

export interface StorageOptions {
  kind: StoreKind;
  /** The data directory of a file store (unused by memory). */
  dataDir: string;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** A file log rolls its segment at this size; default 64 MiB. */
  maxSegmentBytes?: number;
  /** Most topic files kept open at once; default `defaultMaxOpenFiles()`. */
  maxOpenFiles?: number;
  /** Who takes the data directory's lock, for the refusal another process gets ("mq server"). */
  owner: string;
}

/** What one Storage is made of: each member has a `close`. */
type Parts = Omit<Storage, "kind" | "close">;

/** Opens the storage of `options.kind`. A file store that fails to open leaves its directory unlocked. */
export function openStorage(options: StorageOptions): Storage {
  switch (options.kind) {
    case "file":
      return openFile(options);
    case "memory":
      return openMemory();
    default:
      throw new Error(`unknown store ${JSON.stringify(options.kind)}: use ${STORE_KINDS.join(" or ")}`);
  }
}

function openFile(options: StorageOptions): Storage {
  const dir = options.dataDir;
  makeDataDir(dir);
  const unlock = lockDataDir(dir, options.owner);
  try {
    const parts: Parts = {
      topics: new FileTopicStore(dir, {
        fsync: options.fsync,
        fsyncIntervalMs: options.fsyncIntervalMs,
        maxSegmentBytes: options.maxSegmentBytes ?? 64 * 1024 * 1024,
        files: new OpenFiles(options.maxOpenFiles ?? defaultMaxOpenFiles()),
      }),
      clients: new FileClientRegistry(path.join(dir, "clients")),
      credentials: new FileBrokerCredentials(path.join(dir, "brokers")),
      consumers: new FileConsumerStore(path.join(dir, "consumers")),
      schedule: new FileSchedule(path.join(dir, "scheduled")),
      groups: new FileGroupStore(path.join(dir, "groups.json")),
    };
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

function storage(kind: StoreKind, parts: Parts, release: () => void): Storage {
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
    release();
    if (failure) throw failure;
  };
  return {
    kind,
    ...parts,
    close: () => (closing ??= close()),
  };
}
