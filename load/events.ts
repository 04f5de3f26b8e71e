/**
 * The load generator's change events (issue 6): Debezium PostgreSQL-connector envelopes of
 * the synthetic source node `load` (load/topology.yaml), with or without schemas, as the
 * JSON converter writes them. Pure: load/run.ts produces them, test/unit decodes them.
 */
export const ENTITIES = ['products', 'accounts', 'shipments'] as const;
export type Entity = typeof ENTITIES[number];
const FILLER = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. '.repeat(8).slice(0, 880);


const VALUE_FIELDS = [
  { type: 'int64', optional: false, field: 'id' },
  { type: 'string', optional: true, field: 'name' },
  { type: 'int32', optional: true, field: 'qty' },
  { type: 'string', optional: true, field: 'payload' },
  { type: 'int64', optional: true, name: 'io.debezium.time.MicroTimestamp', version: 1, field: 'updated_at' },
];

function envelopeSchema(prefix: string, entity: Entity): unknown {
  const value = { type: 'struct', fields: VALUE_FIELDS, optional: true, name: `${prefix}.loadtest.${entity}.Value` };
  return {
    type: 'struct', optional: false, name: `${prefix}.loadtest.${entity}.Envelope`, version: 2,
    fields: [
      { ...value, field: 'before' }, { ...value, field: 'after' },
      { type: 'struct', optional: false, name: 'io.debezium.connector.postgresql.Source', field: 'source', fields: [] },
      { type: 'string', optional: false, field: 'op' }, { type: 'int64', optional: true, field: 'ts_ms' },
    ],
  };
}

const SCHEMAS = new Map<string, unknown>();
const schemaOf = (prefix: string, e: Entity) => {
  const k = `${prefix}.${e}`;
  if (!SCHEMAS.has(k)) SCHEMAS.set(k, envelopeSchema(prefix, e));
  return SCHEMAS.get(k);
};
const KEY_SCHEMA = (prefix: string, e: Entity) => ({ type: 'struct', optional: false, name: `${prefix}.loadtest.${e}.Key`, fields: [{ type: 'int64', optional: false, field: 'id' }] });

export interface Row { id: number; name: string; qty: number; payload: string; updated_at: number }

export const row = (id: number, version: number, nowUs: number): Row => ({ id, name: `v${version}`, qty: version, payload: `${id}:${FILLER}`, updated_at: nowUs });

/**
 * One change event of the `load` node (or of another synthetic node, whose topic prefix is
 * `m.prefix`): its topic, Kafka key and value.
 */
export function envelope(entity: Entity, op: 'c' | 'u' | 'd', before: Row | null, after: Row | null, m: { lsn: bigint; txId: number; now: number; schemas: boolean; keySchemas?: boolean; prefix?: string }): { topic: string; key: Buffer; value: Buffer } {
  const prefix = m.prefix ?? 'load';
  const id = (after ?? before)!.id;
  const lsn = m.lsn.toString();
  const payload = {
    before, after, op, ts_ms: m.now, transaction: null,
    source: { version: '3.6.1.Final', connector: 'postgresql', name: prefix, ts_ms: m.now, snapshot: 'false', db: 'loadtest', sequence: `["${lsn}","${lsn}"]`, schema: 'loadtest', table: entity, txId: m.txId, lsn: Number(lsn), xmin: null },
  };
  return {
    topic: `${prefix}.loadtest.${entity}`,
    key: Buffer.from(JSON.stringify((m.keySchemas ?? m.schemas) ? { schema: KEY_SCHEMA(prefix, entity), payload: { id } } : { id })),
    value: Buffer.from(JSON.stringify(m.schemas ? { schema: schemaOf(prefix, entity), payload } : payload)),
  };
}

/**
 * The same envelopes as `envelope`, byte for byte, at a fraction of its cost (issue 13: the
 * generator must not compete with the system under test). Each (entity, op, form) has its
 * JSON cut once into constant pieces, held as bytes; an event copies those pieces into one
 * scratch buffer and writes its few varying fields (ids, versions, timestamps, LSN, txId)
 * between them as ASCII digits. No string is built and nothing is allocated per event.
 *
 * The key and value returned are views of the writer's scratch buffers, valid until the
 * next `write`: the producer copies them when it is handed them (librdkafka's
 * RK_MSG_COPY). The unit test checks the bytes against `envelope` over every form and op.
 */
export class EnvelopeWriter {
  private readonly cut = new Map<string, Pieces>();
  private readonly value = Buffer.alloc(16 * 1024);
  private readonly key = Buffer.alloc(1024);
  private at = 0;
  private readonly filler = Buffer.from(`:${FILLER}`, 'latin1');

  constructor(private readonly prefix = 'load') {}

  private pieces(entity: Entity, op: 'c' | 'u' | 'd', schemas: boolean, keySchemas: boolean): Pieces {
    const k = `${entity}|${op}|${schemas ? 1 : 0}|${keySchemas ? 1 : 0}`;
    let p = this.cut.get(k);
    if (p === undefined) {
      const value = JSON.stringify(schemas ? { schema: schemaOf(this.prefix, entity), payload: { before: 0 } } : { before: 0 });
      const key = JSON.stringify(keySchemas ? { schema: KEY_SCHEMA(this.prefix, entity), payload: { id: 0 } } : { id: 0 });
      const b = (text: string) => Buffer.from(text, 'latin1');
      p = {
        topic: `${this.prefix}.loadtest.${entity}`,
        head: b(value.slice(0, value.lastIndexOf('0'))), // up to and including `"before":`
        after: b(',"after":'),
        op: b(`,"op":"${op}","ts_ms":`),
        source: b(`,"transaction":null,"source":{"version":"3.6.1.Final","connector":"postgresql","name":"${this.prefix}","ts_ms":`),
        sequence: b(',"snapshot":"false","db":"loadtest","sequence":"[\\"'),
        lsnSep: b('\\",\\"'),
        table: b(`\\"]","schema":"loadtest","table":"${entity}","txId":`),
        lsn: b(',"lsn":'),
        end: b(`,"xmin":null}}${schemas ? '}' : ''}`),
        keyHead: b(key.slice(0, key.lastIndexOf('0'))),
        keyTail: b(key.slice(key.lastIndexOf('0') + 1)),
      };
      this.cut.set(k, p);
    }
    return p;
  }

  /**
   * The envelope of `envelope(entity, op, before, after, m)` where before and after are
   * `row(id, version, nowUs)` at `beforeVersion` and `afterVersion` (null: no image), as
   * `step` makes them.
   */
  write(entity: Entity, op: 'c' | 'u' | 'd', id: number, beforeVersion: number | null, afterVersion: number | null, nowUs: number, m: { lsn: bigint; txId: number; now: number; schemas: boolean; keySchemas?: boolean }): { topic: string; key: Buffer; value: Buffer } {
    const p = this.pieces(entity, op, m.schemas, m.keySchemas ?? m.schemas);
    const lsn = m.lsn.toString();
    this.at = 0;
    this.put(p.head).row(id, beforeVersion, nowUs).put(p.after).row(id, afterVersion, nowUs).put(p.op).int(m.now).put(p.source).int(m.now)
      .put(p.sequence).text(lsn).put(p.lsnSep).text(lsn).put(p.table).int(m.txId).put(p.lsn).text(lsn).put(p.end);
    const valueEnd = this.at;
    let k = p.keyHead.copy(this.key, 0);
    k += this.key.write(String(id), k, 'latin1');
    k += p.keyTail.copy(this.key, k);
    return { topic: p.topic, key: this.key.subarray(0, k), value: this.value.subarray(0, valueEnd) };
  }

  private put(piece: Buffer): this {
    this.at += piece.copy(this.value, this.at);
    return this;
  }

  /** ASCII only: numbers and the writer's own names. */
  private text(s: string): this {
    this.at += this.value.write(s, this.at, 'latin1');
    return this;
  }

  /** A non-negative safe integer, as JSON writes it, digit by digit. */
  private int(n: number): this {
    let end = this.at;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) end++;
    this.at = end + 1;
    for (let x = n; ; x = Math.floor(x / 10)) {
      this.value[end--] = 48 + (x % 10);
      if (x < 10) return this;
    }
  }

  /** row(id, version, nowUs) as JSON, or null. */
  private row(id: number, version: number | null, nowUs: number): this {
    if (version === null) return this.put(this.nul);
    return this.put(this.rowId).int(id).put(this.rowName).int(version).put(this.rowQty).int(version).put(this.rowPayload).int(id)
      .put(this.filler).put(this.rowUpdated).int(nowUs).put(this.rowEnd);
  }

  private readonly nul = Buffer.from('null');
  private readonly rowId = Buffer.from('{"id":');
  private readonly rowName = Buffer.from(',"name":"v');
  private readonly rowQty = Buffer.from('","qty":');
  private readonly rowPayload = Buffer.from(',"payload":"');
  private readonly rowUpdated = Buffer.from('","updated_at":');
  private readonly rowEnd = Buffer.from('}');
}

interface Pieces {
  topic: string; head: Buffer; after: Buffer; op: Buffer; source: Buffer; sequence: Buffer; lsnSep: Buffer; table: Buffer; lsn: Buffer; end: Buffer;
  keyHead: Buffer; keyTail: Buffer;
}

/**
 * The converter forms of one event: products with schemas, accounts without, shipments
 * with a schema-carrying key and a value that alternates between the two forms. The key's
 * form never changes within an entity: Kafka partitions by the key's bytes, and a record
 * whose events landed in two partitions would lose its order (Debezium's key converter is
 * fixed per connector, so that never happens for real).
 */
export function formsOf(entity: Entity, seq: number): { schemas: boolean; keySchemas: boolean } {
  if (entity === 'products') return { schemas: true, keySchemas: true };
  if (entity === 'accounts') return { schemas: false, keySchemas: false };
  return { schemas: seq % 2 === 0, keySchemas: true };
}

/** Keys per entity, a skewed pick (a few hot keys), and each key's version. */
export class Keyspace {
  readonly live: number[] = [];
  readonly version = new Map<number, number>();
  private next = 1;

  constructor(base: number) {
    this.next = base;
  }

  private readonly at = new Map<number, number>();

  insert(): number {
    const id = this.next++;
    this.at.set(id, this.live.length);
    this.live.push(id);
    this.version.set(id, 1);
    return id;
  }

  /** index ~ n·u³: the low indexes (the oldest keys) are the hot ones. */
  pick(): number | undefined {
    if (this.live.length === 0) return undefined;
    return this.live[Math.floor(this.live.length * Math.random() ** 3)];
  }

  /** O(1): the last key takes the removed one's place. */
  remove(id: number): void {
    const i = this.at.get(id);
    if (i !== undefined) {
      const last = this.live.pop()!;
      if (last !== id) {
        this.live[i] = last;
        this.at.set(last, i);
      }
      this.at.delete(id);
    }
    this.version.delete(id);
  }
}

export type MixOp = 'c' | 'u' | 'd';

/** The load mix: 70 % updates, 20 % inserts, 10 % deletes, from a uniform draw in [0, 1). */
export const mixOp = (r: number): MixOp => (r < 0.7 ? 'u' : r < 0.9 ? 'c' : 'd');

/**
 * Applies one change to the key space and returns its images. An update or delete with no
 * live key left becomes an insert, so `op` is the change actually made.
 */
export function step(ks: Keyspace, op: MixOp, nowUs: number): { op: MixOp; id: number; before: Row | null; after: Row | null; beforeVersion: number | null; afterVersion: number | null } {
  const picked = op === 'c' ? undefined : ks.pick();
  if (picked === undefined) {
    const id = ks.insert();
    return { op: 'c', id, before: null, after: row(id, 1, nowUs), beforeVersion: null, afterVersion: 1 };
  }
  const v = ks.version.get(picked)!;
  const before = row(picked, v, nowUs);
  if (op === 'u') {
    ks.version.set(picked, v + 1);
    return { op, id: picked, before, after: row(picked, v + 1, nowUs), beforeVersion: v, afterVersion: v + 1 };
  }
  ks.remove(picked);
  return { op, id: picked, before, after: null, beforeVersion: v, afterVersion: null };
}
