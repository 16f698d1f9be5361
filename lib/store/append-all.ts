/** Appending a publish batch to a topic log, by one group-commit entry where the log can. */
import { idAt, type IdRun } from "./id-run.ts";
import type { AppendFields, TopicLog } from "./types.ts";

/**
 * Appends `data` to `log` (all at `time`, `fieldsOf(i)` with `data[i]`) and resolves with
 * their seqs, in order: through `appendBatch` (one entry and one promise for the batch) when
 * the log has it, else one `append` per message, all in flight together (the same commit).
 */
export function appendAll(log: TopicLog, data: Uint8Array[], time: number, fieldsOf: ((i: number) => AppendFields | undefined) | undefined, ids?: IdRun): Promise<number[]> {
  if (log.appendBatch) {
    const fields = new Array<AppendFields | undefined>(data.length);
    if (fieldsOf) for (let i = 0; i < data.length; i++) fields[i] = fieldsOf(i);
    return log.appendBatch(data, time, fields, ids);
  }
  const fieldsWithId = (i: number): AppendFields | undefined => (ids ? { ...fieldsOf?.(i), msgId: idAt(ids, i) } : fieldsOf?.(i));
  return Promise.all(data.map((d, i) => log.append(d, time, fieldsWithId(i))));
}
