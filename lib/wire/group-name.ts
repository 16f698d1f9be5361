/** Queue group names: 1-64 characters of [A-Za-z0-9_.-]. Checked by the CLI, the local broker and the server. */
import { Code, MqError } from "../errors.ts";

const GROUP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Returns why `name` is not a valid group name, or null when it is. */
export function groupNameProblem(name: string): string | null {
  return GROUP_NAME.test(name) ? null : `invalid group name ${JSON.stringify(name.slice(0, 80))}: use 1 to 64 characters of A-Z, a-z, 0-9, "_", "." and "-"`;
}

/** Throws BAD_REQUEST naming the problem. */
export function checkGroupName(name: string): void {
  const problem = groupNameProblem(name);
  if (problem) throw new MqError(Code.BadRequest, problem);
}
