import { Binary, MongoBulkWriteError, MongoClient, type AnyBulkWriteOperation, type Collection, type Document } from 'mongodb';
import type { EntityConfig, EntityNodeMapping } from '../config/topology.ts';
import type { Row } from '../events/change-event.ts';
import { fromDriver, toBson } from '../events/mongo-values.ts';
import type { DeleteRow, RowOutcome, Sink, SinkResult, UpsertRow } from './sink.ts';
import { failureKind, errorMessage, TargetError } from '../errors.ts';


/**
 * MongoDB sink (DESIGN §2, §6). One unordered `bulkWrite` per batch: compare-and-set
 * `updateOne`s filtered on `_id` and the version field, `$setOnInsert` upserts for rows
 * expected absent, and `deleteOne`s filtered the same way. MongoDB reports no per-row
 * outcome for updates in a bulk, so the batch's versions are read before (a row already
 * at the new version, or already gone, is not written) and after (a row holding the new
 * version was written by us; one holding another was not). Writes outside a transaction
 * cannot be rolled back, so a row MongoDB refuses is reported as rejected while the others
 * stand; the caller retries it alone and then dead-letters it. That is every write error
 * MongoDB reports for one document (a duplicate key on a secondary unique index, a failed
 * validation, a field name it refuses, a document too large), and every value that has no
 * BSON form (a decimal beyond Decimal128's 34 digits); only the errors that say the server
 * is unreachable or busy fail the whole batch (errors.ts, failureKind).
 */
export class MongoSink implements Sink {
  readonly node: string;
  private readonly client: MongoClient;

  constructor(node: string, url: string, poolSize = 4) {
    this.node = node;
    this.client = new MongoClient(url, { maxPoolSize: poolSize, serverSelectionTimeoutMS: 5000, connectTimeoutMS: 5000 });
  }

  private target(entity: EntityConfig): { coll: Collection<Document>; mapping: EntityNodeMapping; vfield: string | undefined } {
    const mapping = entity.nodes.get(this.node);
    if (!mapping) throw new Error(`entity ${entity.name} has no collection on node ${this.node}`);
    const dot = mapping.table.indexOf('.');
    const coll = this.client.db(mapping.table.slice(0, dot)).collection(mapping.table.slice(dot + 1));
    const vfield = entity.versionColumn ? mapping.columns.get(entity.versionColumn) ?? entity.versionColumn : undefined;
    return { coll, mapping, vfield };
  }

  private id(entity: EntityConfig, key: Row): unknown {
    const k = entity.key[0]!;
    return toBson(key[k], entity.columns.get(k)!);
  }

  private document(entity: EntityConfig, mapping: EntityNodeMapping, row: Row): Document {
    const doc: Document = {};
    for (const [col, type] of entity.columns) {
      if (col === entity.key[0]) continue;
      doc[mapping.columns.get(col)!] = toBson(row[col], type);
    }
    return doc;
  }

  /** The version field of each listed document, by canonical key text; absent documents are missing from the map. */
  private async versions(entity: EntityConfig, coll: Collection<Document>, vfield: string | undefined, keys: Row[]): Promise<Map<string, Buffer | null>> {
    const out = new Map<string, Buffer | null>();
    if (keys.length === 0) return out;
    const keyType = entity.columns.get(entity.key[0]!)!;
    const docs = await coll.find({ _id: { $in: keys.map((k) => this.id(entity, k)) } as never }, { projection: { _id: 1, ...(vfield ? { [vfield]: 1 } : {}) }, promoteLongs: false }).toArray();
    for (const d of docs) {
      const v = vfield ? d[vfield] : null;
      out.set(JSON.stringify([fromDriver(d._id, keyType, '_id')]), v instanceof Binary ? Buffer.from(v.buffer) : null);
    }
    return out;
  }

  /** Failures leave as TargetError, classified here, where the driver's error is understood. */
  async applyBatch(entity: EntityConfig, upserts: UpsertRow[], deletes: DeleteRow[]): Promise<SinkResult> {
    try {
      return await this.write(entity, upserts, deletes);
    } catch (err) {
      throw TargetError.from(this.node, err);
    }
  }

  private async write(entity: EntityConfig, upserts: UpsertRow[], deletes: DeleteRow[]): Promise<SinkResult> {
    const { coll, mapping, vfield } = this.target(entity);
    const keyText = (k: Row) => JSON.stringify([k[entity.key[0]!]]);
    const same = (a: Buffer | null | undefined, b: Buffer | null) => ((a ?? null) === null ? b === null : b !== null && a!.equals(b));
    const before = await this.versions(entity, coll, vfield, [...upserts.map((u) => u.key), ...deletes.map((d) => d.key)]);

    const ops: AnyBulkWriteOperation<Document>[] = [];
    const opRow: Array<{ kind: 'u' | 'd'; i: number }> = [];
    const up: RowOutcome[] = upserts.map(() => 'applied');
    const dl: RowOutcome[] = deletes.map(() => 'applied');
    upserts.forEach((u, i) => {
      const k = keyText(u.key);
      let _id: unknown;
      let doc: Document;
      try {
        _id = this.id(entity, u.key);
        doc = this.document(entity, mapping, u.row);
      } catch (err) {
        up[i] = { rejected: `no BSON form: ${errorMessage(err)}` };
        return;
      }
      if (!vfield) {
        ops.push({ updateOne: { filter: { _id } as never, update: { $set: doc }, upsert: true } });
      } else if (before.has(k) && same(before.get(k), u.version)) {
        up[i] = 'already';
        return;
      } else if (u.expectAbsent) {
        ops.push({ updateOne: { filter: { _id } as never, update: { $setOnInsert: { ...doc, [vfield]: new Binary(u.version) } }, upsert: true } });
      } else {
        ops.push({ updateOne: { filter: { _id, [vfield]: u.expected ? new Binary(u.expected) : null } as never, update: { $set: { ...doc, [vfield]: new Binary(u.version) } } } });
      }
      opRow.push({ kind: 'u', i });
    });
    deletes.forEach((d, i) => {
      if (!before.has(keyText(d.key))) {
        dl[i] = 'already';
        return;
      }
      const _id = this.id(entity, d.key);
      ops.push({ deleteOne: { filter: (!vfield || d.anyVersion ? { _id } : { _id, [vfield]: d.expected ? new Binary(d.expected) : null }) as never } });
      opRow.push({ kind: 'd', i });
    });
    if (ops.length === 0) return { upserts: up, deletes: dl };

    const refused = new Map<number, string>();
    try {
      await coll.bulkWrite(ops, { ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const writeErrors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      // one document's write error is that document's, unless it says the server is unwell
      if (writeErrors.length === 0 || writeErrors.some((w) => failureKind({ name: 'MongoServerError', code: w.code }) !== 'failed')) throw err;
      for (const w of writeErrors) refused.set(w.index, w.errmsg ?? `MongoDB error ${w.code}`);
    }

    // Which writes landed: a document holding the new version (or gone, for a delete) is ours.
    const after = await this.versions(entity, coll, vfield, opRow.map((o) => (o.kind === 'u' ? upserts[o.i]!.key : deletes[o.i]!.key)));
    opRow.forEach((o, n) => {
      const msg = refused.get(n);
      if (o.kind === 'u') {
        const u = upserts[o.i]!;
        if (msg !== undefined) up[o.i] = { rejected: msg };
        else if (vfield) up[o.i] = same(after.get(keyText(u.key)), u.version) && after.has(keyText(u.key)) ? 'applied' : 'cas-skipped';
      } else {
        const d = deletes[o.i]!;
        if (msg !== undefined) dl[o.i] = { rejected: msg };
        else dl[o.i] = after.has(keyText(d.key)) ? 'cas-skipped' : 'applied';
      }
    });
    return { upserts: up, deletes: dl };
  }

  async read(entity: EntityConfig, keys: Row[]): Promise<Array<{ row: Row; version: Buffer | null } | null>> {
    if (keys.length === 0) return [];
    const { coll, mapping, vfield } = this.target(entity);
    const docs = await coll.find({ _id: { $in: keys.map((k) => this.id(entity, k)) } as never }, { promoteLongs: false }).toArray();
    const found = new Map<string, { row: Row; version: Buffer | null }>();
    for (const d of docs) {
      const row: Row = {};
      for (const [col, type] of entity.columns) row[col] = fromDriver(d[mapping.columns.get(col)!], type, `${entity.name}.${col}`);
      const v = vfield ? d[vfield] : null;
      found.set(JSON.stringify([row[entity.key[0]!]]), { row, version: v instanceof Binary ? Buffer.from(v.buffer) : null });
    }
    return keys.map((k) => found.get(JSON.stringify([k[entity.key[0]!]])) ?? null);
  }

  async ping(): Promise<void> {
    await this.client.db('admin').command({ ping: 1 });
  }

  poolStats(): undefined {
    return undefined; // the MongoDB driver's pools report through its monitoring events, not counters
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
