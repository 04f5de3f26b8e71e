import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { parse } from 'yaml';
import { CDC_TOPICS, ROOT, freshKeyBase, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { commitAtEnd } from '../../src/kafka/consumer.ts';

/**
 * The Grafana dashboards and the alert rules against the local stack's real Prometheus,
 * scraping a real worker (issue 14): every panel's query runs without error, every metric
 * a panel or an alert names is one the worker exports, and Prometheus has the rules loaded.
 */
const group = `e2e-dash-${Date.now().toString(36)}`;
const targets = () => path.join(stack().prometheus.targets, `${group}.json`);
let w: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;

interface Dashboard { uid: string; panels: Array<{ title: string; targets: Array<{ expr: string }> }> }
const dashboards: Dashboard[] = readdirSync(path.join(ROOT, 'deploy/grafana')).filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana', f), 'utf8')) as Dashboard);

async function promQuery(expr: string): Promise<{ status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }> {
  const res = await fetch(`${stack().prometheus.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return res.json() as never;
}

/** The metric names an expression reads: identifiers that are neither PromQL functions, keywords nor label names. */
const NOT_METRICS = new Set(['sum', 'rate', 'increase', 'max', 'min', 'count', 'by', 'histogram_quantile', 'clamp_min', 'and', 'or', 'absent', 'le', 'job', 'instance', 'node', 'state', 'reason', 'entity', 'outcome', 'kind', 'topic', 'partition', 'source_node', 'without', 'on', 'ignoring', 'time']);
function metricNames(expr: string): string[] {
  const noLabels = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/"[^"]*"/g, '').replace(/\b\d+(\.\d+)?(e[-+]?\d+)?\b/gi, '');
  return [...new Set((noLabels.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []).filter((t) => !NOT_METRICS.has(t) && !/^\d/.test(t)))];
}

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  await commitAtEnd(stack().kafka.bootstrap, group, CDC_TOPICS);
  w = await startWorker(group);
  await w.ready();
  writeFileSync(targets(), JSON.stringify([{ targets: [`127.0.0.1:${w.port}`], labels: { suite: group } }]));
  // something to show: a change synced, so the event counters and histograms have series
  await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'dashboards', 1, '{}', now())`, [freshKeyBase()]);
  await waitFor('the change counted', async () => /^sync_events_total\{/m.test(await w.metrics()), 60_000);
  await waitFor('Prometheus scraping the worker, after the change', async () => {
    const r = await promQuery(`sync_events_total{suite="${group}"}`);
    return (r.data?.result.length ?? 0) > 0;
  }, 60_000, 1000);
});

afterAll(async () => {
  rmSync(targets(), { force: true });
  if (w) expect((await w.kill('SIGTERM')).code).toBe(0);
  await Promise.all([app?.end(), control?.end()]);
});

describe('observability on the real Prometheus', () => {
  it('scrapes the worker as job worker-sync: up == 1', async () => {
    const r = await promQuery(`up{job="worker-sync",suite="${group}"}`);
    expect(r.data?.result.map((x) => x.value[1])).toEqual(['1']);
  });

  it('has every rule of deploy/prometheus/rules.yml loaded', async () => {
    const res = await (await fetch(`${stack().prometheus.url}/api/v1/rules`)).json() as { data: { groups: Array<{ rules: Array<{ name: string; health: string }> }> } };
    const loaded = res.data.groups.flatMap((g) => g.rules);
    const source = (parse(readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(loaded.map((r) => r.name).sort()).toEqual([...source].sort());
    expect(loaded.filter((r) => r.health === 'err')).toEqual([]);
  });

  it('has the three dashboards the runbook links, and every metric they and the alerts name is exported', async () => {
    expect(dashboards.map((d) => d.uid).sort()).toEqual(['database-health', 'kafka-monitoring', 'worker-sync-overview']);
    const exported = new Set((await w.metrics()).split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!));
    const has = (m: string) => m === 'up' || exported.has(m) || exported.has(m.replace(/_(bucket|sum|count)$/, ''));
    const rules = (parse(readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups.flatMap((g) => g.rules);
    const unknown: string[] = [];
    for (const d of dashboards) for (const p of d.panels) for (const t of p.targets) for (const m of metricNames(t.expr)) if (!has(m)) unknown.push(`${d.uid} / ${p.title}: ${m}`);
    for (const r of rules) for (const m of metricNames(r.expr)) if (!has(m)) unknown.push(`alert ${r.alert}: ${m}`);
    expect(unknown).toEqual([]);
  });

  it('runs every panel query without error', async () => {
    const failed: string[] = [];
    let withData = 0;
    let total = 0;
    for (const d of dashboards) {
      for (const p of d.panels) {
        for (const t of p.targets) {
          total++;
          const r = await promQuery(t.expr);
          if (r.status !== 'success') failed.push(`${d.uid} / ${p.title}: ${r.error}`);
          else if ((r.data?.result.length ?? 0) > 0) withData++;
        }
      }
    }
    expect(failed).toEqual([]);
    // series exist for what has happened since the worker started; the rest return empty, not an error
    expect(withData).toBeGreaterThan(0);
    expect(total).toBeGreaterThan(40);
  });
});
