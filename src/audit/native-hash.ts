import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The native SHA-256 batch (native/hash.cc), over the OpenSSL inside Node.js: one call per
 * COPY chunk hashes every row's payload and leaf, and an interior Merkle node costs no Hash
 * object; the verifier's COPY unframing and row scan run there too. Loaded once; absent (the
 * addon did not build) or WORKER_SYNC_NATIVE_HASH=0, the TypeScript code in leaf.ts,
 * copy-out.ts and merkle.ts does the same work, and is the reference.
 */
interface HashAddon {
  leafHashes(buf: Buffer, spans: Int32Array, out: Buffer): void;
  node(left: Buffer, right: Buffer, out: Buffer): void;
  appendLeaves(levels: Buffer, size: number, leaves: Buffer, stops: Float64Array, out: Buffer): void;
  unframeCopyData(buf: Buffer, pos: number, out: Buffer, outPos: number, state: Int32Array): void;
  scanLeafRows(buf: Buffer, pos: number, seqs: Float64Array, starts: Int32Array, flags: Uint8Array, leaves: Buffer, state: Int32Array): number;
}

export const HASH_ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../build/Release/ws_hash.node');

function load(): HashAddon | Error {
  if (process.env.WORKER_SYNC_NATIVE_HASH === '0') return new Error('WORKER_SYNC_NATIVE_HASH=0');
  try {
    return createRequire(import.meta.url)(HASH_ADDON_PATH) as HashAddon;
  } catch (err) {
    return new Error(`native hashing not loadable from ${HASH_ADDON_PATH}: ${(err as Error).message.split('\n')[0]}`);
  }
}

const loaded = load();

/** The addon, or undefined (then `nativeHashNote` says why). */
export const nativeHash: HashAddon | undefined = loaded instanceof Error ? undefined : loaded;
export const nativeHashNote: string | null = loaded instanceof Error ? loaded.message : null;
