import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { FileTopicLog, type TopicLogOptions } from "../../lib/store/topic-log.ts";
import type { TopicLog } from "../../lib/store/types.ts";
import { runTopicLogSuite, type TopicLogFixture } from "./topic-log.contract.ts";

function fileLog(options: Partial<TopicLogOptions>): () => Promise<TopicLogFixture> {
  const opts: TopicLogOptions = {
    fsync: "never",
    fsyncIntervalMs: 1000,
    maxSegmentBytes: 64 * 1024 * 1024,
    maxMessageBytes: 2 * 1024 * 1024,
    ...options,
  };
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-topic-log-"));
    let current: TopicLog = FileTopicLog.open(dir, opts);
    return {
      log: current,
      reopen: async () => {
        await current.close();
        current = FileTopicLog.open(dir, opts);
        return current;
      },
      cleanup: async () => {
        await current.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

runTopicLogSuite("FileTopicLog fsync always", fileLog({ fsync: "always" }));
runTopicLogSuite("FileTopicLog fsync never", fileLog({ fsync: "never" }));
// Small segments: every test also crosses segment boundaries.
runTopicLogSuite("FileTopicLog fsync never, 1 KiB segments", fileLog({ fsync: "never", maxSegmentBytes: 1024 }));

runTopicLogSuite("MemoryTopicLog", async () => {
  const log = new MemoryTopicLog();
  return { log, cleanup: () => log.close() };
});
