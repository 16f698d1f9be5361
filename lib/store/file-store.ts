/**
 * FileTopicStore: `DATA/topics/<topic>/` holding the segments and the `subscribers` index.
 * The files of all topics share one OpenFiles pool, so the number of topics is not bounded
 * by the open-file limit; creating a topic that fails (disk full, no file descriptor left)
 * leaves no directory and no file behind.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { logger } from "../log.ts";
import { errnoCode, fsyncDir, fsyncDirAsync } from "./fsutil.ts";
import { OneOpenAtATime } from "./open-once.ts";
import { mirrorOf } from "./record-file.ts";
import { defaultMaxOpenFiles, OpenFiles } from "./open-files.ts";
import { Slots } from "./slots.ts";
import { FileSubscriberIndex } from "./subscriber-index.ts";
import { MetaBatch } from "./topic-meta.ts";
import { FileTopicLog, tailCacheBytes, type TopicLogOptions } from "./topic-log.ts";
import type { SubscriberIndex, TopicLog, TopicStore } from "./types.ts";

const log = logger("store");

/** On EMFILE while creating a topic, this many cold files are closed before the one retry. */
const ROOM_ON_EMFILE = 16;
/** Topics created at once: each holds an fd or two of its own (outside the pool) while it waits for the disk. */
const creations = new Slots(16);
/** Topics closed at once when the store closes (each may hold two fds of its own for a moment). */
const CLOSE_CONCURRENCY = 16;

export class FileTopicStore implements TopicStore {
  private readonly root: string;
  private readonly opened = new Map<string, { log: TopicLog; subscribers: SubscriberIndex }>();
  private readonly opening = new OneOpenAtATime();
  private readonly files: OpenFiles;
  private readonly options: TopicLogOptions;

  /**
   * `topicName` must already be validated: it becomes a directory name. `options.files` is
   * the pool of open files; by default one bounded by `defaultMaxOpenFiles()`.
   */
  constructor(dataDir: string, options: TopicLogOptions) {
    this.root = path.join(dataDir, "topics");
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
    this.files = options.files ?? new OpenFiles(defaultMaxOpenFiles());
    this.options = { ...options, files: this.files };
  }

  async topics(): Promise<string[]> {
    return (await fs.promises.readdir(this.root, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  }

  async open(topic: string, create: boolean): ReturnType<TopicStore["open"]> {
    const known = this.opened.get(topic);
    if (known) return { ...known, created: false };
    // A creation waits for the disk: a second open of the same topic meanwhile waits for it.
    return this.opening.run(topic, () => this.openOrCreate(topic, create), () => this.open(topic, create));
  }

  private async openOrCreate(topic: string, create: boolean): ReturnType<TopicStore["open"]> {
    const dir = path.join(this.root, topic);
    const exists = fs.existsSync(dir);
    if (!exists && !create) return null;
    let entry: { log: TopicLog; subscribers: SubscriberIndex };
    try {
      entry = await this.openDir(dir, exists);
    } catch (err) {
      // Out of fds (connections took them): close some cold topic files and try once more.
      if (!isOutOfFds(err) || this.files.makeRoom(ROOM_ON_EMFILE) === 0) throw err;
      entry = await this.openDir(dir, exists);
    }
    this.opened.set(topic, entry);
    return { ...entry, created: !exists };
  }

  /**
   * Opens (or creates) one topic's files; a failed creation removes what it made. A new
   * topic's files are made and fsynced off the event loop (other requests go on meanwhile),
   * so that opening them afterwards only reads.
   */
  private async openDir(dir: string, exists: boolean): Promise<{ log: TopicLog; subscribers: SubscriberIndex }> {
    let made = false;
    let topicLog: FileTopicLog | null = null;
    const subscribersFile = path.join(dir, "subscribers");
    try {
      if (!exists) {
        await creations.run(async () => {
          await fs.promises.mkdir(dir, { mode: 0o700 });
          made = true;
          await FileTopicLog.create(dir);
          await FileSubscriberIndex.create(subscribersFile);
          await fsyncDirAsync(dir);
        });
      }
      topicLog = FileTopicLog.open(dir, this.options);
      // Made with the topic, before anything is published to it: a topic that has handed out
      // seqs had it, and both copies gone means its subscriptions went with them.
      if (exists && topicLog.nextSeq > 1 && !fs.existsSync(subscribersFile) && !fs.existsSync(mirrorOf(subscribersFile))) {
        log.error(`topic "${path.basename(dir)}": its subscriber index ${subscribersFile} and its copy ${mirrorOf(subscribersFile)} are both missing (deleted while the server was down?), though its log has handed out seqs up to ${topicLog.nextSeq - 1}: every subscription to it and its cursor are lost; it starts with no subscribers. Subscribe the ids again (mq sub ID TOPIC --from SEQ)`);
      }
      const subscribers = new FileSubscriberIndex(subscribersFile, this.files);
      if (!exists) await fsyncDirAsync(this.root); // the new topic directory itself must survive a crash
      return { log: topicLog, subscribers };
    } catch (err) {
      if (topicLog) await topicLog.close().catch(() => {});
      if (made) this.removeCreated(dir);
      throw err;
    }
  }

  /** Removes the directory of a topic whose creation failed (making room for the fds that takes, if needed). */
  private removeCreated(dir: string): void {
    for (let attempt = 0; ; attempt++) {
      try {
        // An empty directory goes without an fd (there may be none left); else list and remove.
        try {
          fs.rmdirSync(dir);
        } catch {
          fs.rmSync(dir, { recursive: true, force: true });
        }
        break;
      } catch (err) {
        if (attempt === 0 && isOutOfFds(err) && this.files.makeRoom(ROOM_ON_EMFILE) > 0) continue;
        log.error(`topic "${path.basename(dir)}": its creation failed and its directory ${dir} could not be removed: ${(err as Error).message}`);
        return;
      }
    }
    try {
      fsyncDir(this.root);
    } catch {
      // The directory is gone; a crash may bring back its empty entry, which the next start opens as an empty topic.
    }
  }

  /** Topic files open now, and the most that are kept open. */
  openFiles(): { open: number; max: number } {
    return { open: this.files.open, max: this.files.max };
  }

  /** Bytes the topics' tail caches hold now (those of every file store of the process). */
  cachedBytes(): number {
    return tailCacheBytes();
  }

  /**
   * Closes every topic, CLOSE_CONCURRENCY at a time (the fsyncs `--fsync interval` still
   * owes overlap on the thread pool), and writes the meta files of a clean close all
   * together (MetaBatch: two syncs of the file system, not two fsyncs per topic), so a stop
   * with many topics takes seconds, not minutes. Throws the first failure once all are closed.
   */
  async close(): Promise<void> {
    const entries = [...this.opened.entries()];
    this.opened.clear();
    const metas = new MetaBatch(this.root);
    let next = 0;
    let failure: unknown = null;
    const worker = async () => {
      while (next < entries.length) {
        const [topic, { log: topicLog, subscribers }] = entries[next++]!;
        try {
          await subscribers.close();
          await (topicLog instanceof FileTopicLog ? topicLog.close(metas) : topicLog.close());
        } catch (err) {
          log.error(`topic "${topic}": cannot close it cleanly: ${(err as Error).message}`);
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CLOSE_CONCURRENCY, entries.length) }, worker));
    try {
      // As for one topic: a meta not written at close costs the next start its exact next seq, nothing else.
      for (const { file, error } of await metas.commit()) log.error(`${file}: cannot write it at close: ${error.message}`);
    } catch (err) {
      log.error(`cannot write the meta files of a clean close: ${(err as Error).message}`);
    }
    if (failure) throw failure;
  }
}

function isOutOfFds(err: unknown): boolean {
  const code = errnoCode(err);
  return code === "EMFILE" || code === "ENFILE";
}
