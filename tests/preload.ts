/**
 * Loaded before the tests (bunfig.toml, [test] preload). A test that fails before its teardown
 * must not leave its daemons running after the run: they are killed, by PID, once every test has
 * run (bun test emits no process "exit" to hook instead).
 */
import { afterAll } from "bun:test";
import { killDaemonsLeft } from "./e2e/harness.ts";

afterAll(() => {
  const killed = killDaemonsLeft();
  if (killed > 0) console.error(`tests/preload.ts: killed ${killed} daemon(s) a test left running`);
});
