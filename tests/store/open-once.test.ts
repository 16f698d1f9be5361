/** OneOpenAtATime (lib/store/open-once.ts): the topic stores' one open of a name at a time. */
import { describe, expect, test } from "bun:test";
import { OneOpenAtATime } from "../../lib/store/open-once.ts";

describe("OneOpenAtATime", () => {
  test("an open of a name under way makes the others wait for it, then ask again; other names do not wait", async () => {
    const once = new OneOpenAtATime();
    const gate = Promise.withResolvers<void>();
    const calls: string[] = [];
    const slow = () => once.run("a", async () => (calls.push("open a"), await gate.promise, "a opened"), async () => (calls.push("again a"), "a found"));
    const first = slow();
    const second = slow();
    expect(await once.run("b", async () => (calls.push("open b"), "b opened"), async () => "b found")).toBe("b opened");
    gate.resolve();
    expect(await Promise.all([first, second])).toEqual(["a opened", "a found"]);
    expect(calls).toEqual(["open a", "open b", "again a"]);
  });

  test("after a failed open the one waiting asks again, and a later open of the name runs anew", async () => {
    const once = new OneOpenAtATime();
    const failing = once.run("t", () => Promise.reject(new Error("disk full")), async () => "unused");
    const waiting = once.run("t", async () => "unused", async () => "asked again");
    await expect(failing).rejects.toThrow("disk full");
    expect(await waiting).toBe("asked again");
    expect(await once.run("t", async () => "opened anew", async () => "unused")).toBe("opened anew");
  });
});
