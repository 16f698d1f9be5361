/**
 * The peer measurement for docs/benchmarks.md: core NATS publish → subscribe throughput
 * over loopback, with the same message count and size as `mq bench`. Core NATS keeps
 * nothing on disk and drops messages for slow consumers, so this is the ceiling of a
 * broker without durability, not a like-for-like durable comparison.
 *
 *     nats-server -p 4333 &
 *     ./node_modules/.bin/bun bench/nats-core.ts 4333 100000 128
 */
const [port = "4222", countArg = "100000", sizeArg = "128"] = process.argv.slice(2);
const count = Number(countArg);
const size = Number(sizeArg);
const enc = new TextEncoder();

function connectNats(onData: (chunk: Uint8Array) => void) {
  return Bun.connect({
    hostname: "127.0.0.1",
    port: Number(port),
    socket: {
      open(s) {
        s.write(enc.encode('CONNECT {"verbose":false,"pedantic":false}\r\n'));
      },
      data(_s, chunk) {
        onData(chunk);
      },
    },
  });
}

let received = 0;
let pongs = 0;
const done = Promise.withResolvers<void>();
const subPong = Promise.withResolvers<void>();
// Count "MSG " headers; payloads are all 'x', so they cannot contain one.
let tail = "";
const sub = await connectNats((chunk) => {
  const text = tail + new TextDecoder().decode(chunk);
  let i = text.indexOf("MSG ");
  while (i >= 0) {
    received++;
    i = text.indexOf("MSG ", i + 4);
  }
  if (text.includes("PONG")) subPong.resolve();
  tail = text.slice(-3);
  if (received >= count) done.resolve();
});
sub.write(enc.encode("SUB bench 1\r\nPING\r\n"));
await subPong.promise;

const pubPong = Promise.withResolvers<void>();
const pub = await connectNats((chunk) => {
  if (new TextDecoder().decode(chunk).includes("PONG")) pubPong.resolve(++pongs as never);
});
const frame = enc.encode(`PUB bench ${size}\r\n${"x".repeat(size)}\r\n`);
const batch = 1000;
const buf = new Uint8Array(frame.length * batch);
for (let i = 0; i < batch; i++) buf.set(frame, i * frame.length);
const start = performance.now();
for (let sent = 0; sent < count; sent += batch) {
  let off = 0;
  const chunk = buf.subarray(0, frame.length * Math.min(batch, count - sent));
  while (off < chunk.length) {
    const n = pub.write(chunk.subarray(off));
    off += Math.max(n, 0);
    if (off < chunk.length) await Bun.sleep(0);
  }
  await Bun.sleep(0);
}
pub.write(enc.encode("PING\r\n"));
await pubPong.promise;
const pubSeconds = (performance.now() - start) / 1000;
await Promise.race([done.promise, Bun.sleep(30_000)]);
const seconds = (performance.now() - start) / 1000;
console.log(JSON.stringify({ peer: "nats-core", messages: count, size, received, pub_msgs_per_s: Math.round(count / pubSeconds), sub_msgs_per_s: Math.round(received / seconds), seconds: Math.round(seconds * 1000) / 1000 }));
pub.end();
sub.end();
