/** FileTopicStore: `DATA/topics/<topic>/` holding the segments and the `subscribers` index. */
import * as fs from "node:fs";
import * as path from "node:path";
import { fsyncDir } from "./fsutil.ts";
import { FileSubscriberIndex } from "./subscriber-index.ts";
import { FileTopicLog, type TopicLogOptions } from "./topic-log.ts";
import type { SubscriberIndex, TopicLog, TopicStore } from "./types.ts";

export class FileTopicStore implements TopicStore {
  private readonly root: string;
  private readonly opened = new Map<string, { log: TopicLog; subscribers: SubscriberIndex }>();

  /** `topicName` must already be validated: it becomes a directory name. */
  constructor(
    dataDir: string,
    private readonly options: TopicLogOptions,
  ) {
    this.root = path.join(dataDir, "topics");
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
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
    const subscribers = new FileSubscriberIndex(path.join(dir, "subscribers"));
    const entry = { log, subscribers };
    this.opened.set(topic, entry);
    return { ...entry, created: !exists };
  }

  async close(): Promise<void> {
    for (const { log, subscribers } of this.opened.values()) {
      await subscribers.close();
      await log.close();
    }
    this.opened.clear();
  }
}
