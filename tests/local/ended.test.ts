/** endedTopics (lib/local/ended.ts): which topics the local broker forgets after an unsub reply. */
import { expect, test } from "bun:test";
import { endedTopics } from "../../lib/local/ended.ts";

test("endedTopics takes the server's `dropped` lists, and falls back to the unsubscribed topic for an older server", () => {
  expect(
    endedTopics({
      topics: [
        { topic: "a.*", unsubscribed: true, dropped: ["a.x", "a.y"] },
        { topic: "a.keep", unsubscribed: true, dropped: [] },
        { topic: "b", unsubscribed: false, dropped: [] },
      ],
    }),
  ).toEqual(["a.x", "a.y"]);
  expect(endedTopics({ topics: [{ topic: "old", unsubscribed: true }, { topic: "never", unsubscribed: false }] })).toEqual(["old"]);
  expect(endedTopics({})).toEqual([]);
});
