import { describe, expect, test } from "bun:test";
import { Code, MqError } from "../../lib/errors.ts";
import { checkPattern, checkTopic, isPattern, MAX_TOPIC_BYTES, patternProblem, topicProblem } from "../../lib/wire/topic.ts";

describe("topicProblem", () => {
  test.each([
    ["a single letter", "a"],
    ["two tokens", "a.b"],
    ["every allowed character class", "A-b_c.9"],
    ["many tokens", "orders.eu-west.v2.created"],
    ["a token of digits only", "123"],
    ["a token of - and _ only", "-._"],
    ["a name of exactly 200 bytes", "a".repeat(200)],
    ["a name of 200 bytes with dots", "ab.".repeat(66) + "ab"],
  ])("topicProblem accepts %s", (_name, topic) => {
    expect(topicProblem(topic)).toBeNull();
    expect(() => checkTopic(topic)).not.toThrow();
  });

  test("MAX_TOPIC_BYTES is 200, the length of the longest accepted test names", () => {
    expect(MAX_TOPIC_BYTES).toBe(200);
    expect(("ab.".repeat(66) + "ab").length).toBe(200);
  });

  // Each row: the name, and a piece of text the message must hold to say what is wrong.
  test.each([
    ["the empty name", "", "empty"],
    ["a name of 201 bytes", "a".repeat(201), "201 bytes"],
    ["a name of 202 bytes in 101 characters", "é".repeat(101), "202 bytes"],
    ["a double dot", "a..b", "empty token"],
    ["a leading dot", ".a", "empty token"],
    ["a trailing dot", "a.", "empty token"],
    ["a lone dot", ".", "empty token"],
    ["a slash", "a/b", '"/"'],
    ["a path escape", "../x", "empty token"],
    ["a backslash", "a\\b", '"\\\\"'],
    ["a space", "a b", '" "'],
    ["a star wildcard", "*", '"*"'],
    ["a star inside a token", "a*", '"*"'],
    ["a > wildcard", "a.>", '">"'],
    ["a non-ASCII letter", "é", '"é"'],
    ["a non-ASCII letter in a longer name", "caf\u00e9.x", '"é"'],
    ["an emoji", "a\u{1F600}", '"\u{1F600}"'],
    ["a NUL byte", "a\u0000b", '"\\u0000"'],
    ["a newline", "a\nb", '"\\n"'],
    ["a colon", "a:b", '":"'],
  ])("topicProblem rejects %s and names the problem", (_name, topic, says) => {
    const problem = topicProblem(topic);
    expect(problem).not.toBeNull();
    expect(problem!).toContain(says);
  });

  test("topicProblem names the first bad character of a token", () => {
    expect(topicProblem("ok.a/b c")).toContain('"/"');
  });
});

describe("checkTopic", () => {
  test("checkTopic throws INVALID_TOPIC naming the topic and the problem", () => {
    let caught: unknown;
    try {
      checkTopic("a/b");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MqError);
    const err = caught as MqError;
    expect(err.code).toBe(Code.InvalidTopic);
    expect(err.fatal).toBe(false);
    expect(err.message).toBe(`invalid topic "a/b": ${topicProblem("a/b")}`);
  });

  test("checkTopic cuts a long topic in its message", () => {
    let message = "";
    try {
      checkTopic("x".repeat(5000));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("5000 bytes");
    expect(message.length).toBeLessThan(200);
  });

  test("checkTopic accepts a valid name silently", () => {
    expect(checkTopic("a.b")).toBeUndefined();
  });
});

describe("patternProblem / checkPattern", () => {
  test.each(["orders", "orders.*", "orders.>", "*", ">", "*.eu", "a.*.c", "a.*.>", "*.*"])("accepts %p", (filter) => {
    expect(patternProblem(filter)).toBeNull();
    expect(() => checkPattern(filter)).not.toThrow();
  });

  test.each([
    ["orders.*x", '"*x" mixes a wildcard'],
    ["orders.x>", '"x>" mixes a wildcard'],
    [">.a", '">" must be the last token'],
    ["a.>.b", '">" must be the last token'],
    ["a..*", "empty token"],
    [".*", "empty token"],
    ["*.", "empty token"],
    ["a.$.*", 'contains "$"'],
    [`${"a.".repeat(100)}*`, "201 bytes"],
  ])("refuses %p with INVALID_TOPIC naming the pattern and the rule", (filter, rule) => {
    expect(patternProblem(filter)).toContain(rule);
    let err: unknown;
    try {
      checkPattern(filter);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MqError);
    expect((err as MqError).code).toBe(Code.InvalidTopic);
    expect((err as MqError).message).toContain(`invalid pattern ${JSON.stringify(filter.slice(0, 60))}`);
  });

  test("a filter without a wildcard is checked as a topic name; checkTopic still refuses a pattern", () => {
    expect(isPattern("a.b")).toBe(false);
    expect(() => checkPattern("a..b")).toThrow(/invalid topic "a\.\.b"/);
    expect(() => checkTopic("orders.*")).toThrow(/reserved for wildcard subscriptions/);
  });
});
