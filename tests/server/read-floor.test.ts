/**
 * Topic.readFloor: the lowest seq a subscription or queue group of the topic reads next. The
 * file log lets its tail cache go below it (tests/store/topic-log.test.ts), so it must never
 * be above a seq some reader will still read from the log (other than after a rewind).
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Credits } from "../../lib/server/credits.ts";
import { Groups } from "../../lib/server/group.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";
import { FileGroupStore } from "../../lib/store/group-store.ts";
import { MemorySubscriberIndex, MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { fakeConnection, settled } from "./push-kit.ts";

async function topicWith(count: number): Promise<Topic> {
  const log = new MemoryTopicLog();
  for (let i = 0; i < count; i++) await log.append(new Uint8Array([i & 0xff]), 0);
  return new Topic("t", log, new MemorySubscriberIndex());
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe("Topic.readFloor", () => {
  test("no reader: the next seq (nothing stored is read again); then the lowest push position, which moves as subscriptions are pushed", async () => {
    const topic = await topicWith(10);
    expect(topic.readFloor()).toBe(11);
    const a = new Subscription(1, topic, 3);
    const b = new Subscription(2, topic, 7);
    topic.subscriptions.set(1, a);
    topic.subscriptions.set(2, b);
    expect(topic.readFloor()).toBe(3);
    const { conn } = fakeConnection();
    await a.push(conn, new Credits());
    expect(a.sentCursor).toBe(11);
    expect(topic.readFloor()).toBe(7); // b has not read 7..10 yet
    await b.push(conn, new Credits());
    expect(topic.readFloor()).toBe(11);
    // A reconnect rewinds to the acknowledged cursor: the floor follows it down.
    a.rewind();
    expect(topic.readFloor()).toBe(3);
  });

  test("a queue group reads from its next new seq, or from the first message it delivers again", async () => {
    const topic = await topicWith(20);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-floor-"));
    dirs.push(dir);
    const groups = new Groups(new FileGroupStore(path.join(dir, "groups.json")), { pump: () => {}, deadLetter: async () => {} });
    const member = await groups.join(topic, 1, { group: "g" }, 5);
    topic.subscriptions.set(1, member);
    expect(topic.readFloor()).toBe(5);
    const { conn } = fakeConnection();
    await member.push(conn, new Credits());
    await settled();
    expect(member.group.pending.next).toBe(21); // all 16 sent (its window is larger)
    expect(topic.readFloor()).toBe(21);
    // Given back (a nak, a lost member, a read cut short): read again from the log.
    expect(member.group.pending.release(9)).toBe(1);
    expect(member.group.pending.release(7)).toBe(1);
    expect(topic.readFloor()).toBe(7);
  });
});
