import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MemorySubscriberIndex } from "../../lib/store/memory-store.ts";
import { FileSubscriberIndex } from "../../lib/store/subscriber-index.ts";
import type { SubscriberIndex } from "../../lib/store/types.ts";
import { runSubscriberIndexSuite } from "./subscriber-index.contract.ts";

runSubscriberIndexSuite("FileSubscriberIndex", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-subscribers-"));
  const file = path.join(dir, "subscribers");
  let current: SubscriberIndex = new FileSubscriberIndex(file);
  return {
    index: current,
    reopen: async () => {
      await current.close();
      current = new FileSubscriberIndex(file);
      return current;
    },
    cleanup: async () => {
      await current.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}, { persistent: true });

runSubscriberIndexSuite("MemorySubscriberIndex", async () => {
  const index = new MemorySubscriberIndex();
  return { index, cleanup: () => index.close() };
}, { persistent: false });
