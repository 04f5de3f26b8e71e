/**
 * The chaos suite (issue 12): `npm run test:chaos [-- --only a,b] [--json FILE] [--seed N]`.
 *
 * Each scenario runs a fresh consumer group of real workers against the real local stack
 * while changes stream into both databases, breaks something on purpose, waits until
 * everything has converged, and then checks what DESIGN §3 promises: every source change
 * audited exactly once, no gap in any log, both databases equal to the source row by row,
 * no dead letter it did not intend, and /health answered within 2 s throughout (except
 * while the worker was killed). It prints one line per scenario and exits 0 only when every
 * scenario holds; 1 when one does not; 2 on a usage error.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { CDC_TOPICS, ROOT, freshKeyBase, maria, pgApp, pgControl, stack } from '../support/stack.ts';
import { counterSum, freePort, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { rawProducer } from '../support/envelopes.ts';
import { commitAtEnd } from '../../src/kafka/consumer.ts';
import { converged, HealthWatch, verdict, type Verdict } from './checks.ts';
import { Workload } from './workload.ts';
import { fuzzMessages, rng } from './fuzz.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every worker this run started: none may outlive the run, or it would sync the next scenario's rows as a second deployment. */
const spawned = new Set<WorkerHandle>();
process.on('exit', () => {
  for (const w of spawned) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(2));
const say = (msg: string) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface Result extends Verdict {
  scenario: string;
  /** Dead letters the scenario meant to cause (the fuzzed messages). */
  intendedDeadLetters: number;
  recoverSeconds: number | null;
  healthMaxGapMs: number;
  seconds: number;
  ok: boolean;
  notes: string[];
}

interface Replica {
  w: WorkerHandle;
  apiUrl?: string;
  token?: string;
}

class Ctx {
  readonly replicas: Replica[] = [];
  /** Every replica's log file, the killed ones' too: a failed scenario prints their warnings. */
  readonly logs: string[] = [];
  readonly notes: string[] = [];
  readonly watch = new HealthWatch(() => this.replicas.map((r) => r.w.url));
  faultEndedAt = Date.now();
  intendedDeadLetters = 0;
  /**
   * Counts them again after the verdict: some land after the scenario's own run (a fuzzed
   * change that was applied comes back as its echo, which waits behind a later fuzzed dead
   * letter of the same key as WS_PARKED; the verdict, seconds later, counts it).
   */
  recountIntended: ((control: pg.Pool) => Promise<number>) | undefined = undefined;
  /** A scenario's own checks; each failed one is a note and fails the scenario. */
  failed: string[] = [];

  constructor(readonly group: string, readonly workload: Workload, readonly rand: () => number, readonly env: Record<string, string>) {}

  async start(extra: Record<string, string> = {}): Promise<Replica> {
    const apiPort = await freePort();
    const token = `chaos-${Math.random().toString(36).slice(2)}`;
    const w = await startWorker(this.group, { CONTROL_POLL_MS: '200', API_TOKEN: token, API_PORT: String(apiPort), ...this.env, ...extra });
    spawned.add(w);
    this.logs.push(w.logFile);
    void w.exited.then(() => spawned.delete(w));
    const r: Replica = { w, apiUrl: `http://127.0.0.1:${apiPort}`, token };
    this.watch.excuse(w.url); // silent until it first answers
    this.replicas.push(r);
    await w.ready(120_000);
    return r;
  }

  async stop(r: Replica, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (signal === 'SIGKILL') this.watch.excuse(r.w.url);
    const exit = await r.w.kill(signal);
    this.replicas.splice(this.replicas.indexOf(r), 1);
    this.watch.forget(r.w.url);
    return exit;
  }

  async api(r: Replica, p: string, body: unknown): Promise<number> {
    const res = await fetch(`${r.apiUrl}${p}`, { method: 'POST', headers: { authorization: `Bearer ${r.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return res.status;
  }

  check(ok: boolean, what: string): void {
    if (!ok) this.failed.push(what);
  }
}

/** Runs stack.sh without blocking this process: the health watch must keep ticking while a service restarts. */
function stackCmd(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(ROOT, 'deploy/local/stack.sh'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`stack.sh ${args.join(' ')} failed (${code}): ${out.slice(-2000)}`))));
  });
}

/** Connectors a broken dependency left FAILED are restarted, as an operator would; the note says so. */
async function ensureConnectors(ctx: Ctx): Promise<void> {
  const base = stack().connect.url;
  for (const name of ['app-postgres', 'app-mariadb']) {
    for (let i = 0; i < 60; i++) {
      try {
        const s = await (await fetch(`${base}/connectors/${name}/status`)).json() as { connector: { state: string }; tasks: Array<{ state: string }> };
        const states = [s.connector.state, ...s.tasks.map((t) => t.state)];
        if (states.every((x) => x === 'RUNNING') && s.tasks.length > 0) break;
        if (states.includes('FAILED')) {
          ctx.notes.push(`connector ${name} was FAILED and restarted`);
          await fetch(`${base}/connectors/${name}/restart?includeTasks=true&onlyFailed=true`, { method: 'POST' });
        }
      } catch { /* Connect not answering yet */ }
      await sleep(1000);
    }
  }
}

interface Scenario {
  name: string;
  about: string;
  keysPerDb: number;
  rate: number;
  /** Worker environment for this scenario. */
  env?: Record<string, string>;
  run(ctx: Ctx): Promise<void>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'sigkill', about: '20 SIGKILLs at random moments while at least 3,000 changes stream into both databases', keysPerDb: 400, rate: 30,
    async run(ctx) {
      for (let k = 0; k < 20; k++) {
        await sleep(1000 + ctx.rand() * 5000);
        const victim = ctx.replicas[0]!;
        say(`SIGKILL ${k + 1}/20 (${ctx.workload.committed.length} changes so far)`);
        const exit = await ctx.stop(victim, 'SIGKILL');
        ctx.check(exit.signal === 'SIGKILL', `kill ${k + 1}: the worker had already exited (${JSON.stringify(exit)})`);
        await ctx.start();
      }
      await ctx.workload.until(3000, 120_000);
      ctx.faultEndedAt = Date.now();
    },
  },
  {
    name: 'mariadb-outage', about: 'MariaDB SIGKILLed under load, down 60 s, restarted', keysPerDb: 300, rate: 20,
    async run(ctx) {
      await sleep(8000);
      ctx.workload.hold('maria');
      await sleep(500);
      say('MariaDB: SIGKILL; down for 60 s');
      await stackCmd('kill', 'mariadb');
      await sleep(60_000);
      await stackCmd('start', 'mariadb');
      ctx.faultEndedAt = Date.now();
      ctx.workload.release('maria');
      await ensureConnectors(ctx);
      await sleep(8000);
    },
  },
  {
    name: 'postgres-restart', about: 'PostgreSQL (control database, source and target) restarted under load', keysPerDb: 300, rate: 20,
    async run(ctx) {
      await sleep(8000);
      ctx.workload.hold('pg');
      await sleep(500);
      say('PostgreSQL: restart');
      await stackCmd('restart', 'postgres');
      ctx.faultEndedAt = Date.now();
      ctx.workload.release('pg');
      await ensureConnectors(ctx);
      await sleep(8000);
    },
  },
  {
    name: 'kafka-restart', about: 'the Kafka broker restarted under load', keysPerDb: 300, rate: 20,
    async run(ctx) {
      await sleep(8000);
      say('Kafka: restart');
      await stackCmd('restart', 'kafka');
      ctx.faultEndedAt = Date.now();
      await ensureConnectors(ctx);
      await sleep(10_000);
    },
  },
  ...(['SIGTERM', 'SIGKILL'] as const).map((signal): Scenario => ({
    name: `two-replicas-${signal.toLowerCase()}`, about: `scale 1 -> 2 -> 1 under load, the second replica leaving by ${signal}`, keysPerDb: 300, rate: 20,
    async run(ctx) {
      await sleep(6000);
      say('scaling to 2 replicas');
      const second = await ctx.start();
      await sleep(15_000);
      say(`scaling to 1 replica: ${signal} to the second`);
      const exit = await ctx.stop(second, signal);
      if (signal === 'SIGTERM') ctx.check(exit.code === 0, `the second replica's SIGTERM exit was ${JSON.stringify(exit)}, not 0`);
      ctx.faultEndedAt = Date.now();
      await sleep(8000);
    },
  })),
  {
    // one slot for fifteen lanes: lanes wait for it, which is when a pause used to cost a batch
    name: 'pause-resume', about: 'POST /sync/pause and /sync/resume 10 times under load', keysPerDb: 300, rate: 60, env: { QUEUE_CONCURRENCY: '1', BATCH_SIZE: '50' },
    async run(ctx) {
      await sleep(4000);
      const r = ctx.replicas[0]!;
      for (let i = 0; i < 10; i++) {
        ctx.check((await ctx.api(r, '/sync/pause', { by: 'chaos' })) === 200, 'pause answered 200');
        await sleep(100 + ctx.rand() * 800);
        ctx.check((await ctx.api(r, '/sync/resume', { by: 'chaos' })) === 200, 'resume answered 200');
        await sleep(100 + ctx.rand() * 800);
      }
      ctx.faultEndedAt = Date.now();
      await sleep(4000);
    },
  },
  {
    name: 'fuzz', about: '10,000 fuzzed messages onto the real connector topics, while changes stream', keysPerDb: 150, rate: 10,
    async run(ctx) {
      await sleep(3000);
      const control = pgControl();
      try {
        const messages = fuzzMessages(10_000, freshKeyBase(), Math.floor(ctx.rand() * 2 ** 31));
        const producer = await rawProducer();
        const sent: Array<{ kind: string; topic: string; offset: number; tombstone: boolean }> = [];
        try {
          const chunks = 200;
          for (let i = 0; i < messages.length; i += chunks) {
            const part = messages.slice(i, i + chunks);
            const offsets = await Promise.all(part.map((m) => producer.send(m.topic, m.key, m.value)));
            part.forEach((m, j) => sent.push({ kind: m.kind, topic: m.topic, offset: offsets[j]!, tombstone: m.value === null || m.value.length === 0 }));
          }
        } finally {
          await producer.close();
        }
        say(`fuzz: ${sent.length} messages produced; waiting for each to be applied or dead-lettered`);
        const tombstones = sent.filter((s) => s.tombstone).length;
        const real = sent.filter((s) => !s.tombstone);
        // each message is applied (an audit row names its offset) or dead-lettered (so does the letter)
        const fate = async (db: pg.Pool = control) => {
          const dead = await db.query(
            `SELECT topic, "offset", reason, record_key FROM sync_dead_letters WHERE consumer_group = $1 AND topic = ANY($2) ORDER BY id`, [ctx.group, ['pg.public.customers', 'maria.app.customers']]);
          const audited = await db.query(
            `SELECT event_id FROM audit_log WHERE log_id LIKE $1 AND kind = 'change' AND event_id LIKE ANY($2)`, [`${ctx.group}:%`, ['pg.public.customers/%', 'maria.app.customers/%']]);
          const rows = dead.rows as Array<{ topic: string; offset: string; reason: string; record_key: string | null }>;
          const deadAt = new Map(rows.map((r) => [`${r.topic}/${r.offset}`, r.reason]));
          const auditedAt = new Set((audited.rows as Array<{ event_id: string }>).map((r) => r.event_id.replace(/\/\d+\//, '/')));
          // a fuzzed message's dead letter parks its key: what arrives later for that key (the
          // echo of a write made for another fuzzed message whose flipped bytes gave it the same
          // key, say) waits behind it as WS_PARKED. That follows from the fuzz: intended too.
          const fuzzed = new Set(real.map((s) => `${s.topic}/${s.offset}`));
          const parkedBy = new Set<string>();
          let behind = 0;
          for (const r of rows) {
            const at = `${r.topic}/${r.offset}`;
            if (fuzzed.has(at)) { if (r.record_key) parkedBy.add(r.record_key); continue; }
            if (r.reason === 'WS_PARKED' && r.record_key && parkedBy.has(r.record_key)) behind++;
          }
          return { deadAt, auditedAt, behind };
        };
        let last = await fate();
        const deadline = Date.now() + 180_000;
        let missing = real;
        let duplicates = 0;
        let stableSince = Date.now();
        while (Date.now() < deadline) {
          last = await fate();
          const now = real.filter((s) => !last.deadAt.has(`${s.topic}/${s.offset}`) && !last.auditedAt.has(`${s.topic}/${s.offset}`));
          if (now.length !== missing.length) stableSince = Date.now();
          missing = now;
          duplicates = counterSum(await ctx.replicas[0]!.w.metrics(), 'sync_duplicates_total', 'kind="position"');
          if (missing.length === 0) break;
          // what is left is accounted for as duplicates by position, and nothing moves any more
          if (missing.length <= duplicates && Date.now() - stableSince > 5000) break;
          await sleep(1000);
        }
        const metrics = await ctx.replicas[0]!.w.metrics();
        const counted = counterSum(metrics, 'sync_tombstones_total');
        const reasons = new Map<string, number>();
        for (const s of real) {
          const r = last.deadAt.get(`${s.topic}/${s.offset}`) ?? (last.auditedAt.has(`${s.topic}/${s.offset}`) ? 'applied' : 'unaccounted');
          reasons.set(r, (reasons.get(r) ?? 0) + 1);
        }
        const intended = (f: typeof last) => real.filter((s) => f.deadAt.has(`${s.topic}/${s.offset}`)).length + f.behind;
        ctx.intendedDeadLetters = intended(last);
        ctx.recountIntended = async (db) => intended(await fate(db));
        ctx.notes.push(`fuzz fates: ${[...reasons].map(([k, v]) => `${k} ${v}`).join(', ')}; tombstones ${tombstones} produced, ${counted} counted; ${duplicates} duplicates by position; ${last.behind} later changes parked behind fuzzed dead letters`);
        // a fuzzed change that decodes into a key another one already moved past is a duplicate by position: counted, not dropped
        ctx.check(missing.length <= duplicates, `${missing.length} fuzzed messages neither applied nor dead-lettered (${duplicates} counted as duplicates), e.g. ${missing.slice(0, 3).map((m) => `${m.kind} at ${m.topic}/${m.offset}`).join('; ')}`);
        ctx.check(counted >= tombstones, `${tombstones} tombstones produced, ${counted} counted`);
        ctx.check(ctx.replicas[0]!.w.proc.exitCode === null && ctx.replicas[0]!.w.proc.signalCode === null, 'the worker is still running');
        // and a normal change afterwards syncs in its usual time
        const app = pgApp();
        const my = maria();
        try {
          const id = freshKeyBase();
          const t0 = Date.now();
          await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'after the fuzz', 1, '{}', now())`, [id]);
          let ms = -1;
          while (Date.now() - t0 < 30_000) {
            const [rows] = await my.query('SELECT 1 FROM customers WHERE id = ?', [id]);
            if ((rows as unknown[]).length === 1) { ms = Date.now() - t0; break; }
            await sleep(20);
          }
          ctx.notes.push(`a normal change afterwards reached MariaDB in ${ms} ms`);
          ctx.check(ms >= 0 && ms < 5000, `a normal change after the fuzz took ${ms} ms to reach MariaDB (over 5 s, or never)`);
        } finally {
          await Promise.all([app.end(), my.end()]);
        }
      } finally {
        await control.end();
      }
      ctx.faultEndedAt = Date.now();
    },
  },
];

async function runScenario(s: Scenario, seed: number, pools: { app: pg.Pool; my: mysql.Pool; control: pg.Pool }): Promise<Result> {
  const started = Date.now();
  const group = `chaos-${s.name}-${Date.now().toString(36)}`;
  const since = new Date();
  say(`${s.name}: ${s.about} (group ${group})`);
  await commitAtEnd(stack().kafka.bootstrap, group, CDC_TOPICS); // this group's changes only
  const workload = new Workload(pools.app, pools.my, freshKeyBase(), s.keysPerDb, s.rate);
  const ctx = new Ctx(group, workload, rng(seed), s.env ?? {});
  let recoverSeconds: number | null = null;
  let v: Verdict = { changes: 0, lost: 0, duplicated: 0, diverged: 0, seqGaps: 0, deadLetters: 0, phantom: 0, divergedExamples: [] };
  try {
    await ctx.start();
    ctx.watch.start();
    workload.start();
    await s.run(ctx);
    await workload.stop();
    say(`${s.name}: ${workload.committed.length} changes made (${workload.settled} settled after a failure); waiting for convergence`);
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      if (await converged(pools.control, pools.app, pools.my, group, workload).catch(() => false)) {
        recoverSeconds = Math.round((Date.now() - ctx.faultEndedAt) / 100) / 10;
        break;
      }
      await sleep(500);
    }
    if (recoverSeconds === null) ctx.failed.push('did not converge within 240 s');
    await sleep(1500); // anything late (a duplicate audited twice) has time to show
    v = await verdict(pools.control, pools.app, pools.my, group, workload, since);
    if (ctx.recountIntended) {
      const n = await ctx.recountIntended(pools.control);
      if (n !== ctx.intendedDeadLetters) ctx.notes.push(`${n - ctx.intendedDeadLetters} more intended dead letters by the verdict (parked behind fuzzed ones of their key)`);
      ctx.intendedDeadLetters = n;
    }
    for (const e of v.divergedExamples) ctx.failed.push(`diverged: ${e}`);
  } catch (err) {
    ctx.failed.push(`scenario failed: ${(err as Error).message}`);
  } finally {
    await workload.stop();
    ctx.watch.stop();
    for (const r of [...ctx.replicas]) {
      const exit = await ctx.stop(r, 'SIGTERM');
      if (exit.code !== 0) ctx.notes.push(`a replica's final SIGTERM exit was ${JSON.stringify(exit)} (log ${r.w.logFile})`);
    }
  }
  const unintended = v.deadLetters - ctx.intendedDeadLetters;
  const ok = ctx.failed.length === 0 && v.lost === 0 && v.duplicated === 0 && v.diverged === 0 && v.seqGaps === 0 && v.phantom === 0 && unintended === 0 && ctx.watch.maxGapMs <= 2000;
  if (!ok) printWarnings(s.name, ctx.logs);
  return {
    scenario: s.name, ...v, intendedDeadLetters: ctx.intendedDeadLetters, recoverSeconds, healthMaxGapMs: ctx.watch.maxGapMs,
    seconds: Math.round((Date.now() - started) / 1000), ok, notes: [...ctx.failed.map((f) => `FAILED: ${f}`), ...ctx.notes],
  };
}

/**
 * A failed scenario's evidence, for a CI log that outlives the machine: the workers'
 * warnings and errors (pino levels 40 and up), the last 60 of them across all its
 * replicas, and where the full logs are.
 */
function printWarnings(scenario: string, logs: string[]): void {
  const lines: string[] = [];
  for (const file of logs) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const level = /"level":(\d+)/.exec(line)?.[1];
      if (level !== undefined && Number(level) >= 40) lines.push(`${path.basename(file)}: ${line.slice(0, 600)}`);
    }
  }
  say(`${scenario}: ${lines.length} warnings and errors in ${logs.length} worker logs (${path.dirname(logs[0] ?? '.')}); the last ${Math.min(60, lines.length)}:`);
  for (const l of lines.slice(-60)) process.stderr.write(`  ${l}\n`);
}

function table(results: Result[]): string {
  const head = ['scenario', 'changes', 'lost', 'duplicated', 'diverged', 'seq gaps', 'dead letters', 'recover s', 'health gap ms', 'took s', 'result'];
  const rows = results.map((r) => [
    r.scenario, String(r.changes), String(r.lost), String(r.duplicated), String(r.diverged), String(r.seqGaps),
    r.intendedDeadLetters > 0 ? `${r.deadLetters - r.intendedDeadLetters} (+${r.intendedDeadLetters} fuzzed)` : String(r.deadLetters),
    r.recoverSeconds === null ? '-' : String(r.recoverSeconds), String(r.healthMaxGapMs), String(r.seconds), r.ok ? 'ok' : 'FAILED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const USAGE = `usage: npm run test:chaos [-- --only NAME[,NAME]] [--json FILE] [--seed N] [--list]
Scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
Exit: 0 every scenario held, 1 one did not, 2 usage error.
`;

async function main(argv: string[]): Promise<number> {
  let only: string[] | undefined;
  let jsonFile: string | undefined;
  let seed = Date.now() % 1_000_000;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') { process.stdout.write(USAGE); return 0; }
    if (a === '--list') { for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(22)} ${s.about}\n`); return 0; }
    if (a === '--only' && argv[i + 1]) only = argv[++i]!.split(',');
    else if (a === '--json' && argv[i + 1]) jsonFile = argv[++i];
    else if (a === '--seed' && /^\d+$/.test(argv[i + 1] ?? '')) seed = Number(argv[++i]);
    else { process.stderr.write(`unknown or incomplete option ${a}\n${USAGE}`); return 2; }
  }
  const chosen = only ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS;
  if (only && chosen.length !== only.length) { process.stderr.write(`unknown scenario in ${only.join(',')}\n${USAGE}`); return 2; }
  await stackCmd('up');
  say(`seed ${seed}`);
  const pools = { app: pgApp(), my: maria(), control: pgControl() };
  // the scenarios restart PostgreSQL under these pools: their idle clients fail, which is expected
  for (const p of [pools.app, pools.control]) p.on('error', () => undefined);
  const results: Result[] = [];
  try {
    for (const [i, s] of chosen.entries()) {
      const r = await runScenario(s, seed + i, pools);
      results.push(r);
      say(`${s.name}: ${r.ok ? 'ok' : 'FAILED'}${r.notes.length ? ` (${r.notes.join('; ')})` : ''}`);
    }
  } finally {
    await Promise.all([pools.app.end(), pools.my.end(), pools.control.end()]);
  }
  process.stdout.write(`${table(results)}\n`);
  for (const r of results) for (const n of r.notes) process.stdout.write(`  ${r.scenario}: ${n}\n`);
  if (jsonFile) writeFileSync(jsonFile, `${JSON.stringify({ seed, scenarios: results }, null, 2)}\n`);
  return results.every((r) => r.ok) ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`chaos suite failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(2);
});
