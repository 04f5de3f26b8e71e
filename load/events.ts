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

function envelopeSchema(entity: Entity): unknown {
  const value = { type: 'struct', fields: VALUE_FIELDS, optional: true, name: `load.loadtest.${entity}.Value` };
  return {
    type: 'struct', optional: false, name: `load.loadtest.${entity}.Envelope`, version: 2,
    fields: [
      { ...value, field: 'before' }, { ...value, field: 'after' },
      { type: 'struct', optional: false, name: 'io.debezium.connector.postgresql.Source', field: 'source', fields: [] },
      { type: 'string', optional: false, field: 'op' }, { type: 'int64', optional: true, field: 'ts_ms' },
    ],
  };
}

const SCHEMAS = new Map(ENTITIES.map((e) => [e, envelopeSchema(e)]));
const KEY_SCHEMA = (e: Entity) => ({ type: 'struct', optional: false, name: `load.loadtest.${e}.Key`, fields: [{ type: 'int64', optional: false, field: 'id' }] });

export interface Row { id: number; name: string; qty: number; payload: string; updated_at: number }

export const row = (id: number, version: number, nowUs: number): Row => ({ id, name: `v${version}`, qty: version, payload: `${id}:${FILLER}`, updated_at: nowUs });

/** One change event of the `load` node: its topic, Kafka key and value. */
export function envelope(entity: Entity, op: 'c' | 'u' | 'd', before: Row | null, after: Row | null, m: { lsn: bigint; txId: number; now: number; schemas: boolean }): { topic: string; key: Buffer; value: Buffer } {
  const id = (after ?? before)!.id;
  const lsn = m.lsn.toString();
  const payload = {
    before, after, op, ts_ms: m.now, transaction: null,
    source: { version: '3.6.1.Final', connector: 'postgresql', name: 'load', ts_ms: m.now, snapshot: 'false', db: 'loadtest', sequence: `["${lsn}","${lsn}"]`, schema: 'loadtest', table: entity, txId: m.txId, lsn: Number(lsn), xmin: null },
  };
  return {
    topic: `load.loadtest.${entity}`,
    key: Buffer.from(JSON.stringify(m.schemas ? { schema: KEY_SCHEMA(entity), payload: { id } } : { id })),
    value: Buffer.from(JSON.stringify(m.schemas ? { schema: SCHEMAS.get(entity), payload } : payload)),
  };
}
