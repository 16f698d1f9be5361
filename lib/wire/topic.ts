/** Topic names (SPEC §6): 1–200 bytes, tokens separated by ".", each token [A-Za-z0-9_-]+. */
import { Code, MqError } from "../errors.ts";

export const MAX_TOPIC_BYTES = 200;
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Returns why `name` is not a valid topic name, or null when it is. */
export function topicProblem(name: string): string | null {
  if (name.length === 0) return "name is empty";
  // The allowed characters are ASCII, so bytes = characters whenever the name is valid;
  // count UTF-8 bytes anyway so the message is right for any input.
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > MAX_TOPIC_BYTES) return `name is ${bytes} bytes, above the limit of ${MAX_TOPIC_BYTES}`;
  if (name.includes("*") || name.includes(">")) return 'name contains "*" or ">", which are reserved for wildcard subscriptions';
  for (const token of name.split(".")) {
    if (token.length === 0) return 'name has an empty token (a leading, trailing or double ".")';
    if (!TOKEN.test(token)) {
      const bad = [...token].find((c) => !/[A-Za-z0-9_-]/.test(c))!;
      return `name contains ${JSON.stringify(bad)}; tokens may hold only letters, digits, "_" and "-"`;
    }
  }
  return null;
}

/** Throws INVALID_TOPIC naming the problem. */
export function checkTopic(name: string): void {
  const problem = topicProblem(name);
  if (problem) throw new MqError(Code.InvalidTopic, `invalid topic ${JSON.stringify(name.slice(0, 60))}: ${problem}`);
}
