/** GroupCommit (lib/store/group-commit.ts): what goes in one commit, and that an idle queue starts at once. */
import { expect, test } from "bun:test";
import { GroupCommit } from "../../lib/store/group-commit.ts";

/** Runs `body` and says whether the event loop turned (an immediate or a 0 ms timer ran) before it resolved. */
async function turnedDuring(body: () => Promise<unknown>): Promise<boolean> {
  let turned = false;
  const immediate = setImmediate(() => (turned = true));
  const timer = setTimeout(() => (turned = true), 0);
  try {
    await body();
    return turned;
  } finally {
    clearImmediate(immediate);
    clearTimeout(timer);
  }
}

test("an add to an idle queue is committed before the event loop turns: no timer, no wait for more items", async () => {
  const batches: number[][] = [];
  const group = new GroupCommit<number, number>(async (items) => {
    batches.push(items);
    return items.map((n) => n * 10);
  });
  let result = 0;
  expect(await turnedDuring(async () => (result = await group.add(7)))).toBe(false);
  expect(result).toBe(70);
  expect(batches).toEqual([[7]]);
});

test("items added in one tick share a commit; those added while it runs share the next, which knows it waited", async () => {
  const commits: Array<{ items: string[]; waited: boolean }> = [];
  const running = Promise.withResolvers<void>();
  let first = true;
  const group = new GroupCommit<string, string>(async (items, waited) => {
    commits.push({ items, waited });
    if (first) {
      first = false;
      await running.promise;
    }
    return items.map((s) => s.toUpperCase());
  });
  const a = group.add("a");
  const bc = group.addMany(["b", "c"]);
  await Promise.resolve(); // the first commit is running now
  const d = group.add("d");
  const e = group.add("e");
  expect(group.busy).toBe(true);
  running.resolve();
  expect([await a, await bc, await d, await e]).toEqual(["A", ["B", "C"], "D", "E"]);
  expect(commits).toEqual([
    { items: ["a", "b", "c"], waited: false },
    { items: ["d", "e"], waited: true },
  ]);
  await group.idle();
  expect(group.busy).toBe(false);
});

test("release() lets the next batch start while the commit that released has not returned; a failed commit fails its own batch only", async () => {
  const events: string[] = [];
  const hold = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  const group = new GroupCommit<string, string>(async (items, _waited, release) => {
    events.push(`start ${items.join(",")}`);
    if (items[0] === "slow") {
      started.resolve();
      release();
      await hold.promise;
      throw new Error("sync failed");
    }
    return items;
  });
  const slow = group.add("slow");
  await started.promise;
  // Committed although "slow" has not returned (bounded: without release() it would wait for ever).
  const next = await Promise.race([group.add("next"), Bun.sleep(5000).then(() => "still waiting after 5 s")]);
  events.push(`done ${next}`);
  hold.resolve();
  await expect(slow).rejects.toThrow("sync failed");
  expect(events).toEqual(["start slow", "start next", "done next"]);
});
