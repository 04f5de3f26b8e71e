import { hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { nativeHash } from './native-hash.ts';

/**
 * The canonical bytes of one audit_log row, the input of its RFC 6962 leaf hash
 * (DESIGN §7). Format 2, specified here and nowhere else.
 *
 * A field is a signed 32-bit big-endian byte length, −1 for NULL, followed by that many
 * bytes of UTF-8 text: the layout of a text column in PostgreSQL's binary COPY. A
 * column's text is the one PostgreSQL gives back for it:
 * - the JSON columns (record_key, source_position, changed_columns, before, after,
 *   writes) are of type `json`, which keeps the text written, byte for byte;
 * - timestamps are PostgreSQL's output with DateStyle ISO and TimeZone UTC
 *   (`2026-11-30 12:00:00.123+00`: trailing zeros of the fraction dropped);
 * - `version` is lower-case hex, `seq` and `hlc` decimal digits.
 *
 *   payload bytes = field(before) ‖ field(after) ‖ field(writes)
 *   payload hash  = SHA-256(payload bytes)                 (the row's payload_hash column)
 *   leaf bytes    = 0x02 ‖ field(log_id) ‖ field(seq) ‖ field(kind) ‖ field(event_id)
 *                   ‖ field(entity) ‖ field(record_key) ‖ field(op) ‖ field(source_node)
 *                   ‖ field(source_position) ‖ field(source_ts) ‖ field(changed_columns)
 *                   ‖ field(version) ‖ field(hlc) ‖ field(actor) ‖ field(executed_at)
 *                   ‖ payload hash
 *   leaf hash     = SHA-256(0x00 ‖ leaf bytes)             (RFC 6962; the leaf_hash column)
 *
 * The payload enters through its hash, so a pruned row (payload archived and cleared,
 * payload_hash kept) still proves its metadata. The writer computes both hashes from the
 * texts it writes (audit-rows.ts); the verifier recomputes them from a binary COPY of the
 * texts the table holds, which arrive already in this layout.
 */
export const LEAF_FORMAT = 2;

/** The SQL text forms of the leaf's fields, in order (the verifier selects these). */
export const LEAF_FIELD_SQL = [
  'log_id', 'seq::text', 'kind', 'event_id', 'entity', 'record_key::text', 'op', 'source_node', 'source_position::text',
  'source_ts::text', 'changed_columns::text', "encode(version, 'hex')", 'hlc::text', 'actor', 'executed_at::text',
] as const;

export const PAYLOAD_FIELD_SQL = ['before::text', 'after::text', 'writes::text'] as const;

/** The session settings the timestamp texts are defined under. */
export const LEAF_SESSION_SQL = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'";

/** A timestamp's text (ISO-8601 in, millisecond precision) as PostgreSQL prints it under LEAF_SESSION_SQL. */
export function pgTimestampText(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/.exec(iso);
  if (!m) throw new Error(`not a UTC ISO-8601 timestamp: ${iso}`);
  const frac = (m[3] ?? '').replace(/0+$/, '');
  return `${m[1]} ${m[2]}${frac ? `.${frac}` : ''}+00`;
}

const LEAF_PREFIX = Buffer.from([0x00, LEAF_FORMAT]);

/** Encodes texts (null for NULL) as fields, after `prefix` leading bytes (left for the caller). */
export function encodeFields(texts: ReadonlyArray<string | null>, prefix = 0, suffix = 0): Buffer {
  let size = prefix + suffix;
  const lens: number[] = [];
  for (const t of texts) {
    const n = t === null ? -1 : Buffer.byteLength(t, 'utf8');
    lens.push(n);
    size += 4 + Math.max(0, n);
  }
  const out = Buffer.allocUnsafe(size);
  let p = prefix;
  for (let i = 0; i < texts.length; i++) {
    out.writeInt32BE(lens[i]!, p);
    p += 4;
    if (lens[i]! > 0) p += out.write(texts[i]!, p, 'utf8');
  }
  return out;
}

/** The payload hash from the encoded payload fields. */
export const payloadHash = (payloadFields: Uint8Array): Buffer => hash('sha256', payloadFields, 'buffer');

/** The leaf hash from the 15 encoded metadata fields and the payload hash. */
let scratch = Buffer.allocUnsafe(64 * 1024);

export function leafHashOf(metaFields: Uint8Array, payload: Uint8Array): Buffer {
  const size = 2 + metaFields.length + payload.length;
  if (scratch.length < size) scratch = Buffer.allocUnsafe(size * 2);
  LEAF_PREFIX.copy(scratch, 0);
  scratch.set(metaFields, 2);
  scratch.set(payload, 2 + metaFields.length);
  return hash('sha256', scratch.subarray(0, size), 'buffer'); // synchronous: the scratch buffer is free again
}

/** The writer's side: both hashes of a row from its texts, encoding the metadata once. */
export function hashTexts(meta: ReadonlyArray<string | null>, payload: ReadonlyArray<string | null>): { payload: Buffer; leaf: Buffer } {
  const p = payloadHash(encodeFields(payload));
  const bytes = encodeFields(meta, 2, 32);
  LEAF_PREFIX.copy(bytes, 0);
  p.copy(bytes, bytes.length - 32);
  return { payload: p, leaf: hash('sha256', bytes, 'buffer') };
}

/** One audit_log row as the verifier reads it: the stored hashes and the row's fields, encoded. */
export interface LeafRow {
  seq: number;
  storedLeaf: Buffer | null;
  storedPayload: Buffer | null;
  /** the 15 metadata fields, encoded (a view into the COPY data: copy it to keep it) */
  meta: Buffer;
  /** the 3 payload fields, encoded; null when all three are NULL (a pruned row) */
  payload: Buffer | null;
  /** With native hashing, where the payload is there: the leaf and payload hashes recomputed from this row's fields. */
  leafHash?: Buffer;
  payloadHash?: Buffer;
}

/** Hashes every row of a chunk that has a payload in one native call (native-hash.ts), filling leafHash and payloadHash. */
function hashChunk(buf: Buffer, rows: LeafRow[]): void {
  const spans = new Int32Array(rows.length * 4);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.payload === null) {
      spans[4 * i + 2] = -1;
      continue;
    }
    const m = r.meta.byteOffset - buf.byteOffset;
    const p = r.payload.byteOffset - buf.byteOffset;
    spans[4 * i] = m;
    spans[4 * i + 1] = m + r.meta.length;
    spans[4 * i + 2] = p;
    spans[4 * i + 3] = p + r.payload.length;
  }
  const out = Buffer.allocUnsafe(rows.length * 64);
  nativeHash!.leafHashes(buf, spans, out);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.payload === null) continue;
    r.leafHash = out.subarray(64 * i, 64 * i + 32);
    r.payloadHash = out.subarray(64 * i + 32, 64 * i + 64);
  }
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const META_FIELDS = LEAF_FIELD_SQL.length;
const FIELDS = 3 + META_FIELDS + PAYLOAD_FIELD_SQL.length;

/**
 * Parses PostgreSQL's binary COPY output of `seq, leaf_hash, payload_hash, <metadata
 * texts>, <payload texts>` into LeafRows, across chunk boundaries. Since the text fields
 * arrive in exactly the leaf's field layout, a row's encoded fields are slices of the
 * stream: nothing is decoded or re-encoded.
 */
class LeafRowParser extends Transform {
  private carry: Buffer | null = null;
  private header = false;

  constructor() {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    let pos = 0;
    if (!this.header) {
      if (buf.length < 19) {
        this.carry = buf;
        done();
        return;
      }
      if (!buf.subarray(0, 11).equals(SIGNATURE)) {
        done(new Error('not a binary COPY stream'));
        return;
      }
      pos = 19 + buf.readInt32BE(15);
      this.header = true;
    }
    const rows: LeafRow[] = [];
    for (;;) {
      let row: ReturnType<LeafRowParser['row']>;
      try {
        row = this.row(buf, pos);
      } catch (err) {
        done(err as Error);
        return;
      }
      if (row === null) break;
      if (row === 'end') {
        pos = buf.length;
        this.trailer = true;
        break;
      }
      rows.push(row.row);
      pos = row.next;
    }
    this.carry = pos < buf.length ? buf.subarray(pos) : null;
    if (rows.length > 0 && nativeHash) hashChunk(buf, rows);
    if (rows.length > 0) this.push(rows);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.carry && this.carry.length > 0) done(new Error(`binary COPY ended inside a row (${this.carry.length} bytes left)`));
    else done(this.trailer ? undefined : new Error('binary COPY ended without its trailer'));
  }

  private trailer = false;

  /** The row at pos, or null when the buffer does not hold all of it yet. (No closures: this runs per row.) */
  private row(buf: Buffer, pos: number): { row: LeafRow; next: number } | 'end' | null {
    const end = buf.length;
    if (pos + 2 > end) return null;
    const count = buf.readInt16BE(pos);
    if (count === -1) return 'end';
    if (count !== FIELDS) throw new Error(`binary COPY row with ${count} fields, expected ${FIELDS}`);
    // field starts and lengths, in order: seq, leaf_hash, payload_hash, then the texts
    const starts = this.starts;
    const lens = this.lens;
    let p = pos + 2;
    for (let i = 0; i < FIELDS; i++) {
      if (p + 4 > end) return null;
      const len = buf.readInt32BE(p);
      starts[i] = p + 4;
      lens[i] = len;
      p += 4 + (len > 0 ? len : 0);
      if (p > end) return null;
    }
    const metaStart = starts[3]! - 4;
    const payloadStart = starts[3 + META_FIELDS]! - 4;
    const payloadNull = lens[3 + META_FIELDS]! < 0 && lens[4 + META_FIELDS]! < 0 && lens[5 + META_FIELDS]! < 0;
    return {
      row: {
        seq: Number(buf.readBigInt64BE(starts[0]!)),
        storedLeaf: lens[1]! < 0 ? null : buf.subarray(starts[1]!, starts[1]! + lens[1]!),
        storedPayload: lens[2]! < 0 ? null : buf.subarray(starts[2]!, starts[2]! + lens[2]!),
        meta: buf.subarray(metaStart, payloadStart),
        payload: payloadNull ? null : buf.subarray(payloadStart, p),
      },
      next: p,
    };
  }

  private readonly starts = new Int32Array(FIELDS);
  private readonly lens = new Int32Array(FIELDS);
}

/**
 * Streams one log's rows from seq `from` through `to` (inclusive; Infinity for the end) in
 * seq order, calling `onRows` for each arriving group (a promise it returns pauses the
 * stream until it settles). One binary COPY: no paging queries.
 */
export async function streamLeafRows(client: pg.ClientBase, logId: string, from: number, to: number, onRows: (rows: LeafRow[]) => Promise<void> | undefined | void): Promise<void> {
  const upper = Number.isFinite(to) ? ` AND seq <= ${Math.trunc(to)}` : '';
  const sql = `COPY (SELECT seq, leaf_hash, payload_hash, ${LEAF_FIELD_SQL.join(', ')}, ${PAYLOAD_FIELD_SQL.join(', ')}
    FROM audit_log WHERE log_id = ${client.escapeLiteral(logId)} AND seq >= ${Math.trunc(from)}${upper} ORDER BY audit_log.seq) TO STDOUT (FORMAT binary)`;
  await client.query(LEAF_SESSION_SQL);
  const source = client.query(pgCopy.to(sql));
  const parser = new LeafRowParser();
  await new Promise<void>((resolve, reject) => {
    source.on('error', reject);
    parser.on('error', reject);
    const fail = (err: unknown) => {
      source.unpipe(parser);
      source.destroy();
      reject(err);
    };
    parser.on('data', (rows: LeafRow[]) => {
      try {
        const wait = onRows(rows);
        if (wait) { // the consumer wants a pause (backpressure)
          parser.pause();
          wait.then(() => parser.resume(), fail);
        }
      } catch (err) {
        fail(err);
      }
    });
    parser.on('end', resolve);
    source.pipe(parser);
  });
}

/** Decodes encoded fields back to texts (null for NULL): for reports, archives and proofs. */
export function decodeFields(encoded: Buffer, count: number): Array<string | null> {
  const out: Array<string | null> = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    const len = encoded.readInt32BE(p);
    p += 4;
    if (len < 0) {
      out.push(null);
    } else {
      out.push(encoded.toString('utf8', p, p + len));
      p += len;
    }
  }
  if (p !== encoded.length) throw new Error(`encoded fields: ${encoded.length - p} bytes after ${count} fields`);
  return out;
}

export const META_FIELD_NAMES = [
  'log_id', 'seq', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node', 'source_position',
  'source_ts', 'changed_columns', 'version', 'hlc', 'actor', 'executed_at',
] as const;
export const PAYLOAD_FIELD_NAMES = ['before', 'after', 'writes'] as const;

/** The leaf of a row whose metadata texts are known (a proof, an archive), with a payload given by texts or by its hash. */
export function leafOfTexts(meta: ReadonlyArray<string | null>, payload: ReadonlyArray<string | null> | Buffer): Buffer {
  return Buffer.isBuffer(payload) ? leafHashOf(encodeFields(meta), payload) : hashTexts(meta, payload).leaf;
}
