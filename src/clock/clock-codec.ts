import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode } from './codec.ts';
import { compareBatch, mergeBatch, type Packed } from './batch.ts';
import type { VersionVector } from './version-vector.ts';

/**
 * The version vector codec exists twice (DESIGN §6): TypeScript, the reference, and the
 * C++ N-API addon in native/ (built by `npm install`). Both give identical bytes, results
 * and rejections (test/unit/native-clock.test.ts). Per operation the worker uses the one
 * `npm run bench -- clock` measured faster, and logs it; WORKER_SYNC_NATIVE=0 forces
 * TypeScript throughout, WORKER_SYNC_NATIVE=1 native throughout.
 */
export interface ClockCodec {
  encode(v: VersionVector): Buffer;
  decode(buf: Uint8Array): VersionVector;
  compareBatch(a: Packed, b: Packed): Uint8Array;
  mergeBatch(a: Packed, b: Packed): Packed;
}

export type CodecName = 'typescript' | 'native';
export type ClockOp = keyof ClockCodec;

export const typescriptCodec: ClockCodec = { encode, decode, compareBatch, mergeBatch };

interface Addon {
  encode(v: VersionVector): Buffer;
  decode(buf: Uint8Array): Array<[number, number]>;
  compareBatch(ab: Uint8Array, ao: Uint32Array, bb: Uint8Array, bo: Uint32Array): Uint8Array;
  mergeBatch(ab: Uint8Array, ao: Uint32Array, bb: Uint8Array, bo: Uint32Array): [Buffer, Uint32Array];
}

export const ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../build/Release/ws_clock.node');

/** The native codec, or the reason it could not be loaded. */
export function loadNative(file = ADDON_PATH): ClockCodec | Error {
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(file) as Addon;
  } catch (err) {
    return new Error(`native clock codec not loadable from ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  return {
    encode: (v) => addon.encode(v),
    decode: (buf) => addon.decode(buf),
    compareBatch: (a, b) => addon.compareBatch(a.bytes, a.offsets, b.bytes, b.offsets),
    mergeBatch: (a, b) => {
      const [bytes, offsets] = addon.mergeBatch(a.bytes, a.offsets, b.bytes, b.offsets);
      return { bytes, offsets };
    },
  };
}

/**
 * What `npm run bench -- clock` measured faster per operation on this project's machine
 * (bench/RESULTS.md): single-vector calls pay the N-API crossing and the building of
 * JavaScript arrays per call, which the TypeScript codec does not; batch calls cross once
 * per batch. Re-run the benchmark and update this table when either codec changes.
 */
export const FASTER: Record<ClockOp, CodecName> = {
  encode: 'typescript', // native 0.06-0.1x: building and reading JavaScript arrays across N-API costs more than the codec
  decode: 'typescript',
  compareBatch: 'native', // from 10 pairs on: 1.9x at 10, 2.6-2.8x at 100 and 1,000; 0.5x for a single pair
  mergeBatch: 'native', // from 10 pairs on: 2.0x at 10, 3.1-3.4x at 100 and 1,000; 0.4x for a single pair
};

/** Batches smaller than this go to the TypeScript codec even where native is faster (one crossing costs more than one pair). */
export const NATIVE_MIN_BATCH = 10;

export interface Selection {
  codec: ClockCodec;
  /** Which implementation serves each operation. */
  uses: Record<ClockOp, CodecName>;
  /** Why native is not used, where it is not. */
  note: string | null;
}

/** Picks the codec per operation: WORKER_SYNC_NATIVE=0|1 forces one; otherwise FASTER, where the addon loaded. */
export function selectCodec(env: Record<string, string | undefined> = process.env): Selection {
  const force = env.WORKER_SYNC_NATIVE;
  const required = env.WORKER_SYNC_REQUIRE_NATIVE === '1';
  const allTs: Selection = { codec: typescriptCodec, uses: { encode: 'typescript', decode: 'typescript', compareBatch: 'typescript', mergeBatch: 'typescript' }, note: null };
  if (force === '0') return { ...allTs, note: 'WORKER_SYNC_NATIVE=0' };
  const native = loadNative();
  if (native instanceof Error) {
    if (required || force === '1') throw native;
    return { ...allTs, note: native.message };
  }
  const uses = force === '1'
    ? { encode: 'native', decode: 'native', compareBatch: 'native', mergeBatch: 'native' } as const
    : FASTER;
  const pick = <K extends ClockOp>(op: K): ClockCodec[K] => (uses[op] === 'native' ? native[op] : typescriptCodec[op]);
  const min = force === '1' ? 0 : NATIVE_MIN_BATCH;
  const batch = <K extends 'compareBatch' | 'mergeBatch'>(op: K): ClockCodec[K] => {
    if (uses[op] !== 'native') return typescriptCodec[op];
    return ((a: Packed, b: Packed) => (a.offsets.length - 1 >= min ? native[op](a, b) : typescriptCodec[op](a, b))) as ClockCodec[K];
  };
  return { codec: { encode: pick('encode'), decode: pick('decode'), compareBatch: batch('compareBatch'), mergeBatch: batch('mergeBatch') }, uses: { ...uses }, note: null };
}
