/** Daemon logs: consola with levels, always on stderr (stdout belongs to command output). */
import { createConsola, type ConsolaInstance } from "consola";

const root = createConsola({
  stdout: process.stderr,
  stderr: process.stderr,
  // MQ_LOG_LEVEL: 0 errors only … 3 info (default) … 4 debug.
  level: process.env.MQ_LOG_LEVEL !== undefined && /^\d$/.test(process.env.MQ_LOG_LEVEL) ? Number(process.env.MQ_LOG_LEVEL) : 3,
});

/** One logger per component; put the entity (topic, connection, id) in every line. */
export function logger(tag: string): ConsolaInstance {
  return root.withTag(tag);
}
