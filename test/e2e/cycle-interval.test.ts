import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, settle } from '../support/worker-process.ts';
import { startApiWorker, type ApiWorker } from '../support/api.ts';

/**
 * CYCLE_INTERVAL_MS (issue 13): lanes cut their next batches no sooner than the interval
 * after the last cycle started, so changes arriving one at a time are committed a
 * handful of cycles at a time, not one cycle each, and every one still arrives.
 */
const group = `e2e-interval-${Date.now().toString(36)}`;
const INTERVAL_MS = 1000;
const KEYS = 30;
let w: ApiWorker;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  w = await startApiWorker(group, { CYCLE_INTERVAL_MS: String(INTERVAL_MS) });
  await settle(group, w, app, control);
});

afterAll(async () => {
  expect((await w?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

describe('cycle interval', () => {
  it('gathers changes that arrive one at a time into cycles at most one interval apart', async () => {
    // a new group first reads the connector topics' backlog: let it drain, so that only this
    // test's changes make the cycles counted (none for two intervals)
    let last = -1;
    await waitFor('the backlog drained', async () => {
      const n = counterSum(await w.metrics(), 'sync_cycle_events_count');
      if (n === last) return true;
      last = n;
      await new Promise((r) => setTimeout(r, 2 * INTERVAL_MS));
      return false;
    }, 120_000);
    const before = await w.metrics();
    const started = performance.now();
    const base = freshKeyBase();
    const ids = Array.from({ length: KEYS }, (_, i) => base + i);
    for (const id of ids) {
      await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, $2, 1, '{}', now())`, [id, `interval ${id}`]);
      await new Promise((r) => setTimeout(r, 100));
    }
    const inMaria = async () => {
      const [rows] = await my.query(`SELECT count(*) AS n FROM customers WHERE id IN (${ids.map(() => '?').join(',')})`, ids);
      return Number((rows as Array<{ n: number }>)[0]!.n);
    };
    await waitFor(`all ${KEYS} changes in MariaDB`, async () => (await inMaria()) === KEYS, 60_000);
    const windowS = (performance.now() - started) / 1000;
    const after = await w.metrics();
    const delta = (name: string) => counterSum(after, name) - counterSum(before, name);
    const cycles = delta('sync_cycle_events_count');
    const events = delta('sync_cycle_events_sum');
    // the 30 changes, and their echoes from MariaDB, went through cycles
    expect(events).toBeGreaterThanOrEqual(KEYS);
    // without the interval each change (about 60 with the echoes) makes a cycle of its own; with
    // it a cycle starts about once an interval, and a batch cut just before one starts may make
    // one more right after it
    const seen = `${cycles} cycles of ${events} events in ${windowS.toFixed(1)} s`;
    expect(cycles, seen).toBeGreaterThanOrEqual(1);
    expect(cycles, seen).toBeLessThanOrEqual(2 * Math.ceil(windowS / (INTERVAL_MS / 1000)) + 2);
    expect(cycles, seen).toBeLessThan(KEYS / 2);
  });
});
