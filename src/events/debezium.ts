import { DecodeError } from '../errors.ts';
import type { EntityConfig, EntityNodeMapping, Topology } from '../config/topology.ts';
import type { ChangeEvent, Op, Row, Tombstone } from './change-event.ts';
import { PrecisionLost, toCanonical, ValueError, type Canonical, type FieldSchema } from './values.ts';
import { sourcePosition } from './source-position.ts';
import { parseJsonLossless } from './lossless-json.ts';
import { fromExtendedJson, versionFromExtendedJson } from './mongo-values.ts';

/**
 * Decoder for the Debezium envelope of PostgreSQL, MariaDB/MySQL and MongoDB (whose
 * images are Extended JSON text, see mongo-values.ts) in both JSON converter forms:
 *   schemas on : {"schema": {...}, "payload": {"before", "after", "source", "op", "ts_ms", ...}}
 *   schemas off: {"before", "after", "source", "op", "ts_ms", ...}
 * A null value is a tombstone. Everything else that is not a valid envelope for a
 * configured table is a DecodeError, which the runtime sends to the dead letters.
 */
export interface RawMessage {
  topic: string;
  partition: number;
  offset: number;
  value: Buffer | null;
}

const OPS = new Set<Op>(['c', 'u', 'd', 'r', 't']);

function parseJson(text: string, parse: (t: string) => unknown): unknown {
  try {
    return parse(text);
  } catch (err) {
    throw new DecodeError('WS_DECODE_MALFORMED', `value is not JSON: ${(err as Error).message}`, err);
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export class DebeziumDecoder {
  private readonly topology: Topology;

  constructor(topology: Topology) {
    this.topology = topology;
  }

  /**
   * The entity and canonical key named by a message's Kafka key, for an event whose value
   * could not be decoded: its key can still be parked, so that later events of the same
   * record wait behind it. Null when the key cannot be read either.
   */
  decodeKey(topic: string, key: Buffer | null): { entity: string; keyText: string } | null {
    const route = this.topology.topics.get(topic);
    if (!route || key === null) return null;
    try {
      let doc = parseJsonLossless(key.toString('utf8'));
      if (isObj(doc) && 'payload' in doc && 'schema' in doc) doc = doc.payload;
      if (!isObj(doc)) return null;
      if (this.topology.nodes.get(route.mapping.node)?.kind === 'mongodb') {
        // {"id": "<the _id as Extended JSON text>"}
        if (typeof doc.id !== 'string' || route.entity.key.length !== 1) return null;
        let id: unknown = doc.id;
        try { id = parseJsonLossless(doc.id); } catch { /* a bare string id */ }
        const v = fromExtendedJson(id, route.entity.columns.get(route.entity.key[0]!)!, 'key');
        return v === null ? null : { entity: route.entity.name, keyText: JSON.stringify([v]) };
      }
      const fields = doc;
      const parts: Canonical[] = route.entity.key.map((k) => {
        const raw = fields[route.mapping.columns.get(k)!];
        const v = toCanonical(raw, route.entity.columns.get(k)!, undefined, k);
        if (v === null) throw new Error('null key');
        return v;
      });
      return { entity: route.entity.name, keyText: JSON.stringify(parts) };
    } catch {
      return null;
    }
  }

  decode(msg: RawMessage): ChangeEvent | Tombstone {
    const route = this.topology.topics.get(msg.topic);
    if (!route) throw new DecodeError('WS_DECODE_UNKNOWN_TOPIC', `topic ${msg.topic} is not mapped to any entity`);
    if (msg.value === null || msg.value.length === 0) {
      return { tombstone: true, topic: msg.topic, partition: msg.partition, offset: msg.offset };
    }
    const text = msg.value.toString('utf8');
    try {
      return this.decodeDocument(msg, parseJson(text, JSON.parse), route.entity, route.mapping);
    } catch (err) {
      if (!(err instanceof PrecisionLost)) throw err;
    }
    try {
      return this.decodeDocument(msg, parseJson(text, parseJsonLossless), route.entity, route.mapping);
    } catch (err) {
      // still inexact once its digits are read exactly: written as a float (1e300), not an integer
      if (err instanceof PrecisionLost) throw new DecodeError('WS_DECODE_BAD_VALUE', err.message, err);
      throw err;
    }
  }

  private decodeDocument(msg: RawMessage, doc: unknown, entity: EntityConfig, mapping: EntityNodeMapping): ChangeEvent | Tombstone {
    if (doc === null) return { tombstone: true, topic: msg.topic, partition: msg.partition, offset: msg.offset };
    if (!isObj(doc)) throw new DecodeError('WS_DECODE_MALFORMED', 'value is not a JSON object');

    let payload: Obj;
    let schema: FieldSchema | undefined;
    if ('payload' in doc && 'schema' in doc) {
      if (doc.payload === null) return { tombstone: true, topic: msg.topic, partition: msg.partition, offset: msg.offset };
      if (!isObj(doc.payload)) throw new DecodeError('WS_DECODE_MALFORMED', 'payload is not an object');
      payload = doc.payload;
      schema = isObj(doc.schema) ? (doc.schema as unknown as FieldSchema) : undefined;
    } else {
      payload = doc;
    }
    return this.decodeEnvelope(msg, payload, schema, entity, mapping);
  }

  private decodeEnvelope(msg: RawMessage, p: Obj, schema: FieldSchema | undefined, entity: EntityConfig, mapping: EntityNodeMapping): ChangeEvent {
    const op = p.op;
    if (typeof op !== 'string' || !OPS.has(op as Op)) {
      throw new DecodeError('WS_DECODE_MALFORMED', `envelope has no valid op (got ${JSON.stringify(op)})`);
    }
    if (!isObj(p.source)) throw new DecodeError('WS_DECODE_MALFORMED', 'envelope has no source block');
    const source = p.source;
    const node = this.topology.nodes.get(mapping.node)!;

    const rowSchema = (name: 'before' | 'after'): Map<string, FieldSchema> | undefined => {
      const f = schema?.fields?.find((x) => x.field === name);
      if (!f?.fields) return undefined;
      return new Map(f.fields.map((x) => [x.field ?? '', x]));
    };

    const image = (name: 'before' | 'after'): { row: Row; version: Buffer | null; complete: boolean } | null => {
      const raw = p[name];
      if (raw === null || raw === undefined) return null;
      if (node.kind === 'mongodb') return mongoImage(raw, name, entity, mapping);
      if (!isObj(raw)) throw new DecodeError('WS_DECODE_MALFORMED', `${name} is not an object`);
      const fields = rowSchema(name);
      const row: Row = {};
      let version: Buffer | null = null;
      let seen = 0;
      for (const [col, value] of Object.entries(raw)) {
        if (col === (entity.versionColumn ? mapping.columns.get(entity.versionColumn) ?? entity.versionColumn : undefined)) {
          version = typeof value === 'string' && value !== '' ? Buffer.from(value, 'base64') : null;
          continue;
        }
        const entityCol = mapping.columnsBack.get(col);
        if (entityCol === undefined) {
          throw new DecodeError('WS_DECODE_UNKNOWN_COLUMN', `column "${col}" of ${mapping.table} is not mapped in entity ${entity.name}`);
        }
        const type = entity.columns.get(entityCol)!;
        try {
          row[entityCol] = toCanonical(value, type, fields?.get(col), `${entity.name}.${entityCol}`);
        } catch (err) {
          if (err instanceof ValueError) throw new DecodeError('WS_DECODE_BAD_VALUE', err.message, err);
          throw err;
        }
        seen++;
      }
      return { row, version, complete: seen === entity.columns.size };
    };

    const before = image('before');
    const after = image('after');
    const kind = op as Op;
    if ((kind === 'c' || kind === 'r' || kind === 'u') && after === null) {
      const hint = node.kind === 'mongodb' && kind === 'u' ? ' (set capture.mode=change_streams_update_full_with_pre_image and capture.mode.full.update.type=post_image, DESIGN §6)' : '';
      throw new DecodeError('WS_DECODE_MALFORMED', `op "${kind}" without an after image${hint}`);
    }
    if (kind === 'd' && before === null) {
      const hint = node.kind === 'mongodb' ? ' (enable changeStreamPreAndPostImages on the collection and a *_with_pre_image capture.mode, DESIGN §6)' : '';
      throw new DecodeError('WS_DECODE_MALFORMED', `delete without a before image${hint}`);
    }

    let key: Row | null = null;
    let keyText = '*';
    if (kind !== 't') {
      const img = (after ?? before)!.row;
      key = {};
      const parts: Canonical[] = [];
      for (const k of entity.key) {
        const v = img[k];
        if (v === undefined || v === null) throw new DecodeError('WS_DECODE_MALFORMED', `key column "${k}" is missing from the ${after ? 'after' : 'before'} image`);
        key[k] = v;
        parts.push(v);
      }
      keyText = JSON.stringify(parts);
    }

    let changed: string[] | null = null;
    if (kind === 'u' && before?.complete && after) {
      changed = [];
      for (const col of entity.columns.keys()) {
        if (!sameValue(before.row[col], after.row[col])) changed.push(col);
      }
    }

    const tsMs = typeof p.ts_ms === 'number' ? p.ts_ms : Date.now();
    const sourceTs = typeof source.ts_ms === 'number' ? source.ts_ms : tsMs;
    const tx = isObj(p.transaction) && typeof p.transaction.id === 'string' ? p.transaction.id : null;
    return {
      id: `${msg.topic}/${msg.partition}/${msg.offset}`,
      entity: entity.name,
      node: node.name,
      op: kind,
      key,
      keyText,
      before: before?.row ?? null,
      after: after?.row ?? null,
      changed,
      baseVersion: (kind === 'd' ? before?.version : after?.version) ?? null,
      sourceTsMs: sourceTs,
      emittedTsMs: tsMs,
      position: { topic: msg.topic, partition: msg.partition, offset: msg.offset, source: sourcePosition(node.kind, source) },
      transactionId: tx,
    };
  }
}

/**
 * A MongoDB before or after image: Extended JSON text (DESIGN §5). `_id` is the entity's
 * key column (topology maps it); the version column is BinData.
 */
function mongoImage(raw: unknown, name: string, entity: EntityConfig, mapping: EntityNodeMapping): { row: Row; version: Buffer | null; complete: boolean } {
  let doc: unknown = raw;
  if (typeof raw === 'string') {
    try {
      doc = parseJsonLossless(raw);
    } catch (err) {
      throw new DecodeError('WS_DECODE_MALFORMED', `${name} is not Extended JSON: ${(err as Error).message}`, err);
    }
  }
  if (!isObj(doc)) throw new DecodeError('WS_DECODE_MALFORMED', `${name} is not a document`);
  const vfield = entity.versionColumn ? mapping.columns.get(entity.versionColumn) ?? entity.versionColumn : undefined;
  const row: Row = {};
  let version: Buffer | null = null;
  for (const [field, value] of Object.entries(doc)) {
    try {
      if (field === vfield) {
        version = versionFromExtendedJson(value, `${entity.name}.${field}`);
        continue;
      }
      const col = mapping.columnsBack.get(field);
      if (col === undefined) throw new DecodeError('WS_DECODE_UNKNOWN_COLUMN', `field "${field}" of ${mapping.table} is not mapped in entity ${entity.name}`);
      row[col] = fromExtendedJson(value, entity.columns.get(col)!, `${entity.name}.${col}`);
    } catch (err) {
      if (err instanceof ValueError) throw new DecodeError('WS_DECODE_BAD_VALUE', err.message, err);
      throw err;
    }
  }
  // A document may leave out a field that is null elsewhere: absent is null, and a pre-
  // or post-image is always the whole document.
  for (const col of entity.columns.keys()) if (!(col in row)) row[col] = null;
  return { row, version, complete: true };
}

/** Structural equality of canonical values (JSON values compared by content). */
export function sameValue(a: Canonical | undefined, b: Canonical | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (typeof a === 'object' && typeof b === 'object') return stableJson(a) === stableJson(b);
  return false;
}

/** JSON with object keys sorted, so equal documents give equal text. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v as Obj).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((v as Obj)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
