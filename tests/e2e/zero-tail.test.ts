/**
 * The zeros a segment keeps after its last record under --fsync always (docs/storage.md,
 * "Free space after the last record"), through the compiled binary: a server SIGKILLed in
 * the middle of a stream of single publishes leaves them on disk; the next start takes them
 * for free space (no damage reported, nothing copied aside), every acknowledged publish is
 * delivered, new publishes go on right after the last record, and a clean stop cuts them.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { createOn, memoryStore, mq, startLocal, startServer, teardown, tmpDir, type ServerHandle } from "./harness.ts";
import { drain, RecordingPublisher, verify, type Acked } from "../faults/fault-kit.ts";
import { FILE_HEADER, RECORD_HEADER, segmentFiles } from "../store/segment-kit.ts";

const TOPIC = "zeros";
const SYNC = [0xf8, 0x6d, 0x71, 0xa7];

/** Seqs of the records back to back from the file header (parsed here), and where the last one ends. */
function records(file: string): { seqs: number[]; end: number } {
  const buf = fs.readFileSync(file);
  const seqs: number[] = [];
  let pos = FILE_HEADER;
  while (pos + RECORD_HEADER <= buf.length && SYNC.every((b, i) => buf[pos + i] === b)) {
    seqs.push(Number(buf.readBigUInt64BE(pos + 16)));
    pos += RECORD_HEADER + buf.readUInt16BE(pos + 14) + buf.readUInt32BE(pos + 8);
  }
  return { seqs, end: pos };
}

test.skipIf(memoryStore)("SIGKILL during single publishes under --fsync always: the zeros after the last record are free space at the next start, no acknowledged publish is lost, a clean stop cuts them", async () => {
  const dataDir = tmpDir("mq-zero-tail-");
  let server: ServerHandle = await startServer({ dataDir, args: ["--fsync", "always"] });
  const local = await startLocal(server.address);
  const publishers: RecordingPublisher[] = [];
  try {
    const subscriber = await createOn(local.socket);
    expect((await mq(local.socket, ["sub", String(subscriber), TOPIC])).code).toBe(0);
    for (let p = 0; p < 2; p++) publishers.push(new RecordingPublisher(`z${p}`, local.socket, await createOn(local.socket), TOPIC));
    const deadline = Date.now() + 60_000;
    let acks = 0;
    const { promise: killTime, resolve: kill } = Promise.withResolvers<void>();
    const running = publishers.map((p) => p.run(150, deadline, () => ++acks === 100 && kill()));
    await killTime;
    await server.daemon.kill9();

    // What the kill left: the records, then zeros up to a block boundary.
    const topicDir = path.join(dataDir, "topics", TOPIC);
    const [segment] = segmentFiles(topicDir);
    const killed = records(segment!);
    const size = fs.statSync(segment!).size;
    expect(size % 4096).toBe(0);
    expect(size).toBeGreaterThan(killed.end);
    expect(fs.readFileSync(segment!).subarray(killed.end).every((b) => b === 0)).toBe(true);

    server = await startServer({ dataDir, port: server.port, args: ["--fsync", "always"] });
    expect(server.daemon.log).not.toMatch(/damaged|cut \d+ bytes|lost \d+ message|may be lost/);
    expect(fs.existsSync(path.join(topicDir, "damaged"))).toBe(false);
    await Promise.all(running);

    const acked: Acked[] = publishers.flatMap((p) => p.acked);
    expect(acked.length).toBe(300);
    const v = verify(await drain(local.socket, subscriber, new Set(acked.map((a) => a.seq)), Date.now() + 30_000), acked);
    expect(v.problems).toEqual([]);

    // A clean stop: the records of both runs back to back (the second run wrote where the first ended), no zeros after them.
    expect(await local.daemon.stop()).toBe(0);
    expect(await server.daemon.stop()).toBe(0);
    const stopped = records(segment!);
    expect(stopped.seqs.slice(0, killed.seqs.length)).toEqual(killed.seqs);
    expect(stopped.seqs).toEqual([...stopped.seqs].sort((a, b) => a - b));
    for (const a of acked) expect(stopped.seqs).toContain(a.seq);
    expect(fs.statSync(segment!).size).toBe(stopped.end);
  } finally {
    for (const p of publishers) p.close();
    await teardown([local.daemon, server.daemon], [dataDir, local.dataDir]);
  }
});
