import { hash } from 'node:crypto';
import type pg from 'pg';
import { nativeHash } from './native-hash.ts';
import { CopyOut, type CopySink } from './copy-out.ts';

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
 * table's columns (COPY_COLUMNS: most of them arrive already in this layout).
 */
export const LEAF_FORMAT = 2;

/**
 * The columns of the verifier's binary COPY, in order: the seq, the two stored hashes, the
 * row's other columns as stored, the payload last. PostgreSQL sends each in its binary form,
 * and for most of them that is already the leaf's field: a text column's, and a json
 * column's too (json_send writes the text as textsend does). Five are converted here and in
 * native/hash.cc instead (leafMeta): the leaf's seq and hlc texts are the decimal digits of
 * the 8-byte bigints, its version the lower-case hex of the bytea, its source_ts and
 * executed_at the texts of timestamptzText. Casts in the query (`source_ts::text` and the
 * others) cost PostgreSQL, the verifier's limit, 1.5 µs of its ~4 µs a row on this machine
 * (bench/RESULTS.md, issue 15).
 */
export const COPY_COLUMNS = [
  'seq', 'leaf_hash', 'payload_hash', 'log_id', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node',
  'source_position', 'source_ts', 'changed_columns', 'version', 'hlc', 'actor', 'executed_at', 'before', 'after', 'writes',
] as const;

/** Where the leaf's fields come from in a COPY row (COPY_COLUMNS), in leaf order: a column's index, converted or as sent. */
const C = { seq: 0, leaf: 1, payloadHash: 2, logId: 3, kind: 4, sourcePosition: 10, sourceTs: 11, changed: 12, version: 13, hlc: 14, actor: 15, executedAt: 16, before: 17 } as const;

/** The session settings the timestamp texts are defined under. */
export const LEAF_SESSION_SQL = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'";

/**
 * The plan of the verifier's read, set around its COPY and reset after: a walk of the primary
 * key (log_id, seq), which hands over the rows in seq order as it reads them. Where one log is
 * most of the table (one partition, or the bench's log) the planner would otherwise pick a
 * parallel sequential scan and sort the whole log, spilling it to temporary files past
 * work_mem, with two more processes on the verifier's cores: 1.12-1.46 s against 0.77-0.94 s
 * for 200,000 rows here (bench/RESULTS.md, issue 15).
 */
export const LEAF_PLAN_SQL = 'SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; SET max_parallel_workers_per_gather = 0';
export const LEAF_PLAN_RESET_SQL = 'RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort; RESET max_parallel_workers_per_gather';

/** A timestamp's text (ISO-8601 in, millisecond precision) as PostgreSQL prints it under LEAF_SESSION_SQL: the writer's side. */
export function pgTimestampText(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/.exec(iso);
  if (!m) throw new Error(`not a UTC ISO-8601 timestamp: ${iso}`);
  const frac = (m[3] ?? '').replace(/0+$/, '');
  return `${m[1]} ${m[2]}${frac ? `.${frac}` : ''}+00`;
}

const USECS_PER_DAY = 86_400_000_000n;
/** Days from 1970-03-01 back to 0000-03-01 (proleptic Gregorian), and from 1970-01-01 to 2000-01-01. */
const DAYS_0000_03_01 = 719_468n;
const DAYS_1970_2000 = 10_957n;
const pad = (n: bigint | number, w: number) => String(n).padStart(w, '0');

/**
 * A timestamptz's text as PostgreSQL prints it with DateStyle ISO and TimeZone UTC, from its
 * binary form (microseconds since 2000-01-01 00:00 UTC): `2026-11-30 12:00:00.123+00`, the
 * fraction without its trailing zeros, at least four digits of year, ` BC` after the zone
 * for year 0 and before (1 BC is year 0), `infinity` and `-infinity` at the ends of int64.
 * The reference of native/hash.cc's TimestampText; test/integration/copy-out.test.ts holds
 * both to PostgreSQL's own text over its whole range.
 */
export function timestamptzText(us: bigint): string {
  if (us === 0x7fffffffffffffffn) return 'infinity';
  if (us === -0x8000000000000000n) return '-infinity';
  let days = us / USECS_PER_DAY;
  let time = us % USECS_PER_DAY;
  if (time < 0n) {
    time += USECS_PER_DAY;
    days -= 1n;
  }
  // the civil date of a day count (days since 1970-01-01), in 400-year eras from 0000-03-01
  const z = days + DAYS_1970_2000 + DAYS_0000_03_01;
  const era = (z >= 0n ? z : z - 146_096n) / 146_097n;
  const doe = z - era * 146_097n;
  const yoe = (doe - doe / 1460n + doe / 36_524n - doe / 146_096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const day = doy - (153n * mp + 2n) / 5n + 1n;
  const month = mp < 10n ? mp + 3n : mp - 9n;
  const year = yoe + era * 400n + (month <= 2n ? 1n : 0n);
  const secs = time / 1_000_000n;
  const frac = (time % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  const y = year > 0n ? year : 1n - year;
  return `${pad(y, 4)}-${pad(month, 2)}-${pad(day, 2)} ${pad(secs / 3600n, 2)}:${pad((secs / 60n) % 60n, 2)}:${pad(secs % 60n, 2)}`
    + `${frac ? `.${frac}` : ''}+00${year > 0n ? '' : ' BC'}`;
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
  /** the 15 metadata fields, encoded */
  meta: Buffer;
  /** the 3 payload fields, encoded; null when all three are NULL (a pruned row) */
  payload: Buffer | null;
  /** With native hashing, where the payload is there: the leaf and payload hashes recomputed from this row's fields. */
  leafHash?: Buffer;
  payloadHash?: Buffer;
}

/** Hashes every row that has a payload in one native call (native-hash.ts), filling leafHash and payloadHash. */
function hashChunk(rows: LeafRow[]): void {
  const spans = new Int32Array(rows.length * 4);
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.payload === null) {
      spans[4 * i + 2] = -1;
      continue;
    }
    parts.push(r.meta, r.payload);
    spans[4 * i] = at;
    spans[4 * i + 1] = at += r.meta.length;
    spans[4 * i + 2] = at;
    spans[4 * i + 3] = at += r.payload.length;
  }
  const out = Buffer.allocUnsafe(rows.length * 64);
  nativeHash!.leafHashes(Buffer.concat(parts, at), spans, out);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.payload === null) continue;
    r.leafHash = out.subarray(64 * i, 64 * i + 32);
    r.payloadHash = out.subarray(64 * i + 32, 64 * i + 64);
  }
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const FIELDS = COPY_COLUMNS.length;
/** The fewest bytes a row of the verifier's COPY takes: its field count, 20 lengths and the 8-byte seq. */
const MIN_ROW_BYTES = 2 + 4 * FIELDS + 8;

const fieldStarts = new Int32Array(FIELDS);
const fieldLens = new Int32Array(FIELDS);

/** A bigint or timestamptz column's 8 bytes (null for NULL); any other length is not the column's binary form. */
function int8At(buf: Buffer, starts: Int32Array, lens: Int32Array, f: number): bigint | null {
  if (lens[f]! < 0) return null;
  if (lens[f] !== 8) throw new Error(`binary COPY row: ${COPY_COLUMNS[f]} is ${lens[f]} bytes, not 8`);
  return buf.readBigInt64BE(starts[f]!);
}

/** A field's bytes as they are in buf: its length and its data. */
const sent = (buf: Buffer, starts: Int32Array, lens: Int32Array, from: number, to = from) => buf.subarray(starts[from]! - 4, starts[to]! + Math.max(0, lens[to]!));

/**
 * The leaf's 15 metadata fields, encoded, from a COPY row's fields (COPY_COLUMNS): the texts
 * as sent, and seq, source_ts, version, hlc and executed_at converted to their texts. The
 * reference of the same step in native/hash.cc's scanLeafRows.
 */
function leafMeta(buf: Buffer, starts: Int32Array, lens: Int32Array): Buffer {
  const text = (t: string | null) => encodeFields([t]);
  const ts = (f: number) => { const v = int8At(buf, starts, lens, f); return text(v === null ? null : timestamptzText(v)); };
  const hlc = int8At(buf, starts, lens, C.hlc);
  return Buffer.concat([
    sent(buf, starts, lens, C.logId),
    text(String(int8At(buf, starts, lens, C.seq))),
    sent(buf, starts, lens, C.kind, C.sourcePosition),
    ts(C.sourceTs),
    sent(buf, starts, lens, C.changed),
    text(lens[C.version]! < 0 ? null : buf.toString('hex', starts[C.version]!, starts[C.version]! + lens[C.version]!)),
    text(hlc === null ? null : String(hlc)),
    sent(buf, starts, lens, C.actor),
    ts(C.executedAt),
  ]);
}

/**
 * The row of the verifier's binary COPY at pos: 'end' at the trailer, null when buf does not
 * hold all of it yet. Its stored hashes and payload are views into buf; its metadata is its
 * own buffer (leafMeta). (No closures: this runs per row.)
 */
function rowAt(buf: Buffer, pos: number): { row: LeafRow; next: number } | 'end' | null {
  const end = buf.length;
  if (pos + 2 > end) return null;
  const count = buf.readInt16BE(pos);
  if (count === -1) return 'end';
  if (count !== FIELDS) throw new Error(`binary COPY row with ${count} fields, expected ${FIELDS}`);
  // field starts and lengths, in COPY_COLUMNS order
  const starts = fieldStarts;
  const lens = fieldLens;
  let p = pos + 2;
  for (let i = 0; i < FIELDS; i++) {
    if (p + 4 > end) return null;
    const len = buf.readInt32BE(p);
    starts[i] = p + 4;
    lens[i] = len;
    p += 4 + (len > 0 ? len : 0);
    if (p > end) return null;
  }
  if (lens[C.seq] !== 8) throw new Error('binary COPY row: seq is not an 8-byte bigint');
  const payloadStart = starts[C.before]! - 4;
  const payloadNull = lens[C.before]! < 0 && lens[C.before + 1]! < 0 && lens[C.before + 2]! < 0;
  return {
    row: {
      seq: Number(buf.readBigInt64BE(starts[C.seq]!)),
      storedLeaf: lens[C.leaf]! < 0 ? null : buf.subarray(starts[C.leaf]!, starts[C.leaf]! + lens[C.leaf]!),
      storedPayload: lens[C.payloadHash]! < 0 ? null : buf.subarray(starts[C.payloadHash]!, starts[C.payloadHash]! + lens[C.payloadHash]!),
      meta: leafMeta(buf, starts, lens),
      payload: payloadNull ? null : buf.subarray(payloadStart, p),
    },
    next: p,
  };
}

/** LeafChunk.flags: the row has no payload (a pruned row; its leaf is the caller's to compute). */
export const ROW_NO_PAYLOAD = 1;
/** LeafChunk.flags: the recomputed leaf or payload hash differs from the stored one, or no leaf hash is stored. */
export const ROW_MISMATCH = 2;

/**
 * The whole rows of one arriving COPY chunk, scanned in one call: the verifier's fast path.
 * A row with flags 0 is a row whose stored hashes match what its fields hash to; the
 * verifier needs only its seq and leaf. Any other row it reads field by field (row).
 */
export interface LeafChunk {
  count: number;
  seqs: Float64Array;
  flags: Uint8Array;
  /** row i's leaf at [32i, 32i+32): the stored leaf hash when 32 bytes, else the recomputed one (for a row with ROW_NO_PAYLOAD, the stored one or zeros) */
  leaves: Buffer;
  /** Row i as LeafRow (views into the chunk: copy what you keep). Without the hashes: rowLeaf computes them. */
  row(i: number): LeafRow;
}

export interface ScanArrays { seqs: Float64Array; starts: Int32Array; flags: Uint8Array; leaves: Buffer; state: Int32Array }

/**
 * The reference of native/hash.cc's scanLeafRows, and what runs without the addon: scans the
 * whole rows of buf from pos (as many as fit in a.seqs), fills a (state[0] rows, state[1] 1
 * after the trailer) and returns the offset after the last whole row.
 */
export function scanLeafRowsJs(buf: Buffer, pos: number, a: ScanArrays): number {
  let n = 0;
  a.state[1] = 0;
  while (n < a.seqs.length) {
    const r = rowAt(buf, pos);
    if (r === null) break;
    if (r === 'end') {
      a.state[1] = 1;
      pos += 2;
      break;
    }
    const { row } = r;
    a.seqs[n] = row.seq;
    a.starts[n] = pos;
    const stored32 = row.storedLeaf !== null && row.storedLeaf.length === 32;
    if (row.payload === null) {
      a.flags[n] = ROW_NO_PAYLOAD;
      if (stored32) row.storedLeaf!.copy(a.leaves, 32 * n);
      else a.leaves.fill(0, 32 * n, 32 * n + 32);
    } else {
      const payload = payloadHash(row.payload);
      const leaf = leafHashOf(row.meta, payload);
      const ok = stored32 && leaf.equals(row.storedLeaf!) && (row.storedPayload === null || payload.equals(row.storedPayload));
      a.flags[n] = ok ? 0 : ROW_MISMATCH;
      (stored32 ? row.storedLeaf! : leaf).copy(a.leaves, 32 * n);
    }
    n++;
    pos = r.next;
  }
  a.state[0] = n;
  return pos;
}

/**
 * In chunks mode, rows are scanned once this many bytes of them are in (or at the end of the
 * copy): a socket read brought 9 rows at the median (6,867 reads for 200,000 rows), and every
 * scan, Merkle append and call into the addon has its fixed cost.
 */
const CHUNK_BYTES = 64 * 1024;

/**
 * Parses PostgreSQL's binary COPY output of COPY_COLUMNS as CopyOut writes it in, across
 * reads: into LeafRow[] per read (rows mode, on a copy of the read's rows, which callers may
 * keep) or one LeafChunk per CHUNK_BYTES or so (chunks mode, the verifier's: views into this
 * parser's one buffer, valid during the call). Most fields arrive in the leaf's field layout
 * and are hashed where they lie; the five others are converted on the way (leafMeta).
 */
class LeafRowParser<T> implements CopySink {
  private buf = Buffer.allocUnsafe(256 * 1024);
  private start = 0;
  private stop = 0;
  private header = false;
  private trailer = false;
  private a: ScanArrays = scanArrays(0);
  private readonly scanRows = nativeHash ? nativeHash.scanLeafRows : undefined;

  constructor(private readonly mode: 'rows' | 'chunks', private readonly onData: (data: T) => Promise<void> | undefined | void) {}

  room(n: number): { buf: Buffer; at: number } {
    const live = this.stop - this.start;
    if (this.stop + n > this.buf.length) {
      const next = live + n > this.buf.length ? Buffer.allocUnsafe(Math.max(2 * this.buf.length, live + n)) : this.buf;
      if (next === this.buf) next.copyWithin(0, this.start, this.stop);
      else this.buf.copy(next, 0, this.start, this.stop);
      this.buf = next;
      this.start = 0;
      this.stop = live;
    }
    return { buf: this.buf, at: this.stop };
  }

  wrote(end: number): Promise<void> | void {
    this.stop = end;
    const buf = this.buf;
    let pos = this.start;
    if (!this.header) {
      if (end - pos < 19) return;
      if (!buf.subarray(pos, pos + 11).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
      pos += 19 + buf.readInt32BE(pos + 15);
      this.header = true;
      this.start = pos;
    }
    if (this.trailer) {
      if (end > pos) throw new Error(`binary COPY: ${end - pos} bytes after the trailer`);
      return;
    }
    if (this.mode === 'chunks' && end - pos < CHUNK_BYTES) return; // more comes, or end() takes the rest
    return this.scan(pos, end);
  }

  /** The consumer's answer to the rows that came last, which end() scans: streamCopy waits for it. */
  tail: Promise<void> | void = undefined;

  end(): void {
    if (this.header && !this.trailer && this.stop > this.start) this.tail = this.scan(this.start, this.stop);
    if (!this.trailer) throw new Error(this.stop > this.start ? `binary COPY ended inside a row (${this.stop - this.start} bytes left)` : 'binary COPY ended without its trailer');
  }

  private scan(pos: number, end: number): Promise<void> | void {
    const view = this.buf.subarray(0, end);
    const { next, data } = this.mode === 'chunks' ? this.chunk(view, pos) : this.rows(view, pos);
    this.start = next;
    if (this.trailer && next < end) throw new Error(`binary COPY: ${end - next} bytes after the trailer`);
    return data === undefined ? undefined : this.onData(data);
  }

  private rows(buf: Buffer, pos: number): { next: number; data: T | undefined } {
    const from = pos;
    const spans: number[] = [];
    for (;;) {
      const row = rowAt(buf, pos);
      if (row === null) break;
      if (row === 'end') {
        this.trailer = true;
        pos += 2;
        break;
      }
      spans.push(pos);
      pos = row.next;
    }
    if (spans.length === 0) return { next: pos, data: undefined };
    // the rows' own copy: this buffer is written over by the next read
    const own = Buffer.from(buf.subarray(from, pos));
    const rows = spans.map((at) => (rowAt(own, at - from) as { row: LeafRow }).row);
    if (nativeHash) hashChunk(rows);
    return { next: pos, data: rows as T };
  }

  private chunk(buf: Buffer, pos: number): { next: number; data: T | undefined } {
    const cap = Math.ceil((buf.length - pos) / MIN_ROW_BYTES) + 1; // room for every row buf can hold
    if (this.a.seqs.length < cap) this.a = scanArrays(Math.max(cap, 2 * this.a.seqs.length));
    const a = this.a;
    const next = this.scanRows ? this.scanRows(buf, pos, a.seqs, a.starts, a.flags, a.leaves, a.state) : scanLeafRowsJs(buf, pos, a);
    if (a.state[1] === 1) this.trailer = true;
    const count = a.state[0]!;
    if (count === 0) return { next, data: undefined };
    const { starts } = a;
    const chunk: LeafChunk = {
      count, seqs: a.seqs, flags: a.flags, leaves: a.leaves,
      row: (i: number) => (rowAt(buf, starts[i]!) as { row: LeafRow }).row,
    };
    return { next, data: chunk as T };
  }
}

function scanArrays(cap: number): ScanArrays {
  return { seqs: new Float64Array(cap), starts: new Int32Array(cap), flags: new Uint8Array(cap), leaves: Buffer.allocUnsafe(32 * cap), state: new Int32Array(2) };
}

/** The verifier's query over one log's rows from seq `from` through `to` (inclusive; Infinity for the end), in seq order. */
export function leafCopySql(client: pg.ClientBase, logId: string, from: number, to: number): string {
  const upper = Number.isFinite(to) ? ` AND seq <= ${Math.trunc(to)}` : '';
  return `COPY (SELECT ${COPY_COLUMNS.join(', ')}
    FROM audit_log WHERE log_id = ${client.escapeLiteral(logId)} AND seq >= ${Math.trunc(from)}${upper} ORDER BY audit_log.seq) TO STDOUT (FORMAT binary)`;
}

/** Runs the COPY through a parser, under the leaf's session settings and the verifier's plan. */
async function streamCopy<T>(client: pg.ClientBase, sql: string, parser: LeafRowParser<T>): Promise<void> {
  await client.query(`${LEAF_SESSION_SQL}; ${LEAF_PLAN_SQL}`);
  try {
    await client.query(new CopyOut(sql, parser)).done;
    await parser.tail;
  } finally {
    // (inside a transaction that failed, its rollback undoes the settings instead)
    await client.query(LEAF_PLAN_RESET_SQL).catch(() => undefined);
  }
}

/**
 * Streams one log's rows from seq `from` through `to` (inclusive; Infinity for the end) in
 * seq order, calling `onRows` for each arriving group (a promise it returns pauses the
 * stream until it settles). One binary COPY: no paging queries.
 */
export async function streamLeafRows(client: pg.ClientBase, logId: string, from: number, to: number, onRows: (rows: LeafRow[]) => Promise<void> | undefined | void): Promise<void> {
  await streamCopy(client, leafCopySql(client, logId, from, to), new LeafRowParser<LeafRow[]>('rows', onRows));
}

/**
 * The same rows as streamLeafRows, as one scanned LeafChunk per CHUNK_BYTES of rows: parsing,
 * both digests and the comparison with the stored hashes in one native call per chunk
 * (scanLeafRowsJs without the addon). The chunk is a view of the reader's buffer: valid
 * until `onChunk` returns (or its promise settles). The verifier's path.
 */
export async function streamLeafChunks(client: pg.ClientBase, logId: string, from: number, to: number, onChunk: (chunk: LeafChunk) => Promise<void> | undefined | void): Promise<void> {
  await streamCopy(client, leafCopySql(client, logId, from, to), new LeafRowParser<LeafChunk>('chunks', onChunk));
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
