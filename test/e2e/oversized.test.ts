import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { CDC_TOPICS, freshKeyBase, maria, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { commitAtEnd } from '../../src/kafka/consumer.ts';
import { counterSum, settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { pgCustomerEnvelope, rawProducer } from '../support/envelopes.ts';

/**
 * A change too large for the changes topic (issue 12, defect 2). Ingest re-encodes every
 * change; one whose record exceeded the producer's message limit made `send` throw forever
 * while its lane held a slot, and at MAX_BUFFERED_EVENTS fetching stopped everywhere. Now
 * it is a WS_TOO_LARGE dead letter naming its size and the limit, its payload kept in
 * sync_dead_letters, its key parked; an undecodable message too large once base64 keeps
 * its own reason and its payload; and the lanes move on.
 */
const group = `e2e-big-${Date.now().toString(36)}`;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
let w: WorkerHandle;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  // this group sees only what arrives from now on: earlier suites' bad messages stay theirs
  await commitAtEnd(stack().kafka.bootstrap, group, CDC_TOPICS);
  w = await startWorker(group);
  await settle(group, w, app, control);
});

afterAll(async () => {
  if (w) expect((await w.kill('SIGTERM')).code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

const letters = async (key: string) => (await control.query(
  `SELECT reason, error, status, payload_kind, length(payload) AS bytes FROM sync_dead_letters WHERE consumer_group = $1 AND record_key = $2 ORDER BY id`,
  [group, key])).rows as Array<{ reason: string; error: string; status: string; payload_kind: string; bytes: number | null }>;

describe('an oversized change', () => {
  it('becomes a WS_TOO_LARGE dead letter with its payload, parks its key, and the lanes move on', async () => {
    const base = freshKeyBase();
    const producer = await rawProducer();
    // an update of a row with a 600 KB text column: before and after make its record about 1.2 MB
    const big = pgCustomerEnvelope('u', base, { name: 'x'.repeat(600_000) });
    const broken = `{"schema": null, "payload": {"op": "c", "after": {"id": ${base + 1}, "name": "${'y'.repeat(750_000)}"`; // undecodable, 1 MB once base64
    try {
      await producer.send('pg.public.customers', big.key, big.value);
      await producer.send('pg.public.customers', JSON.stringify({ schema: null, payload: { id: base + 1 } }), broken);
      const later = pgCustomerEnvelope('u', base, { name: 'small' }, 1_000_000_000 + (base % 1_000_000) + 1);
      await producer.send('pg.public.customers', later.key, later.value);
    } finally {
      await producer.close();
    }
    // a normal change afterwards syncs as usual
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'after the big one', 1, '{}', now())`, [base + 2]);
    await waitFor('the normal change in MariaDB', async () => {
      const [rows] = await my.query('SELECT name FROM customers WHERE id = ?', [base + 2]);
      return (rows as Array<{ name: string }>)[0]?.name === 'after the big one';
    }, 60_000);

    const tooLarge = await waitFor('the oversized dead letter and its parked successor', async () => {
      const l = await letters(`[${base}]`);
      return l.length === 2 ? l : undefined;
    }, 60_000);
    expect(tooLarge[0]).toMatchObject({ reason: 'WS_TOO_LARGE', status: 'open', payload_kind: 'debezium', bytes: Buffer.byteLength(big.value) });
    expect(tooLarge[0]!.error).toMatch(/record is \d+ bytes; KAFKA_MAX_MESSAGE_BYTES leaves 999488 for one/);
    expect(tooLarge[1]).toMatchObject({ reason: 'WS_PARKED', status: 'open' });

    const undecodable = await waitFor('the undecodable dead letter', async () => {
      const l = await letters(`[${base + 1}]`);
      return l.length === 1 ? l : undefined;
    }, 60_000);
    expect(undecodable[0]).toMatchObject({ reason: 'WS_DECODE_MALFORMED', bytes: Buffer.byteLength(broken) });
    // the staged copies stay a day, for a letter ingest routes twice (a crash between routing and its offset commit)
    const staged = await control.query('SELECT count(*)::int AS n FROM sync_staged_payloads WHERE consumer_group = $1', [group]);
    expect(staged.rows[0].n).toBe(2);

    const metrics = await w.metrics();
    expect(counterSum(metrics, 'sync_dead_letters_total', 'reason="WS_TOO_LARGE"')).toBe(1);
    expect(counterSum(metrics, 'sync_dead_letters_total', 'reason="WS_DECODE_MALFORMED"')).toBe(1);
  });
});
