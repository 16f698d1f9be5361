/**
 * Tools of the fault tests: publishers that record exactly which publishes were
 * acknowledged, and a checker of what subscribers received against that record.
 */
import { MqClient } from "../../lib/client/client.ts";
import { MqError } from "../../lib/errors.ts";
import { jsonLines, mq } from "../e2e/harness.ts";

export interface Acked {
  seq: number;
  payload: string;
}

/** A publisher on one local broker, with its own connection and id; reconnects after a local broker crash. */
export class RecordingPublisher {
  readonly acked: Acked[] = [];
  failed = 0;
  attempts = 0;
  private client: MqClient | null = null;

  constructor(
    readonly name: string,
    private readonly socket: string,
    readonly id: number,
    readonly topic: string,
  ) {}

  /** Publishes `${name}-${i}` one after the other until `count` acks or the deadline. */
  async run(count: number, deadline: number, onAck?: () => void): Promise<void> {
    let i = 0;
    while (this.acked.length < count && Date.now() < deadline) {
      const payload = `${this.name}-${i++}`;
      this.attempts++;
      try {
        this.client ??= await MqClient.connect({ socket: this.socket });
        const r = await this.client.publish(this.id, this.topic, payload);
        this.acked.push({ seq: r.seq, payload });
        onAck?.();
      } catch (err) {
        if (!(err instanceof MqError)) throw err;
        this.failed++;
        if (err.code === "UNAVAILABLE") {
          this.client?.close();
          this.client = null;
        }
        await Bun.sleep(50);
      }
    }
  }

  close(): void {
    this.client?.close();
  }
}

/** `mq pub --lines --json` of `payloads` through the local broker at `socket`: what was acknowledged, with its seq. */
export async function publishAcked(socket: string, id: number, topic: string, payloads: string[]): Promise<Acked[]> {
  const r = await mq(socket, ["pub", String(id), topic, "--lines", "--json"], { stdin: payloads.join("\n"), timeoutMs: 120_000 });
  if (r.code !== 0 || r.stderr !== "") throw new Error(`mq pub --lines exited ${r.code}: ${r.stderr}`);
  return jsonLines(r.stdout).map((o, i) => ({ seq: o.seq as number, payload: payloads[i]! }));
}

export interface Received {
  seq: number;
  payload: string;
}

/** Receives for `id` until every seq in `want` has been seen (or the deadline passes). */
export async function drain(socket: string, id: number, want: Set<number>, deadline: number): Promise<Received[]> {
  const got: Received[] = [];
  const seen = new Set<number>();
  const missing = () => [...want].some((s) => !seen.has(s));
  while (missing() && Date.now() < deadline) {
    let client: MqClient | null = null;
    try {
      client = await MqClient.connect({ socket });
      while (missing() && Date.now() < deadline) {
        const batch = await client.recv(id, { max: 500, waitMs: 1000 });
        for (const m of batch.messages) {
          got.push({ seq: m.seq, payload: new TextDecoder().decode(m.data) });
          seen.add(m.seq);
        }
        await batch.ack();
      }
    } catch (err) {
      if (!(err instanceof MqError)) throw err;
      await Bun.sleep(100);
    } finally {
      client?.close();
    }
  }
  return got;
}

export interface Verdict {
  received: number;
  distinct: number;
  duplicates: number;
  /** Problems: a gap, a step backwards that is not a re-delivery, an acked publish missing or with other bytes. */
  problems: string[];
}

/**
 * At least once, in order: every received seq is either the next one (max + 1) or a
 * re-delivery of one already seen; every acknowledged publish was received with its bytes.
 */
export function verify(got: Received[], acked: Acked[], firstSeq = 1): Verdict {
  const problems: string[] = [];
  const bySeq = new Map<number, string>();
  let max = firstSeq - 1;
  let duplicates = 0;
  for (const m of got) {
    if (m.seq === max + 1) {
      max = m.seq;
      bySeq.set(m.seq, m.payload);
    } else if (m.seq <= max) {
      duplicates++;
      if (bySeq.get(m.seq) !== m.payload) problems.push(`seq ${m.seq} re-delivered with other bytes: ${m.payload} vs ${bySeq.get(m.seq)}`);
    } else problems.push(`gap: seq ${m.seq} after ${max}`);
  }
  for (const a of acked) {
    const p = bySeq.get(a.seq);
    if (p === undefined) problems.push(`acknowledged seq ${a.seq} (${a.payload}) never received`);
    else if (p !== a.payload) problems.push(`acknowledged seq ${a.seq} was ${a.payload}, received ${p}`);
  }
  return { received: got.length, distinct: bySeq.size, duplicates, problems: problems.slice(0, 20) };
}

/** A small seeded PRNG (mulberry32), so that a failing fault schedule can be replayed. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
