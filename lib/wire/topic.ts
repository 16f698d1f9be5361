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

/** True when `filter` holds a wildcard token (`*` or `>`): a pattern, not a topic name. */
export function isPattern(filter: string): boolean {
  return filter.includes("*") || filter.includes(">");
}

/**
 * Returns why `filter` is not a valid subscription filter, or null when it is. A filter is a
 * topic name, or a pattern: tokens as in a name, where a token may be `*` (exactly one token)
 * and the last token may be `>` (one or more trailing tokens).
 */
export function patternProblem(filter: string): string | null {
  if (!isPattern(filter)) return topicProblem(filter);
  const bytes = Buffer.byteLength(filter, "utf8");
  if (bytes > MAX_TOPIC_BYTES) return `pattern is ${bytes} bytes, above the limit of ${MAX_TOPIC_BYTES}`;
  const tokens = filter.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.length === 0) return 'pattern has an empty token (a leading, trailing or double ".")';
    if (token === "*") continue;
    if (token === ">") {
      if (i < tokens.length - 1) return '">" must be the last token (it matches one or more trailing tokens)';
      continue;
    }
    if (token.includes("*") || token.includes(">")) return `token ${JSON.stringify(token)} mixes a wildcard with other characters; "*" and ">" must be whole tokens`;
    if (!TOKEN.test(token)) {
      const bad = [...token].find((c) => !/[A-Za-z0-9_-]/.test(c))!;
      return `pattern contains ${JSON.stringify(bad)}; tokens may hold only letters, digits, "_" and "-", or be "*" or ">"`;
    }
  }
  return null;
}

/** Throws INVALID_TOPIC naming the problem of a subscription filter (a topic name or a pattern). */
export function checkPattern(filter: string): void {
  if (!isPattern(filter)) return checkTopic(filter);
  const problem = patternProblem(filter);
  if (problem) throw new MqError(Code.InvalidTopic, `invalid pattern ${JSON.stringify(filter.slice(0, 60))}: ${problem}`);
}
