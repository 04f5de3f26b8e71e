import { typescriptCodec, type ClockCodec } from './clock-codec.ts';
import type { VersionVector } from './version-vector.ts';

/**
 * The codec the worker selected at start-up (clock-codec.ts selectCodec), for the code
 * that encodes and decodes versions on the hot path: the record states of each batch.
 * TypeScript until the worker chooses.
 */
let active: ClockCodec = typescriptCodec;

export function useCodec(codec: ClockCodec): void {
  active = codec;
}

export const encodeVersion = (v: VersionVector): Buffer => active.encode(v);
export const decodeVersion = (buf: Uint8Array): VersionVector => active.decode(buf);
