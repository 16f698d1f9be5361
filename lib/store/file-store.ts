/**
 * FileTopicStore: `DATA/topics/<topic>/` holding the segments and the `subscribers` index.
 * The files of all topics share one OpenFiles pool, so the number of topics is not bounded
 * by the open-file limit.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fsyncDir } from "./fsutil.ts";
import { defaultMaxOpenFiles, OpenFiles } from "./open-files.ts";
import { FileSubscriberIndex } from "./subscriber-index.ts";
import { FileTopicLog, type TopicLogOptions } from "./topic-log.ts";
import type { SubscriberIndex, TopicLog, TopicStore } from "./types.ts";

export class FileTopicStore implements TopicStore {
  private readonly root: string;
  private readonly opened = new Map<string, { log: TopicLog; subscribers: SubscriberIndex }>();
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

  topics(): string[] {
    return fs
      .readdirSync(this.root, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  }

  async open(topic: string, create: boolean) {
    const known = this.opened.get(topic);
    if (known) return { ...known, created: false };
    const dir = path.join(this.root, topic);
    const exists = fs.existsSync(dir);
    if (!exists && !create) return null;
    const log = FileTopicLog.open(dir, this.options);
    if (!exists) fsyncDir(this.root); // the new topic directory itself must survive a crash
    const subscribers = new FileSubscriberIndex(path.join(dir, "subscribers"), this.files);
    const entry = { log, subscribers };
    this.opened.set(topic, entry);
    return { ...entry, created: !exists };
  }

  /** Topic files open now, and the most that are kept open. */
  openFiles(): { open: number; max: number } {
    return { open: this.files.open, max: this.files.max };
  }

  async close(): Promise<void> {
    for (const { log, subscribers } of this.opened.values()) {
      await subscribers.close();
      await log.close();
    }
    this.opened.clear();
  }
}
