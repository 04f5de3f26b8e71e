import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { settle } from '../support/worker-process.ts';
import { startApiWorker, type ApiWorker } from '../support/api.ts';

/**
 * Pause and resume under load lose nothing (DESIGN §3 invariants 4 and 8; issue 12, defect
 * 1). A pause that arrives while a lane waits for a slot used to make the lane drop the
 * batch it had cut, and the next commit moved the checkpoint past it: 3,000 inserts made
 * during 8 pauses reached MariaDB 902 times. Now a held batch stays queued, and the
 * checkpoint only advances from where it ends.
 */
const group = `e2e-pause-${Date.now().toString(36)}`;
const ROWS = 3000;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
let w: ApiWorker;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  // one slot for many lanes: lanes wait for it, which is when a pause used to cost a batch
  w = await startApiWorker(group, { QUEUE_CONCURRENCY: '1', BATCH_SIZE: '50' });
  await settle(group, w, app, control);
});

afterAll(async () => {
  if (w) expect((await w.kill('SIGTERM')).code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

describe('pause and resume while changes stream', () => {
  it('applies and audits every change exactly once after 8 pauses', async () => {
    const base = freshKeyBase();
    let inserting = true;
    const writer = (async () => {
      for (let i = 0; i < ROWS; i += 10) {
        const values = Array.from({ length: 10 }, (_, j) => `(${base + i + j}, 'paused ${i + j}', 1, '{}', now())`).join(', ');
        await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ${values}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      inserting = false;
    })();
    const toggles = (async () => {
      for (let n = 0; n < 8; n++) {
        expect((await w.api('POST', '/sync/pause', { by: 'pause-test' })).status).toBe(200);
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 800));
        expect((await w.api('POST', '/sync/resume', { by: 'pause-test' })).status).toBe(200);
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 800));
      }
    })();
    await Promise.all([writer, toggles]);
    expect(inserting).toBe(false);
    const inMaria = async () => {
      const [rows] = await my.query('SELECT count(*) AS n FROM customers WHERE id >= ? AND id < ?', [base, base + ROWS]);
      return Number((rows as Array<{ n: number }>)[0]!.n);
    };
    await waitFor(`all ${ROWS} rows in MariaDB`, async () => (await inMaria()) === ROWS, 90_000, 500).catch(async (err: Error) => {
      throw new Error(`${err.message}; MariaDB holds ${await inMaria()}`);
    });
    // a batch reaches the targets before its commit writes its audit rows (DESIGN §2: apply, then
    // commit), so the last batch's rows can be in MariaDB a moment before they are in audit_log
    const audited = async () => (await control.query<{ n: number; events: number; keys: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS events, count(DISTINCT record_key->>'id')::int AS keys
       FROM audit_log WHERE log_id LIKE $1 AND kind = 'change' AND entity = 'customers' AND (record_key->>'id')::bigint BETWEEN $2 AND $3`,
      [`${group}:%`, base, base + ROWS - 1])).rows[0]!;
    await waitFor(`${ROWS} audited changes`, async () => (await audited()).n >= ROWS, 30_000, 200).catch(async (err: Error) => {
      throw new Error(`${err.message}; audit_log holds ${JSON.stringify(await audited())}`);
    });
    expect(await audited()).toEqual({ n: ROWS, events: ROWS, keys: ROWS });
    const gaps = await control.query(
      `SELECT log_id FROM audit_log WHERE log_id LIKE $1 GROUP BY log_id HAVING count(*) <> max(seq) OR min(seq) <> 1`, [`${group}:%`]);
    expect(gaps.rows).toEqual([]);
    const dead = await control.query('SELECT count(*)::int AS n FROM sync_dead_letters WHERE consumer_group = $1 AND record_key = ANY($2)',
      [group, Array.from({ length: ROWS }, (_, i) => `[${base + i}]`)]);
    expect(dead.rows[0].n).toBe(0);
  });
});
