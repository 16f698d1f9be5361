/** The subject tree (lib/server/subjects.ts): which consumers match a topic, and removal. */
import { describe, expect, test } from "bun:test";
import type { Consumer } from "../../lib/server/consumer.ts";
import { filterMatches, SubjectTree } from "../../lib/server/subjects.ts";

const consumer = (id: number, filter: string): Consumer => ({ id, filter, ackPolicy: "cumulative" });

/** The filters of the consumers that match `topic`, sorted (each as `id:filter`). */
function matching(tree: SubjectTree, topic: string): string[] {
  return tree
    .match(topic)
    .map((c) => `${c.id}:${c.filter}`)
    .sort();
}

describe("SubjectTree", () => {
  const filters = ["orders", "orders.eu", "orders.*", "orders.>", "*.eu", ">", "orders.*.vat", "*", "billing.>"];
  const tree = new SubjectTree();
  for (const f of filters) tree.add(consumer(1, f));

  test.each([
    ["orders", ["orders", "*", ">"]],
    ["orders.eu", ["orders.eu", "orders.*", "orders.>", "*.eu", ">"]],
    ["orders.us", ["orders.*", "orders.>", ">"]],
    ["orders.eu.vat", ["orders.>", ">", "orders.*.vat"]],
    ["orders.eu.vat.x", ["orders.>", ">"]],
    ["billing", ["*", ">"]],
    ["billing.eu", ["*.eu", ">", "billing.>"]],
    ["other.eu.x", [">"]],
  ])("match(%p) gives every filter that matches it and only those", (topic, want) => {
    expect(matching(tree, topic)).toEqual(want.map((f) => `1:${f}`).sort());
    // The tree and the one-filter test agree.
    expect(filters.filter((f) => filterMatches(f, topic)).sort()).toEqual([...want].sort());
  });

  test("'>' needs at least one token after the prefix; '*' exactly one", () => {
    const t = new SubjectTree();
    t.add(consumer(1, "a.>"));
    t.add(consumer(2, "a.*"));
    expect(matching(t, "a")).toEqual([]);
    expect(matching(t, "a.b")).toEqual(["1:a.>", "2:a.*"]);
    expect(matching(t, "a.b.c")).toEqual(["1:a.>"]);
    expect(matching(t, "b.a")).toEqual([]);
  });

  test("consumers of several ids with one filter each match once; remove takes out one (id, filter)", () => {
    const t = new SubjectTree();
    t.add(consumer(1, "x.*"));
    t.add(consumer(2, "x.*"));
    t.add(consumer(2, "x.>"));
    expect(t.size).toBe(3);
    expect(matching(t, "x.y")).toEqual(["1:x.*", "2:x.*", "2:x.>"]);
    expect(t.remove(2, "x.*")).toMatchObject({ id: 2, filter: "x.*" });
    expect(t.remove(2, "x.*")).toBeUndefined();
    expect(t.remove(3, "x.>")).toBeUndefined();
    expect(t.remove(1, "no.such")).toBeUndefined();
    expect(matching(t, "x.y")).toEqual(["1:x.*", "2:x.>"]);
    t.remove(1, "x.*");
    t.remove(2, "x.>");
    expect(t.size).toBe(0);
    expect(matching(t, "x.y")).toEqual([]);
    // Emptied nodes were pruned: adding again works as new.
    t.add(consumer(4, "x.y"));
    expect(matching(t, "x.y")).toEqual(["4:x.y"]);
  });
});
