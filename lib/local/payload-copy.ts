/**
 * Copies of a pushed frame's payloads, which are views into the socket's read buffer (reused
 * for the next read). Small payloads are copied side by side into shared blocks of up to
 * BLOCK_BYTES — one allocation per block instead of one per message; a message kept longer
 * than its neighbours holds at most one block alive. A payload of BLOCK_BYTES or more gets
 * its own copy.
 */
const BLOCK_BYTES = 64 * 1024;

export function copyPayloads(payloads: readonly Uint8Array[]): Uint8Array[] {
  const copies = new Array<Uint8Array>(payloads.length);
  let i = 0;
  while (i < payloads.length) {
    // The run of payloads from i that fits one block.
    let bytes = 0;
    let j = i;
    while (j < payloads.length && payloads[j]!.length < BLOCK_BYTES && bytes + payloads[j]!.length <= BLOCK_BYTES) bytes += payloads[j++]!.length;
    if (j === i) {
      copies[i] = payloads[i]!.slice();
      i++;
      continue;
    }
    const block = new Uint8Array(bytes);
    let pos = 0;
    for (; i < j; i++) {
      const p = payloads[i]!;
      block.set(p, pos);
      copies[i] = block.subarray(pos, pos + p.length);
      pos += p.length;
    }
  }
  return copies;
}
