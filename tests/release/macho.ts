/**
 * What macOS checks before it runs an executable, checked without a Mac: the code signature
 * of a 64-bit Mach-O (LC_CODE_SIGNATURE → SuperBlob → CodeDirectory) and whether each page
 * hash in it matches the page of the file. Apple Silicon kills an executable whose hashes do
 * not match (exit 137 before main); `codesign --force --sign - FILE` on the Mac re-signs it.
 */
import { createHash } from "node:crypto";

const MH_MAGIC_64 = 0xfeedfacf;
const LC_CODE_SIGNATURE = 0x1d;
const CSMAGIC_EMBEDDED_SIGNATURE = 0xfade0cc0;
const CSMAGIC_CODEDIRECTORY = 0xfade0c02;
const CS_HASHTYPE_SHA256 = 2;

export interface Signature {
  /** CodeDirectory flags: 0x2 ad-hoc, 0x20000 linker-signed, 0x10000 hardened runtime. */
  flags: number;
  identifier: string;
  /** Bytes of the file the page hashes cover. */
  codeLimit: number;
  /** Where the signature starts: everything before it should be covered. */
  signatureOffset: number;
  pages: number;
  /** Page indexes whose hash does not match the file. */
  badPages: number[];
}

/** The code signature of a Mach-O file, its page hashes recomputed; null when it has none. */
export function machoSignature(file: Uint8Array): Signature | null {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (v.getUint32(0, true) !== MH_MAGIC_64) throw new Error("not a 64-bit little-endian Mach-O file");
  const ncmds = v.getUint32(16, true);
  let at = 32; // sizeof(mach_header_64)
  let sig = -1;
  for (let i = 0; i < ncmds; i++) {
    if (v.getUint32(at, true) === LC_CODE_SIGNATURE) sig = v.getUint32(at + 8, true);
    at += v.getUint32(at + 4, true);
  }
  if (sig < 0) return null;
  // The signature blobs are big-endian.
  if (v.getUint32(sig, false) !== CSMAGIC_EMBEDDED_SIGNATURE) throw new Error(`no embedded signature at ${sig}`);
  const count = v.getUint32(sig + 8, false);
  for (let i = 0; i < count; i++) {
    const cd = sig + v.getUint32(sig + 16 + i * 8, false);
    if (v.getUint32(cd, false) !== CSMAGIC_CODEDIRECTORY) continue;
    const flags = v.getUint32(cd + 12, false);
    const hashOffset = v.getUint32(cd + 16, false);
    const identOffset = v.getUint32(cd + 20, false);
    const pages = v.getUint32(cd + 28, false);
    const codeLimit = v.getUint32(cd + 32, false);
    const hashSize = file[cd + 36]!;
    const hashType = file[cd + 37]!;
    const pageSize = 2 ** file[cd + 39]!;
    if (hashType !== CS_HASHTYPE_SHA256) throw new Error(`hash type ${hashType}, expected SHA-256`);
    const identEnd = file.indexOf(0, cd + identOffset);
    const identifier = Buffer.from(file.subarray(cd + identOffset, identEnd)).toString("latin1");
    const badPages: number[] = [];
    for (let p = 0; p < pages; p++) {
      // The last page is hashed as far as codeLimit, not padded.
      const page = file.subarray(p * pageSize, Math.min((p + 1) * pageSize, codeLimit));
      const want = file.subarray(cd + hashOffset + p * hashSize, cd + hashOffset + (p + 1) * hashSize);
      if (!createHash("sha256").update(page).digest().subarray(0, hashSize).equals(want)) badPages.push(p);
    }
    return { flags, identifier, codeLimit, signatureOffset: sig, pages, badPages };
  }
  throw new Error("the signature has no CodeDirectory");
}
