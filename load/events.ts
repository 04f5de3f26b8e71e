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
export function step(ks: Keyspace, op: MixOp, nowUs: number): { op: MixOp; id: number; before: Row | null; after: Row | null } {
  const picked = op === 'c' ? undefined : ks.pick();
  if (picked === undefined) {
    const id = ks.insert();
    return { op: 'c', id, before: null, after: row(id, 1, nowUs) };
  }
  const v = ks.version.get(picked)!;
  const before = row(picked, v, nowUs);
  if (op === 'u') {
    ks.version.set(picked, v + 1);
    return { op, id: picked, before, after: row(picked, v + 1, nowUs) };
  }
  ks.remove(picked);
  return { op, id: picked, before, after: null };
}
