/**
 * The harness helpers the benchmarks (bench/) and the load tools (load/) share: the repo
 * root, the local stack's URLs, result files, tables, medians, free ports and progress
 * lines. A folder of its own, so that bench depends on load and never the reverse.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What every benchmark takes from `npm run bench` (bench/run.ts). */
export interface BenchOptions {
  /** --json FILE: the benchmark's headline figures, for scripts and A/B runs */
  json?: string;
}

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface StackUrls {
  postgres: { url: string; controlUrl: string };
  mariadb: { url: string };
}

/** The local stack's URLs (`stack.sh status --json`); benchmarks that need databases say so when it is down. */
export function stackUrls(): StackUrls {
  const out = execFileSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), 'status', '--json'], { encoding: 'utf8' });
  const s = JSON.parse(out) as StackUrls & { postgres: { up: boolean }; mariadb: { up: boolean } };
  if (!s.postgres.up || !s.mariadb.up) throw new Error('the local stack is not up: run `npm run stack:up` first');
  return s;
}

/** Writes a benchmark's results as JSON under bench/results/ and returns the path. */
export function writeResults(name: string, data: unknown): string {
  const dir = path.join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ name, at: new Date().toISOString(), node: process.version, ...data as object }, null, 2)}\n`);
  return file;
}

export function table(rows: Array<Record<string, string | number>>): string {
  const cols = Object.keys(rows[0] ?? {});
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(width[i]!)).join('  ');
  return [line(cols), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join('\n');
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

/** A TCP port free on 127.0.0.1 right now (for a worker a benchmark starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

let lastLine = 0;

/**
 * A progress line on stderr: redrawn in place on a terminal; elsewhere (a log file, CI) one
 * plain line every 10 s and the final one, instead of thousands of carriage returns.
 */
export function progress(line: string, final = false): void {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}${final ? '\n' : ''}`);
    return;
  }
  const now = Date.now();
  if (!final && now - lastLine < 10_000) return;
  lastLine = now;
  process.stderr.write(`${line.trimEnd()}\n`);
}
