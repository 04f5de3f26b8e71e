import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTopology } from '../../src/config/topology.ts';
import { DebeziumDecoder } from '../../src/events/debezium.ts';
import type { ChangeEvent } from '../../src/events/change-event.ts';
import { ENTITIES, envelope, EnvelopeWriter, formsOf, Keyspace, mixOp, row, step } from '../../load/events.ts';

/** The load generator's events decode through the worker's own decoder, in both converter forms. */
const topology = loadTopology(path.resolve('load/topology.yaml'));
const decoder = new DebeziumDecoder(topology);

describe('load generator events', () => {
  for (const schemas of [true, false]) {
    for (const entity of ENTITIES) {
      it(`${entity}, schemas ${schemas ? 'on' : 'off'}: insert, update and delete decode as the load node's changes`, () => {
        const now = Date.UTC(2026, 10, 30, 12);
        const m = (n: number) => ({ lsn: 1000n + BigInt(n), txId: n, now, schemas });
        const decode = (e: ReturnType<typeof envelope>) => decoder.decode({ topic: e.topic, partition: 0, offset: 1, value: e.value }) as ChangeEvent;
        const c = decode(envelope(entity, 'c', null, row(7, 1, now * 1000), m(1)));
        expect(c).toMatchObject({ entity, node: 'load', op: 'c', key: { id: 7 }, before: null, after: { id: 7, name: 'v1', qty: 1 } });
        expect(String(c.after!.updated_at)).toMatch(/^2026-11-30T12:00:00/);
        expect(Buffer.byteLength(JSON.stringify(c.after))).toBeGreaterThan(900);
        const u = decode(envelope(entity, 'u', row(7, 1, now * 1000), row(7, 2, now * 1000), m(2)));
        expect(u).toMatchObject({ op: 'u', before: { qty: 1 }, after: { qty: 2, name: 'v2' }, sourceTsMs: now });
        expect(u.position.source).toMatchObject({ lsn: 1002 });
        const d = decode(envelope(entity, 'd', row(7, 2, now * 1000), null, m(3)));
        expect(d).toMatchObject({ op: 'd', key: { id: 7 }, after: null });
      });
    }
  }

  it("keeps one key form per entity, so a record's events share a partition", () => {
    // Kafka partitions by the key's bytes: a record whose key changed form would have its
    // events in two partitions, out of order (the worker then skips the older as a duplicate).
    for (const entity of ENTITIES) {
      const keys = new Set<string>();
      const values = new Set<string>();
      for (let seq = 1; seq <= 4; seq++) {
        const e = envelope(entity, 'u', row(7, seq, 0), row(7, seq + 1, 0), { lsn: BigInt(seq), txId: seq, now: 0, ...formsOf(entity, seq) });
        keys.add(e.key.toString());
        values.add(String(JSON.parse(e.value.toString()).schema !== undefined));
      }
      expect(keys.size, entity).toBe(1);
      expect(values.size, entity).toBe(entity === 'shipments' ? 2 : 1); // shipments still carries both value forms
    }
  });

  it('the EnvelopeWriter writes the same bytes as envelope, for every entity, op and converter form, event after event', () => {
    // the generator's fast path reuses one buffer: each event is checked before the next write
    for (const prefix of ['load', 'bench-gen']) {
      const w = new EnvelopeWriter(prefix);
      const ks = new Keyspace(9_999_990);
      let checked = 0;
      for (let seq = 1; seq <= 400; seq++) {
        const entity = ENTITIES[seq % 3]!;
        const nowUs = 1_796_000_000_000_000 + seq * 7919;
        const c = step(ks, mixOp((seq * 0.618) % 1), nowUs);
        const m = { lsn: 1_796_000_000_000_000n + BigInt(seq * 8), txId: seq, now: Math.floor(nowUs / 1000), ...formsOf(entity, seq), prefix };
        const want = envelope(entity, c.op, c.before, c.after, m);
        const got = w.write(entity, c.op, c.id, c.beforeVersion, c.afterVersion, nowUs, m);
        expect(got.topic).toBe(want.topic);
        expect(got.key.toString('latin1')).toBe(want.key.toString('latin1'));
        expect(got.value.toString('latin1')).toBe(want.value.toString('latin1'));
        checked++;
      }
      expect(checked).toBe(400);
    }
    // a value with 1-digit and 16-digit numbers at once
    const w = new EnvelopeWriter();
    const m = { lsn: 9n, txId: 0, now: 0, schemas: false, keySchemas: false };
    expect(w.write('accounts', 'u', 1, 9, 10, 9_007_199_254_740_991, m).value.toString()).toBe(envelope('accounts', 'u', row(1, 9, 9_007_199_254_740_991), row(1, 10, 9_007_199_254_740_991), m).value.toString());
  });

  it('steps the key space: an insert adds a key at version 1, an update bumps it, a delete removes it, and with no key left both become inserts', () => {
    const ks = new Keyspace(100);
    expect(step(ks, 'u', 0)).toMatchObject({ op: 'c', id: 100, before: null, after: { id: 100, qty: 1 } });
    expect(step(ks, 'u', 0)).toMatchObject({ op: 'u', id: 100, before: { qty: 1 }, after: { qty: 2 } });
    expect(ks.version.get(100)).toBe(2);
    expect(step(ks, 'd', 0)).toMatchObject({ op: 'd', id: 100, before: { qty: 2 }, after: null });
    expect(ks.live).toEqual([]);
    expect(step(ks, 'd', 0)).toMatchObject({ op: 'c', id: 101 });
    expect([0, 0.69, 0.7, 0.89, 0.9, 0.99].map(mixOp)).toEqual(['u', 'u', 'c', 'c', 'd', 'd']);
  });

  it('maps to the two target-only nodes and reads only the load topics', () => {
    expect([...topology.topics.keys()].sort()).toEqual(ENTITIES.map((e) => `load.loadtest.${e}`).sort());
    for (const e of topology.entities.values()) expect(e.targets).toEqual(['pg', 'maria']);
  });
});
