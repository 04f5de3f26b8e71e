import type { VersionVector } from '../clock/version-vector.ts';
import type { Row } from '../events/change-event.ts';
import type { EchoEntry, NodeState } from './record-state.ts';

/**
 * The compact binary form of a record's value and per-node state: the `state` column of
 * `sync_metadata` (issue 13). jsonb made PostgreSQL parse both into its own tree on every
 * upsert and print them back on every load; a 20,000-row upsert of the load test's states
 * took 1.16–1.20 s as jsonb and 0.70–0.84 s as bytea, and reading them back 313–331 ms
 * against 166–213 ms (bench/RESULTS.md). The value stays JSON text inside it, since only
 * conflicts and the merge policy read it.
 *
 *   state   = 0x01 ‖ value ‖ varint(node count) ‖ node*
 *   value   = varint(0) for null, else varint(byte length + 1) ‖ UTF-8 JSON
 *   node    = str(name) ‖ flags ‖ [vv(seen)] [vv(rowVersion)] [str(position)] ‖ varint(fifo count) ‖ entry*
 *             flags: 1 present, 2 seen, 4 rowVersion, 8 position
 *   entry   = flags ‖ [vv(expected)] ‖ vv(pushed) ‖ [str(digest)]
 *             flags: 1 expected, 2 expectedAbsent, 4 digest, 8 delete
 *   vv      = varint(pair count) ‖ (varint(node index) ‖ varint(counter))*
 *   str     = varint(byte length) ‖ UTF-8
 *   varint  = unsigned LEB128, up to 2^53
 */
export const STATE_FORMAT = 1;

/** Encodes many states into one buffer; `end()` hands back one view per state. */
export class StateEncoder {
  private buf: Buffer;
  private p = 0;
  private readonly bounds: number[] = [];

  constructor(expected = 16) {
    this.buf = Buffer.allocUnsafe(Math.max(256, expected * 512));
  }

  add(value: Row | null, nodes: Record<string, NodeState>): void {
    this.bounds.push(this.p);
    this.byte(STATE_FORMAT);
    if (value === null) this.varint(0);
    else {
      const json = JSON.stringify(value);
      const n = Buffer.byteLength(json, 'utf8');
      this.varint(n + 1);
      this.room(n);
      this.p += this.buf.write(json, this.p, 'utf8');
    }
    const names = Object.keys(nodes);
    this.varint(names.length);
    for (const name of names) {
      const s = nodes[name]!;
      this.str(name);
      this.byte((s.present ? 1 : 0) | (s.seen ? 2 : 0) | (s.rowVersion ? 4 : 0) | (s.position !== null ? 8 : 0));
      if (s.seen) this.vv(s.seen);
      if (s.rowVersion) this.vv(s.rowVersion);
      if (s.position !== null) this.str(s.position);
      this.varint(s.fifo.length);
      for (const e of s.fifo) {
        this.byte((e.expected ? 1 : 0) | (e.expectedAbsent ? 2 : 0) | (e.digest !== null ? 4 : 0) | (e.delete ? 8 : 0));
        if (e.expected) this.vv(e.expected);
        this.vv(e.pushed);
        if (e.digest !== null) this.str(e.digest);
      }
    }
  }

  /** One Buffer per added state, in order, all views of one allocation. */
  end(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < this.bounds.length; i++) out.push(this.buf.subarray(this.bounds[i], i + 1 < this.bounds.length ? this.bounds[i + 1] : this.p));
    return out;
  }

  private room(n: number): void {
    if (this.p + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.p + n));
    this.buf.copy(next, 0, 0, this.p);
    this.buf = next;
  }

  private byte(b: number): void {
    this.room(1);
    this.buf[this.p++] = b;
  }

  private varint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`record state: ${v} is not an unsigned integer below 2^53`);
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.p++] = v;
  }

  private str(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.room(n);
    this.p += this.buf.write(s, this.p, 'utf8');
  }

  private vv(v: VersionVector): void {
    this.varint(v.length);
    for (const [i, c] of v) {
      this.varint(i);
      this.varint(c);
    }
  }
}

/** Encodes one state (tests and tools; the store encodes a batch through StateEncoder). */
export function encodeState(value: Row | null, nodes: Record<string, NodeState>): Buffer {
  const e = new StateEncoder(1);
  e.add(value, nodes);
  return Buffer.from(e.end()[0]!);
}

/** Decodes a `state` column; a damaged or unknown one is an error naming what is wrong. */
export function decodeState(b: Buffer): { value: Row | null; nodes: Record<string, NodeState> } {
  let p = 0;
  const fail = (why: string): never => { throw new Error(`record state (${b.length} bytes): ${why} at byte ${p}`); };
  const byte = (): number => (p < b.length ? b[p++]! : fail('truncated'));
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    for (;;) {
      const x = byte();
      v += (x & 0x7f) * scale;
      if (x < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) fail('varint too long');
    }
    return v;
  };
  const str = (n = varint()): string => {
    if (p + n > b.length) fail('truncated');
    const s = b.toString('utf8', p, p + n);
    p += n;
    return s;
  };
  const vv = (): VersionVector => {
    const n = varint();
    const out: Array<readonly [number, number]> = [];
    for (let i = 0; i < n; i++) out.push([varint(), varint()] as const);
    return out;
  };
  const format = byte();
  if (format !== STATE_FORMAT) fail(`unknown format ${format}`);
  const vlen = varint();
  const value = vlen === 0 ? null : (JSON.parse(str(vlen - 1)) as Row);
  const nodes: Record<string, NodeState> = {};
  const count = varint();
  for (let i = 0; i < count; i++) {
    const name = str();
    const f = byte();
    const seen = f & 2 ? vv() : null;
    const rowVersion = f & 4 ? vv() : null;
    const position = f & 8 ? str() : null;
    const fifo: EchoEntry[] = [];
    const n = varint();
    for (let j = 0; j < n; j++) {
      const g = byte();
      const expected = g & 1 ? vv() : null;
      const pushed = vv();
      const digest = g & 4 ? str() : null;
      fifo.push({ expected, expectedAbsent: (g & 2) !== 0, pushed, digest, delete: (g & 8) !== 0 });
    }
    nodes[name] = { seen, present: (f & 1) !== 0, rowVersion, fifo, position };
  }
  if (p !== b.length) fail('trailing bytes');
  return { value, nodes };
}
