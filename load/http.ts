import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { freePort, median, table, writeResults } from '../harness/common.ts';

/**
 * `npm run load:http` (issue 6): the HTTP endpoints under load, with autocannon, against a
 * worker it starts on the local stack (the demo topology, the API on with a token): the
 * probes Kubernetes calls, the scrape Prometheus makes, and the API's read side. Each
 * endpoint gets BENCH_ROUNDS (3) rounds of BENCH_SECONDS (5) with 10 connections; the
 * figure is the median round. load/k6/endpoints.js is the same load for k6.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const TOKEN = 'load-http-token';

async function main(): Promise<number> {
  const [surfacePort, apiPort] = [await freePort(), await freePort()];
  const dir = path.join(ROOT, '.local/load');
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, `http-${Date.now().toString(36)}.log`);
  const fd = openSync(logFile, 'a');
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'run'], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, KAFKA_GROUP_ID: `worker-sync-http-${Date.now().toString(36)}`, HTTP_HOST: '127.0.0.1', HTTP_PORT: String(surfacePort), API_PORT: String(apiPort), API_TOKEN: TOKEN, LOG_LEVEL: 'warn' },
  });
  closeSync(fd);
  const surface = `http://127.0.0.1:${surfacePort}`;
  const api = `http://127.0.0.1:${apiPort}`;
  try {
    const deadline = Date.now() + 120_000;
    while (!(await fetch(`${surface}/ready`).then((r) => r.status === 200, () => false))) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`the worker did not get ready; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const targets: Array<[string, string, Record<string, string>]> = [
      ['GET /health', `${surface}/health`, {}],
      ['GET /ready', `${surface}/ready`, {}],
      ['GET /metrics', `${surface}/metrics`, {}],
      ['GET /sync/status (API)', `${api}/sync/status`, auth],
      ['GET /sync/conflicts (API)', `${api}/sync/conflicts?status=open&limit=50`, auth],
    ];
    const results = [];
    for (const [name, url, headers] of targets) {
      const rounds = [];
      for (let i = 0; i < ROUNDS; i++) rounds.push(await autocannon({ url, connections: 10, duration: SECONDS, headers }));
      const mid = rounds.map((r) => r.requests.average);
      const best = rounds[mid.indexOf(median(mid))]!;
      const bad = rounds.reduce((s, r) => s + r.errors + r.timeouts + r.non2xx, 0);
      results.push({ endpoint: name, requests_per_s: Math.round(best.requests.average), p50_ms: best.latency.p50, p99_ms: best.latency.p99, max_ms: best.latency.max, failed: bad });
      process.stderr.write(`${name}: ${Math.round(best.requests.average)} req/s\n`);
    }
    process.stdout.write(`${table(results.map((r) => ({ endpoint: r.endpoint, 'req/s': r.requests_per_s.toLocaleString('en-US'), 'p50 ms': r.p50_ms, 'p99 ms': r.p99_ms, 'max ms': r.max_ms, failed: r.failed })))}\n`);
    process.stdout.write(`wrote ${writeResults('http', { rounds: ROUNDS, seconds: SECONDS, connections: 10, results })}\n`);
    return results.every((r) => r.failed === 0) ? 0 : 1;
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`load:http failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
