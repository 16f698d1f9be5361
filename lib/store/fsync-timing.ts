/**
 * How long the fsyncs of the topic files take (the group commit's `sync`), for /metrics
 * (`mq_fsync_seconds`). One per process: `mq up` runs one store.
 */
import { Histogram } from "../histogram.ts";

export const fsyncSeconds = new Histogram();
