import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../config/env.ts';
import { errorMessage } from '../errors.ts';
import { redactText, redactUrl } from '../log.ts';
import { healthReport } from './health.ts';
import type { Loaded } from './loaded.ts';

const LOGS_USAGE = `usage: worker-sync collect logs [--lines N] [--out FILE]   (npm run collect:logs)

The recent lines of the worker logs kept on this machine or pod (LOG_FILE, rotated at 16 MiB;
default $TMPDIR/worker-sync/<WORKER_ID>.log), every file of that folder, the newest last, with
secrets redacted: every configured URL's password, the API token, SASL passwords, bearer tokens
and private keys. --lines: per file (default 2000). Exit 0, or 1 when there is no log file.
`;

const BUNDLE_USAGE = `usage: worker-sync support bundle [--out DIR] [--surface URL] [--api URL]   (npm run support:bundle)

Writes worker-sync-support-<host>-<time>.tar.gz into DIR (default the system's temporary folder)
and prints its path. It holds: the version; the configuration, secrets redacted; /ready,
/metrics (from --surface, default http://127.0.0.1:HTTP_PORT) and /sync/status (from --api,
with the configured token); health:full --json; the recent logs; the local stack's status.
No password, token or key is written: every file is checked before it is packed.
Exit 0 written, 1 it could not be written (or a secret survived redaction).
`;

/** Every secret value the configuration holds: redacted wherever it appears. */
function secretsOf(cfg: Loaded): string[] {
  const out: string[] = [];
  const urlSecret = (u: string | undefined) => {
    if (!u) return;
    try {
      const p = new URL(u).password;
      if (p) out.push(decodeURIComponent(p), p);
    } catch { /* not a URL */ }
  };
  urlSecret(cfg.controlUrl);
  urlSecret(cfg.redisUrl);
  for (const n of cfg.topology.nodes.values()) urlSecret(n.url);
  if (cfg.env.apiToken) out.push(cfg.env.apiToken);
  if (cfg.env.kafkaSecurity['sasl.password']) out.push(cfg.env.kafkaSecurity['sasl.password']);
  return out;
}

function logFiles(cfg: Loaded): string[] {
  const file = cfg.env.logFile;
  if (!file) return [];
  const dir = path.dirname(file);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /\.log(\.1)?$/.test(f)).map((f) => path.join(dir, f)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
}

function recentLogs(cfg: Loaded, lines: number): string {
  const secrets = secretsOf(cfg);
  return logFiles(cfg).map((f) => {
    const all = readFileSync(f, 'utf8').split('\n').filter(Boolean);
    return `==> ${f} (last ${Math.min(lines, all.length)} of ${all.length} lines)\n${redactText(all.slice(-lines).join('\n'), secrets)}\n`;
  }).join('');
}

export async function runCollect(args: string[], cfg: () => Loaded): Promise<number> {
  if (args[0] !== 'logs' || args.includes('--help')) {
    process.stdout.write(LOGS_USAGE);
    return args.includes('--help') ? 0 : 2;
  }
  const flag = (f: string) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : undefined; };
  const lines = Number(flag('--lines') ?? 2000);
  if (!Number.isInteger(lines) || lines < 1) {
    process.stderr.write(`--lines: must be a positive integer\n${LOGS_USAGE}`);
    return 2;
  }
  const loaded = cfg();
  const text = recentLogs(loaded, lines);
  if (text === '') {
    process.stderr.write(`no worker log file under ${loaded.env.logFile ? path.dirname(loaded.env.logFile) : '(LOG_FILE=off)'}\n`);
    return 1;
  }
  const out = flag('--out');
  if (out) {
    writeFileSync(out, text);
    process.stdout.write(`${out}\n`);
  } else process.stdout.write(text);
  return 0;
}

async function fetchText(url: string, headers: Record<string, string> = {}): Promise<string> {
  if (url.startsWith('https://127.0.0.1')) return httpsLoopback(url, headers);
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    return `HTTP ${res.status}\n${await res.text()}`;
  } catch (err) {
    return `not reachable: ${errorMessage(err)}`;
  }
}

/**
 * The API over TLS, asked on the loopback inside the pod: its certificate names the
 * Service, not 127.0.0.1, so it is not verified here. Nothing leaves the pod.
 */
function httpsLoopback(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const req = https.get(url, { headers, rejectUnauthorized: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve(`HTTP ${res.statusCode}\n${body}`));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve(`not reachable: ${errorMessage(err)}`));
  });
}

export async function runSupport(args: string[], cfg: () => Loaded): Promise<number> {
  if (args[0] !== 'bundle' || args.includes('--help')) {
    process.stdout.write(BUNDLE_USAGE);
    return args.includes('--help') ? 0 : 2;
  }
  const flag = (f: string) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : undefined; };
  const loaded = cfg();
  const { env, topology } = loaded;
  const secrets = secretsOf(loaded);
  const surface = flag('--surface') ?? `http://127.0.0.1:${env.httpPort}`;
  const api = flag('--api') ?? `${env.apiTls ? 'https' : 'http'}://127.0.0.1:${env.apiPort}`;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const name = `worker-sync-support-${os.hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${stamp}`;
  const work = mkdtempSync(path.join(os.tmpdir(), 'ws-bundle-'));
  const dir = path.join(work, name);
  mkdirSync(dir);
  const put = (file: string, text: string) => writeFileSync(path.join(dir, file), redactText(text, secrets));
  const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  let commit = 'unknown';
  try { commit = execFileSync('git', ['-C', PROJECT_ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { /* not a checkout */ }
  put('version.txt', `worker-sync ${pkg.version}\ncommit ${commit}\nnode ${process.version}\n${os.type()} ${os.release()} ${os.arch()}, ${os.availableParallelism()} CPUs\n`);
  const envShown = { ...env, apiToken: env.apiToken ? '[set]' : undefined, controlUrl: env.controlUrl ? redactUrl(env.controlUrl) : undefined, redisUrl: env.redisUrl ? redactUrl(env.redisUrl) : undefined,
    kafkaSecurity: Object.fromEntries(Object.entries(env.kafkaSecurity).map(([k, v]) => [k, k === 'sasl.password' ? '[set]' : v])) };
  const topologyShown = { source: topology.source, kafka: topology.kafka, nodes: [...topology.nodes.values()].map((n) => ({ ...n, url: n.url ? redactUrl(n.url) : n.url })),
    entities: [...topology.entities.values()].map((e) => ({ name: e.name, key: e.key, policy: e.policy, columns: Object.fromEntries([...e.columns].map(([c, t]) => [c, t.kind])), nodes: [...e.nodes.values()].map((m) => ({ node: m.node, table: m.table, topic: m.topic })) })) };
  put('config.json', `${JSON.stringify({ env: envShown, topology: topologyShown, brokers: loaded.brokers, controlUrl: redactUrl(loaded.controlUrl) }, null, 2)}\n`);
  put('ready.txt', await fetchText(`${surface}/ready`));
  put('metrics.txt', await fetchText(`${surface}/metrics`));
  put('sync-status.txt', env.apiToken ? await fetchText(`${api}/sync/status`, { authorization: `Bearer ${env.apiToken}` }) : 'the API is off (no API_TOKEN)');
  put('health-full.json', `${JSON.stringify(await healthReport('full', loaded).catch((err: unknown) => ({ error: errorMessage(err) })), null, 2)}\n`);
  put('logs.txt', recentLogs(loaded, 5000) || 'no worker log file on this machine\n');
  try {
    put('stack-status.json', execFileSync('bash', [path.join(PROJECT_ROOT, 'deploy/local/stack.sh'), 'status', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch (err) {
    const out = (err as { stdout?: string }).stdout;
    put('stack-status.json', out && out.trim() ? out : 'no local stack here\n');
  }
  // nothing leaves with a secret in it: check every file, as written
  for (const f of readdirSync(dir)) {
    const text = readFileSync(path.join(dir, f), 'utf8');
    const leaked = secrets.filter((s) => s.length >= 4 && text.includes(s));
    if (leaked.length > 0 || /PRIVATE KEY-----/.test(text)) {
      process.stderr.write(`support bundle: ${f} still holds a secret after redaction; nothing written\n`);
      rmSync(work, { recursive: true, force: true });
      return 1;
    }
  }
  const outDir = flag('--out') ?? os.tmpdir();
  mkdirSync(outDir, { recursive: true });
  const tarball = path.join(path.resolve(outDir), `${name}.tar.gz`);
  execFileSync('tar', ['-czf', tarball, '-C', work, name]);
  rmSync(work, { recursive: true, force: true });
  process.stdout.write(`${tarball}\n`);
  return 0;
}
