/**
 * A TCP proxy on loopback for fault and network tests: it forwards byte for byte between a
 * client and `target`, and can delay each direction (a 20 ms round trip is `delayMs: 10`),
 * cut every connection at once, cut one after exactly N bytes (mid-frame), and refuse new
 * connections for a while. Order is kept; nothing is dropped unless a cut says so.
 */
import type { Socket, TCPSocketListener } from "bun";

type Direction = "up" | "down"; // up: client → target; down: target → client

interface Leg {
  /** Bytes waiting for their due time, oldest first. */
  queue: Array<{ due: number; bytes: Uint8Array }>;
  /** Bytes the destination did not take yet (Bun sockets do not buffer partial writes). */
  backlog: Uint8Array | null;
  timer: ReturnType<typeof setTimeout> | null;
  dest: Socket<Pair> | null;
}

interface Pair {
  client: Socket<Pair>;
  target: Socket<Pair> | null;
  up: Leg;
  down: Leg;
  /** Bytes forwarded upwards so far, for `cutUpAfter`. */
  upBytes: number;
  /** Cut this pair once this many bytes went up. */
  cutAt: number;
  closed: boolean;
}

export class TcpProxy {
  /** One-way delay in ms, applied to bytes as they arrive. */
  delayMs: number;
  /** While true, new connections are closed at once (the server looks down). */
  refusing = false;
  /** Every pair ever opened, for counts in tests. */
  connections = 0;
  private readonly pairs = new Set<Pair>();
  private nextCutAfter: number | null = null;

  private constructor(
    private readonly listener: TCPSocketListener<Pair>,
    delayMs: number,
  ) {
    this.delayMs = delayMs;
  }

  get port(): number {
    return this.listener.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(target: { hostname: string; port: number }, options: { delayMs?: number } = {}): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const newLeg = (): Leg => ({ queue: [], backlog: null, timer: null, dest: null });
    const listener = Bun.listen<Pair>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (client) => {
          if (proxy.refusing) return void client.end();
          proxy.connections++;
          const pair: Pair = { client, target: null, up: newLeg(), down: newLeg(), upBytes: 0, cutAt: proxy.nextCutAfter ?? Infinity, closed: false };
          proxy.nextCutAfter = null;
          client.data = pair;
          proxy.pairs.add(pair);
          pair.down.dest = client;
          Bun.connect<Pair>({
            hostname: target.hostname,
            port: target.port,
            socket: {
              open: (t) => {
                t.data = pair;
                pair.target = t;
                pair.up.dest = t;
                if (pair.closed) return void t.end();
                proxy.pump(pair, "up");
              },
              data: (_t, chunk) => proxy.arrive(pair, "down", chunk),
              drain: () => proxy.pump(pair, "up"),
              close: () => proxy.close(pair),
              error: () => proxy.close(pair),
            },
          }).catch(() => proxy.close(pair));
        },
        data: (client, chunk) => proxy.arrive(client.data, "up", chunk),
        drain: (client) => proxy.pump(client.data, "down"),
        close: (client) => client.data && proxy.close(client.data),
        error: (client) => client.data && proxy.close(client.data),
      },
    });
    proxy = new TcpProxy(listener, options.delayMs ?? 0);
    return proxy;
  }

  /** Closes every open connection, both sides, dropping bytes still in flight. */
  cutAll(): void {
    for (const pair of [...this.pairs]) this.close(pair);
  }

  /** The next connection is cut after exactly `bytes` bytes went up (mid-frame, most likely). */
  cutNextAfter(bytes: number): void {
    this.nextCutAfter = bytes;
  }

  /** Open connections now. */
  get open(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cutAll();
    this.listener.stop(true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private arrive(pair: Pair, dir: Direction, chunk: Uint8Array): void {
    if (pair.closed) return;
    let bytes = new Uint8Array(chunk); // a copy: the runtime may reuse its read buffer
    if (dir === "up") {
      const room = pair.cutAt - pair.upBytes;
      if (bytes.length > room) bytes = bytes.subarray(0, room);
      pair.upBytes += bytes.length;
    }
    if (bytes.length > 0) pair[dir].queue.push({ due: performance.now() + this.delayMs, bytes });
    this.pump(pair, dir);
  }

  /** Writes what is due, in order; reschedules itself for the rest. */
  private pump(pair: Pair | undefined, dir: Direction): void {
    if (pair === undefined || pair.closed) return; // a late event of a closed pair
    const leg = pair[dir];
    if (leg.dest === null) return; // target not connected yet: `open` pumps
    if (leg.backlog) {
      const n = leg.dest.write(leg.backlog);
      leg.backlog = n < leg.backlog.length ? leg.backlog.subarray(n) : null;
      if (leg.backlog) return; // drain pumps again
    }
    const now = performance.now();
    while (leg.queue.length > 0 && leg.queue[0]!.due <= now) {
      const { bytes } = leg.queue.shift()!;
      const n = leg.dest.write(bytes);
      if (n < bytes.length) {
        leg.backlog = bytes.subarray(n);
        return;
      }
    }
    if (dir === "up" && pair.upBytes >= pair.cutAt && leg.queue.length === 0) return this.close(pair);
    if (leg.queue.length > 0 && !leg.timer) {
      leg.timer = setTimeout(() => {
        leg.timer = null;
        this.pump(pair, dir);
      }, Math.max(0, leg.queue[0]!.due - now));
    }
  }

  private close(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    this.pairs.delete(pair);
    for (const leg of [pair.up, pair.down]) if (leg.timer) clearTimeout(leg.timer);
    pair.client.end();
    pair.target?.end();
  }
}
