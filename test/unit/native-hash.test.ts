import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeHash, nativeHashNote } from '../../src/audit/native-hash.ts';
import { encodeFields, leafHashOf, payloadHash, ROW_MISMATCH, ROW_NO_PAYLOAD, scanLeafRowsJs, type ScanArrays } from '../../src/audit/leaf.ts';
import { nodeHashJs } from '../../src/audit/merkle.ts';

/** The native SHA-256 batch (native/hash.cc) against node:crypto's, which is the reference. */
describe('native hashing', () => {
  it('is built and loaded (npm ci builds it; CI requires it)', () => {
    expect(nativeHash, nativeHashNote ?? '').toBeDefined();
  });

  it('gives the leaf and payload hashes of leaf format 2 for every row of a chunk, and skips rows without a payload', () => {
    const parts: Buffer[] = [];
    const spans: number[] = [];
    let at = 0;
    const expected: Array<[Buffer, Buffer] | null> = [];
    for (let i = 0; i < 300; i++) {
      const meta = encodeFields(Array.from({ length: 15 }, (_, k) => (k === i % 15 ? null : randomBytes(i % 40).toString('hex'))));
      const payload = i % 17 === 0 ? null : encodeFields([randomBytes(i * 7 % 3000).toString('base64'), null, 'ë'.repeat(i % 5)]);
      const gap = randomBytes(i % 3);
      parts.push(gap, meta, payload ?? Buffer.alloc(0));
      at += gap.length;
      spans.push(at, at + meta.length, payload ? at + meta.length : -1, payload ? at + meta.length + payload.length : -1);
      at += meta.length + (payload?.length ?? 0);
      expected.push(payload ? [leafHashOf(meta, payloadHash(payload)), payloadHash(payload)] : null);
    }
    const buf = Buffer.concat(parts);
    const out = Buffer.alloc(300 * 64);
    nativeHash!.leafHashes(buf, Int32Array.from(spans), out);
    expected.forEach((e, i) => {
      if (e === null) expect(out.subarray(64 * i, 64 * i + 64).equals(Buffer.alloc(64))).toBe(true);
      else expect([out.subarray(64 * i, 64 * i + 32), out.subarray(64 * i + 32, 64 * i + 64)]).toEqual(e);
    });
  });

  it('refuses spans outside the buffer instead of reading past it', () => {
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Int32Array.from([0, 5, 5, 11]), Buffer.alloc(64))).toThrow(RangeError);
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Int32Array.from([0, 5]), Buffer.alloc(64))).toThrow(RangeError);
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Uint8Array.from([0, 5, 5, 9]) as unknown as Int32Array, Buffer.alloc(64))).toThrow(TypeError);
  });

  it('gives RFC 6962 interior nodes', () => {
    for (let i = 0; i < 50; i++) {
      const l = randomBytes(32);
      const r = randomBytes(32);
      const out = Buffer.alloc(32);
      nativeHash!.node(l, r, out);
      expect(out).toEqual(nodeHashJs(l, r));
    }
    expect(() => nativeHash!.node(Buffer.alloc(31), Buffer.alloc(32), Buffer.alloc(32))).toThrow(RangeError);
  });

  describe('scanning the verifier\'s binary COPY rows (scanLeafRows, against scanLeafRowsJs)', () => {
    const field = (b: Buffer | null) => {
      const len = Buffer.alloc(4);
      len.writeInt32BE(b === null ? -1 : b.length);
      return b === null ? len : Buffer.concat([len, b]);
    };
    const int8 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64BE(v); return b; };
    /** Timestamps (µs since 2000-01-01 UTC) and their texts, as PostgreSQL gives them (the integration test holds the formatter to PostgreSQL's). */
    const stamps: Array<[bigint, string]> = [
      [849_312_000_123_000n, '2026-11-30 00:00:00.123+00'], [0n, '2000-01-01 00:00:00+00'], [-1n, '1999-12-31 23:59:59.999999+00'],
      [-63_082_281_600_500_000n, '0001-12-31 23:59:59.5+00 BC'], [252_455_616_000_000_010n, '10000-01-01 00:00:00.00001+00'],
      [-211_781_865_600_000_000n, '4713-11-24 00:00:00+00 BC'], [0x7fffffffffffffffn, 'infinity'], [-0x8000000000000000n, '-infinity'],
    ];
    /** One row as PostgreSQL's binary COPY of COPY_COLUMNS gives it, and its leaf fields as texts. */
    const copyRow = (seq: number, kind: 'intact' | 'leaf edited' | 'payload hash edited' | 'no stored leaf' | 'short leaf' | 'pruned' | 'no payload hash') => {
      const text = (k: number) => (k === seq % 15 ? null : `${k}:${'ë'.repeat(seq % 7)}${seq}`);
      const [ts, tsText] = stamps[seq % stamps.length]!;
      const version = seq % 5 === 0 ? null : Buffer.from([seq % 256, 0xab, 0, 0x0f].slice(0, seq % 4));
      const hlc = seq % 6 === 0 ? null : BigInt(seq) * (seq % 2 ? 1n : -1n) << 20n;
      // leaf order: log_id, seq, kind, event_id, entity, record_key, op, source_node, source_position, source_ts, changed_columns, version, hlc, actor, executed_at
      const metaTexts = [text(0), String(seq), text(2), text(3), text(4), text(5), text(6), text(7), text(8), seq % 9 === 0 ? null : tsText,
        text(10), version && version.toString('hex'), hlc === null ? null : String(hlc), text(13), stamps[(seq + 1) % stamps.length]![1]];
      const payloadTexts = kind === 'pruned' ? [null, null, null] : [JSON.stringify({ id: seq, v: 'x'.repeat(seq % 300) }), null, '[]'];
      const meta = encodeFields(metaTexts);
      const payloadFields = encodeFields(payloadTexts);
      const ph = payloadHash(payloadFields);
      const leaf = leafHashOf(meta, ph);
      const storedLeaf = kind === 'leaf edited' ? Buffer.from(leaf).fill(7, 0, 1) : kind === 'no stored leaf' ? null : kind === 'short leaf' ? leaf.subarray(0, 1) : leaf;
      const storedPayload = kind === 'payload hash edited' ? Buffer.alloc(32, 1) : kind === 'no payload hash' ? null : ph;
      const count = Buffer.alloc(2);
      count.writeInt16BE(20);
      const columns = [int8(BigInt(seq)), storedLeaf, storedPayload, ...[0, 2, 3, 4, 5, 6, 7, 8].map((k) => text(k) === null ? null : Buffer.from(text(k)!)),
        seq % 9 === 0 ? null : int8(ts), text(10) === null ? null : Buffer.from(text(10)!), version, hlc === null ? null : int8(hlc),
        text(13) === null ? null : Buffer.from(text(13)!), int8(stamps[(seq + 1) % stamps.length]![0])];
      return { bytes: Buffer.concat([count, ...columns.map(field), payloadFields]), leaf, storedLeaf };
    };
    const kinds = ['intact', 'intact', 'intact', 'leaf edited', 'payload hash edited', 'no stored leaf', 'short leaf', 'pruned', 'no payload hash'] as const;
    const rows = Array.from({ length: 120 }, (_, i) => ({ kind: kinds[i % kinds.length]!, ...copyRow(i + 1, kinds[i % kinds.length]!) }));
    const trailer = Buffer.from([0xff, 0xff]);
    const body = Buffer.concat([...rows.map((r) => r.bytes), trailer]);
    const arrays = (cap: number): ScanArrays => ({ seqs: new Float64Array(cap), starts: new Int32Array(cap), flags: new Uint8Array(cap), leaves: Buffer.alloc(32 * cap), state: new Int32Array(2) });
    const native = (buf: Buffer, pos: number, a: ScanArrays) => nativeHash!.scanLeafRows(buf, pos, a.seqs, a.starts, a.flags, a.leaves, a.state);

    it('flags exactly the rows whose stored hashes do not match, and gives the leaf the tree is built from', () => {
      const a = arrays(200);
      const next = native(body, 0, a);
      expect(next).toBe(body.length);
      expect([...a.state]).toEqual([120, 1]);
      rows.forEach((r, i) => {
        expect(a.seqs[i]).toBe(i + 1);
        const want = r.kind === 'pruned' ? ROW_NO_PAYLOAD : r.kind === 'intact' || r.kind === 'no payload hash' ? 0 : ROW_MISMATCH;
        expect(a.flags[i], `row ${i + 1}, ${r.kind}`).toBe(want);
        const treeLeaf = r.storedLeaf?.length === 32 ? r.storedLeaf : r.kind === 'pruned' ? Buffer.alloc(32) : r.leaf;
        expect(a.leaves.subarray(32 * i, 32 * i + 32).equals(treeLeaf), `row ${i + 1}`).toBe(true);
      });
    });

    it('gives what the TypeScript scan gives, wherever the chunk ends and however few rows fit', () => {
      for (let cut = 0; cut <= body.length; cut += 97) {
        for (const cap of [1, 7, 200]) {
          const buf = body.subarray(0, cut);
          const n = arrays(cap);
          const j = arrays(cap);
          const at = cut > rows[0]!.bytes.length ? rows[0]!.bytes.length : 0; // also from inside the buffer
          expect(native(buf, at, n)).toBe(scanLeafRowsJs(buf, at, j));
          expect([...n.state]).toEqual([...j.state]);
          const k = n.state[0]!;
          expect([...n.seqs.subarray(0, k)]).toEqual([...j.seqs.subarray(0, k)]);
          expect([...n.starts.subarray(0, k)]).toEqual([...j.starts.subarray(0, k)]);
          expect([...n.flags.subarray(0, k)]).toEqual([...j.flags.subarray(0, k)]);
          expect(n.leaves.subarray(0, 32 * k).equals(j.leaves.subarray(0, 32 * k))).toBe(true);
        }
      }
    });

    it('refuses a row of another shape, and a position or arrays it cannot use', () => {
      const bad = Buffer.from(body);
      bad.writeInt16BE(19, 0);
      expect(() => native(bad, 0, arrays(10))).toThrow(/19 fields, expected 20/);
      expect(() => scanLeafRowsJs(bad, 0, arrays(10))).toThrow(/19 fields, expected 20/);
      expect(() => native(body, body.length + 1, arrays(10))).toThrow(RangeError);
      const a = arrays(10);
      expect(() => nativeHash!.scanLeafRows(body, 0, a.seqs, a.starts, a.flags, Buffer.alloc(31), a.state)).toThrow(RangeError);
    });
  });
});
