import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { CDC_TOPICS, ROOT, freshKeyBase, maria, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { counterSum, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { pgCustomerEnvelope, rawProducer } from '../support/envelopes.ts';
import { commitAtEnd } from '../../src/kafka/consumer.ts';
import { loadTopology } from '../../src/config/topology.ts';
import { DebeziumDecoder } from '../../src/events/debezium.ts';
import { encodeChange, routingKey } from '../../src/events/change-codec.ts';
import type { ChangeEvent } from '../../src/events/change-event.ts';

/**
 * A record whose processing fails the same way every time, for no fault of a server
 * (DESIGN §3, invariant 7; issue 12, defect 5). Before, its batch was retried forever and
 * the partition stood still. Now the batch is split until the record stands alone, and
 * after a few tries alone it is a WS_INTERNAL dead letter, its key parked, while the
 * records around it commit in order.
 *
 * The record here is a change of an entity the topology no longer has, waiting in the
 * changes topic: what an operator's topology change leaves behind.
 */
const group = `e2e-poison-${Date.now().toString(36)}`;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
let w: WorkerHandle;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  await commitAtEnd(stack().kafka.bootstrap, group, CDC_TOPICS);
  w = await startWorker(group);
  await w.ready();
});

afterAll(async () => {
  if (w) expect((await w.kill('SIGTERM')).code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

const inMaria = async (id: number) => {
  const [rows] = await my.query('SELECT name FROM customers WHERE id = ?', [id]);
  return (rows as Array<{ name: string }>)[0]?.name;
};

describe('a record that keeps failing', () => {
  it('is dead-lettered as WS_INTERNAL once it stands alone, and the records around it commit', async () => {
    const base = freshKeyBase();
    const decoder = new DebeziumDecoder(loadTopology(path.join(ROOT, 'deploy/local/worker-sync.yaml')));
    const event = (id: number, n: number): ChangeEvent => {
      const e = pgCustomerEnvelope('c', id, { name: `around the poison ${n}` });
      const ev = decoder.decode({ topic: 'pg.public.customers', partition: 0, offset: 1_000_000_000 + n, value: Buffer.from(e.value) });
      if ('tombstone' in ev) throw new Error('tombstone');
      return ev;
    };
    const before = [event(base, 1), event(base + 1, 2)];
    const poison = { ...event(base + 2, 3), entity: 'gone' };
    const after = [event(base + 3, 4), event(base + 4, 5)];
    const producer = await rawProducer();
    try {
      // one partition, in this order: the poison sits inside what would be one batch
      for (const ev of [...before, poison, ...after]) await producer.send(`${group}.changes`, routingKey(ev), encodeChange(ev), 3);
    } finally {
      await producer.close();
    }
    for (const [i, id] of [base, base + 1, base + 3, base + 4].entries()) {
      await waitFor(`record ${id} in MariaDB`, async () => (await inMaria(id)) === `around the poison ${[1, 2, 4, 5][i]}`, 60_000);
    }
    const { rows } = await control.query(
      `SELECT reason, error, entity, record_key, payload_kind, payload IS NOT NULL AS kept FROM sync_dead_letters WHERE consumer_group = $1`, [group]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ reason: 'WS_INTERNAL', entity: 'gone', record_key: `[${base + 2}]`, payload_kind: 'change', kept: true });
    expect(rows[0].error).toMatch(/Error: /);
    const audited = await control.query(
      `SELECT record_key->>'id' AS id FROM audit_log WHERE log_id = $1 ORDER BY seq`, [`${group}:${group}.changes/3`]);
    expect(audited.rows.map((r) => Number(r.id))).toEqual([base, base + 1, base + 3, base + 4]);
    expect(counterSum(await w.metrics(), 'sync_dead_letters_total', 'reason="WS_INTERNAL"')).toBe(1);
    // and the pipeline carries on as usual
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'later', 1, '{}', now())`, [base + 5]);
    await waitFor('a later change in MariaDB', async () => (await inMaria(base + 5)) === 'later', 60_000);
  });
});
