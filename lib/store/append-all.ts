/** Appending a publish batch to a topic log, by one group-commit entry where the log can. */
import { idAt, type IdRun } from "./id-run.ts";
import type { AppendFields, TopicLog } from "./types.ts";

/** No message of a batch has fields: `fields[i]` is undefined for every i. */
const NO_FIELDS: Array<AppendFields | undefined> = [];

/**
 * Appends `data` to `log` (all at `time`, `fieldsOf(i)` with `data[i]`) and resolves with
 * their seqs, in order: through `appendBatch` (one entry and one promise for the batch) when
 * the log has it, else one `append` per message, all in flight together (the same commit).
 */
export function appendAll(log: TopicLog, data: Uint8Array[], time: number, fieldsOf: ((i: number) => AppendFields | undefined) | undefined, ids?: IdRun): Promise<number[]> {
  if (log.appendBatch) {
    if (!fieldsOf) return log.appendBatch(data, time, NO_FIELDS, ids);
    const fields = new Array<AppendFields | undefined>(data.length);
    for (let i = 0; i < data.length; i++) fields[i] = fieldsOf(i);
    return log.appendBatch(data, time, fields, ids);
  }
  const fieldsWithId = (i: number): AppendFields | undefined => (ids ? { ...fieldsOf?.(i), msgId: idAt(ids, i) } : fieldsOf?.(i));
  return Promise.all(data.map((d, i) => log.append(d, time, fieldsWithId(i))));
}

/**
 * `appendAll` through the log's `appendOnce` (a log several servers share): those whose id the
 * topic stored at or after `since` are not stored again; their indexes are in `duplicates`
 * (ascending). A log without it stores them all.
 */
export async function appendAllOnce(
  log: TopicLog,
  data: Uint8Array[],
  time: number,
  fieldsOf: ((i: number) => AppendFields | undefined) | undefined,
  ids: IdRun | undefined,
  since: number,
): Promise<{ seqs: number[]; duplicates: number[] }> {
  if (!log.appendOnce) return { seqs: await appendAll(log, data, time, fieldsOf, ids), duplicates: [] };
  const fields = new Array<AppendFields | undefined>(data.length);
  if (fieldsOf) for (let i = 0; i < data.length; i++) fields[i] = fieldsOf(i);
  return log.appendOnce(data, time, fields, ids, since);
}

/** The indexes below `count` that are not in `skipped` (ascending). */
export function indexesBesides(count: number, skipped: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0, s = 0; i < count; i++) {
    if (s < skipped.length && skipped[s] === i) s++;
    else out.push(i);
  }
  return out;
}
