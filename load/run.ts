import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { deleteTopic, ensureTopic } from '../src/kafka/producer.ts';
import { commitAtEnd } from '../src/kafka/consumer.ts';
import { ENTITIES, type Entity } from './events.ts';
import { Generator, loadProducer, type Sample } from './generator.ts';
import { freePort, progress } from '../harness/common.ts';
import { summarize, type CpuProfile } from './profile-summary.ts';
import { cpuPerEvent, cpuSnapshot, type CpuGroup } from './proc-cpu.ts';
import { statementsBetween, statementsSnapshot, type StatementCost } from './pg-statements.ts';
import { parseGcTrace, summarizeGc, type GcSummary } from './gc-trace.ts';

// the control database as the worker's role, which the local stack lets read every database's statements
let controlPool: pg.Pool | undefined;
const control = (): pg.Pool => (controlPool ??= new pg.Pool({ connectionString: process.env.LOAD_CONTROL_URL ?? 'postgres://sync_user:sync_pass@127.0.0.1:55432/sync_db', max: 1 }));

/**
 * `npm run load -- --rate 10000 --duration 60 [--json out.json]` (issue 6): offers a
 * steady rate (one burst per 100 ms, load/generator.ts) of Debezium-format change events from the synthetic source node `load`
 * (load/topology.yaml) to a worker it starts on the local stack, and measures what the
 * worker sustains:
 * - the mix is 70 % updates, 20 % inserts, 10 % deletes (each delete followed by its
 *   tombstone, as Debezium does), over three entities, on a skewed key distribution (a
 *   few hot keys), with rows of about 1 KB, in both converter forms (products with
 *   schemas, accounts without, shipments' values alternating under a fixed key form);
 * - achieved events/s are events the worker committed (`sync_events_total`), over the run;
 * - latency is DESIGN §5's, from the envelope's ts_ms (set when the event is produced) to
 *   the worker's commit: the quantiles of `sync_latency_ms` over the run, and,
 *   independently, sampled updates polled for in the PostgreSQL target every 20 ms;
 * - "sustained" means every second of the run produced, and the backlog (produced minus
 *   committed) not growing over the last 30 s.
 * Progress goes to stderr; the verdict and the figures to stdout; --json writes
 * rate_offered, rate_achieved, p50_ms, p95_ms, p99_ms, max_ms, errors and lag_end.
 * Exit codes: 0 the SLO is met, 1 it is not, 2 usage or set-up error.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SLO = { rate: 10_000, p95: 100 };

interface Options { rate: number | 'max'; duration: number; json?: string; keys: number; partitions: number; brokers: string; pgUrl: string; workerUrl?: string; profileDir?: string; flamegraphDir?: string; pgStatements: boolean; gc: boolean; allocProfile?: string }

const USAGE = `usage: npm run load -- --rate N|max --duration SECONDS [--json FILE] [--keys N] [--partitions N] [--worker URL] [--profile DIR] [--flamegraph DIR] [--pg-statements] [--gc] [--alloc-profile FILE]

Offers N change events/s for SECONDS from the synthetic source node "load" to a worker it
starts (or the one at --worker URL) on the local stack, and prints what was sustained:
events/s committed, p50/p95/p99/max latency, errors and the verdict against the SLO
(${SLO.rate.toLocaleString('en-US')} events/s, p95 < ${SLO.p95} ms). --rate max searches for the highest sustained rate.
--profile DIR writes the worker's V8 CPU profile (.cpuprofile) there; --flamegraph DIR does
too, then has 0x draw it as DIR/flamegraph.html and prints where the CPU time went
(\`npm run profile\`).
--pg-statements prints PostgreSQL's statements by time in the measured window, with the
time per committed event (pg_stat_statements, which the local stack preloads).
--gc starts the worker with V8's --trace-gc and prints its collections in the measured
window: how many, the JavaScript heap it allocated and the pauses, per committed event.
--alloc-profile FILE runs the worker under V8's sampling heap profiler, collected objects
counted too (load/alloc-profile.mjs), and writes what allocated to FILE when it exits.
Later options win, so \`npm run profile -- --rate 1000\` overrides the script's rate.
Exit codes: 0 SLO met, 1 not met, 2 usage or set-up error.
`;

function parseArgs(argv: string[]): Options | string {
  const get = (name: string) => {
    const i = argv.lastIndexOf(name); // the last one wins: `npm run profile -- --rate N` overrides the script's
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes('--help') || argv.includes('-h')) return '';
  const rateText = get('--rate') ?? String(SLO.rate);
  const rate = rateText === 'max' ? 'max' : Number(rateText);
  const duration = Number(get('--duration') ?? 60);
  if (rate !== 'max' && (!Number.isFinite(rate) || rate <= 0)) return `--rate must be a positive number or max, got ${rateText}`;
  if (!Number.isFinite(duration) || duration < 5) return `--duration must be at least 5 seconds, got ${get('--duration')}`;
  return {
    rate, duration, json: get('--json'), keys: Number(get('--keys') ?? 20_000), partitions: Number(get('--partitions') ?? 6),
    brokers: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092', pgUrl: process.env.LOAD_PG_URL ?? 'postgres://app:app@127.0.0.1:55432/loadtest',
    workerUrl: get('--worker'), profileDir: get('--profile'), flamegraphDir: get('--flamegraph'), pgStatements: argv.includes('--pg-statements'), gc: argv.includes('--gc'), allocProfile: get('--alloc-profile'),
  };
}

// ------------------------------------------------------------------ the worker and its metrics

async function startWorker(group: string, o: Pick<Options, 'profileDir' | 'flamegraphDir' | 'gc' | 'allocProfile'>): Promise<{ url: string; proc: ChildProcess; logFile: string; startedAt: number }> {
  const port = await freePort();
  const dir = path.join(ROOT, '.local/load');
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, `${group}.log`);
  const fd = openSync(logFile, 'a');
  // WORKER_SYNC_BIN: another build's bin/worker-sync.js, for an A/B against this one under the same load
  const worker = [process.env.WORKER_SYNC_BIN ? path.resolve(process.env.WORKER_SYNC_BIN) : path.join(ROOT, 'bin/worker-sync.js'), 'run'];
  // V8's own sampler, in the worker's thread; written when the worker exits after SIGTERM
  const profDir = o.flamegraphDir ?? o.profileDir;
  const prof = profDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`] : [];
  // --gc: V8 writes a line a collection to the worker's log (not allowed in NODE_OPTIONS), timed from its start
  const gc = o.gc ? ['--trace-gc'] : [];
  const alloc = o.allocProfile ? [path.join(ROOT, 'load/alloc-profile.mjs'), path.resolve(o.allocProfile)] : [];
  const startedAt = performance.now();
  const proc = spawn(process.execPath, [...prof, ...gc, ...alloc, ...worker], {
    stdio: ['ignore', fd, fd],
    // WORKER_NODE_OPTIONS: Node flags for the worker alone (the generator keeps its own)
    env: { ...process.env, NODE_OPTIONS: process.env.WORKER_NODE_OPTIONS ?? process.env.NODE_OPTIONS ?? '', WORKER_SYNC_CONFIG: path.join(ROOT, 'load/topology.yaml'), KAFKA_GROUP_ID: group, HTTP_HOST: '127.0.0.1', HTTP_PORT: String(port), LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
  });
  closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the worker exited with ${proc.exitCode}; see ${logFile}`);
    const ok = await fetch(`${url}/ready`).then((r) => r.status === 200, () => false);
    if (ok) return { url, proc, logFile, startedAt };
    if (Date.now() > deadline) throw new Error(`the worker did not get ready in 120 s; see ${logFile}`);
    await sleep(250);
  }
}

interface Scrape { committed: number; errors: number; buckets: Array<[number, number]>; count: number; cpuSeconds: number }

async function scrape(url: string): Promise<Scrape> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const s: Scrape = { committed: 0, errors: 0, buckets: [], count: 0, cpuSeconds: 0 };
  for (const line of text.split('\n')) {
    if (line.startsWith('sync_events_total{') && line.includes('source_node="load"')) s.committed += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if ((line.startsWith('sync_errors_total{') || line.startsWith('sync_dead_letters_total{')) && !line.startsWith('#')) s.errors += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith('sync_latency_ms_bucket{') && line.includes('source_node="load"')) {
      const le = /le="([^"]+)"/.exec(line)![1]!;
      s.buckets.push([le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1))]);
    } else if (line.startsWith('sync_latency_ms_count{') && line.includes('source_node="load"')) s.count = Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith('process_cpu_seconds_total ')) s.cpuSeconds = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return s;
}

/** A quantile of the histogram between two scrapes, interpolated within its bucket. */
function quantile(a: Scrape, b: Scrape, q: number): number | null {
  const base = new Map(a.buckets);
  const cum = b.buckets.map(([le, n]) => [le, n - (base.get(le) ?? 0)] as [number, number]).sort((x, y) => x[0] - y[0]);
  const total = cum.at(-1)?.[1] ?? 0;
  if (total === 0) return null;
  const target = q * total;
  let prevLe = 0;
  let prevN = 0;
  for (const [le, n] of cum) {
    if (n >= target) {
      if (le === Infinity) return Infinity; // beyond the last bucket: printed as "> <bound>", null in JSON
      return prevLe + ((target - prevN) / Math.max(1, n - prevN)) * (le - prevLe);
    }
    prevLe = le;
    prevN = n;
  }
  return prevLe;
}

function maxBucket(a: Scrape, b: Scrape): number | null {
  const base = new Map(a.buckets);
  const cum = b.buckets.map(([le, n]) => [le, n - (base.get(le) ?? 0)] as [number, number]).sort((x, y) => x[0] - y[0]);
  let prev = 0;
  let max: number | null = null;
  for (const [le, n] of cum) {
    if (n > prev) max = le;
    prev = n;
  }
  return max;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], q: number) => (xs.length === 0 ? null : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!);

// ------------------------------------------------------------------ one run

interface Result {
  rate_offered: number; rate_achieved: number; p50_ms: number | null; p95_ms: number | null; p99_ms: number | null; max_ms: number | null;
  errors: number; lag_end: number;
  /** Messages the generator produced that the broker does not hold (counted in errors). */
  undelivered: number;
  sustained: boolean; slo_met: boolean; duration_s: number; produced: number; committed: number;
  sampled: { n: number; lost: number; p50_ms: number | null; p95_ms: number | null; max_ms: number | null };
  /** The backlog 30 s before the end (after the first third of a shorter run), and when that was. */
  backlog_30s_ago: number | null;
  backlog_ref_s: number | null;
  /** The worker process's CPU time (user + system) per event it committed during the run. */
  worker_cpu_us_per_event: number | null;
  /** Each process group's CPU time (/proc) per event the worker committed during the run (load/proc-cpu.ts). */
  cpu_us_per_event: Record<CpuGroup, number | null>;
  /** --pg-statements: PostgreSQL's statements by time in the window, or why they could not be read. */
  pg_statements?: StatementCost[] | string;
  /** --gc: the worker's collections in the window (load/gc-trace.ts), or why they could not be read. */
  gc?: GcSummary | string;
  /** Events/s the worker committed while draining the backlog after the generator stopped (null: under 1 s of backlog). */
  catch_up_per_s: number | null;
}

/** The worker's log and when it was started (this process's clock), for --gc. */
interface GcSource { logFile: string; startedAt: number }

async function runAt(rate: number, o: Options, worker: string, gen: Generator, db: pg.Pool, workerPid: number | undefined, gcSource?: GcSource): Promise<Result> {
  const start = await scrape(worker);
  const cpuStart = cpuSnapshot(ROOT, workerPid);
  const stmtStart = o.pgStatements ? await statementsSnapshot(control()) : undefined;
  const startCommitted = start.committed;
  const producedAtStart = gen.produced;
  gen.samples.length = 0;
  const observed: number[] = [];
  let lost = 0;
  let sampling = true;
  // the independent check: poll the PostgreSQL target for sampled updates, one query for
  // every entity a poll (each query and each wake-up costs this process CPU the worker needs)
  const sampler = (async () => {
    while (sampling) {
      const now = Date.now();
      const pending: Sample[] = [];
      for (const s of gen.samples.splice(0, gen.samples.length)) {
        if (now - s.sentAt > 30_000) lost++;
        else pending.push(s);
      }
      if (pending.length > 0) {
        const { rows } = await db.query<{ entity: Entity; id: string; qty: number }>(
          ENTITIES.map((e, i) => `SELECT '${e}' AS entity, id, qty FROM loadtest.${e} WHERE id = ANY($${i + 1}::bigint[])`).join(' UNION ALL '),
          ENTITIES.map((e) => pending.filter((s) => s.entity === e).map((s) => s.id)),
        );
        const at = new Map(rows.map((r) => [`${r.entity}:${r.id}`, r.qty]));
        const seenAt = Date.now();
        for (const s of pending) {
          if ((at.get(`${s.entity}:${s.id}`) ?? -1) >= s.version) observed.push(seenAt - s.sentAt);
          else gen.samples.push(s); // not there yet (or deleted since: it ages out as lost)
        }
      }
      await sleep(20);
    }
  })();

  const backlog: Array<[number, number]> = [];
  const t0 = performance.now();
  const sent = await gen.pace(rate, o.duration, async (elapsed, sentSoFar) => {
    const s = await scrape(worker);
    const lagNow = gen.produced - producedAtStart - (s.committed - startCommitted);
    backlog.push([elapsed, lagNow]);
    progress(`[${'#'.repeat(Math.round((elapsed / o.duration) * 30)).padEnd(30)}] ${Math.round(elapsed)}/${o.duration} s  offered ${Math.round(sentSoFar / elapsed)}/s  committed ${Math.round((s.committed - startCommitted) / elapsed)}/s  backlog ${lagNow}   `);
  });
  const t1 = performance.now();
  const elapsed = (t1 - t0) / 1000;
  const end = await scrape(worker);
  const cpuEnd = cpuSnapshot(ROOT, workerPid);
  const stmtEnd = o.pgStatements ? await statementsSnapshot(control()) : undefined;
  const committed = end.committed - startCommitted;
  const producedRun = gen.produced - producedAtStart;
  const lagEnd = producedRun - committed;
  if (process.stderr.isTTY) process.stderr.write('\n');
  // drain, so the next run starts clean and late errors are counted
  const drainStart = Date.now();
  let drained = 0;
  while (Date.now() - drainStart < 60_000 && (drained = (await scrape(worker)).committed - startCommitted) < producedRun) {
    progress(`draining: ${drained} of ${producedRun} committed   `);
    await sleep(250);
  }
  const drainS = (Date.now() - drainStart) / 1000;
  // with the generator stopped, the worker has the CPU it was sharing: its catch-up rate
  const catchUpPerS = drainS >= 1 ? Math.round((drained - committed) / drainS) : null;
  const catchUp = catchUpPerS === null ? '' : `, ${catchUpPerS} events/s with the generator idle`;
  progress(drained >= producedRun ? `drained ${drained - committed} events in ${drainS.toFixed(1)} s${catchUp}          ` : `not drained after 60 s: ${producedRun - drained} events uncommitted`, true);
  await sleep(300);
  sampling = false;
  await sampler;
  const after = await scrape(worker);
  const undelivered = await gen.undelivered(); // every message produced so far, checked against the broker's offsets
  // "not growing over the last 30 s": the backlog 30 s before the end (in a shorter run, after
  // its first third, so that the events in flight at any moment are not taken for growth)
  const ref = backlog.filter(([t]) => t <= Math.max(elapsed - 30, elapsed / 3)).at(-1) ?? null;
  const then = ref?.[1] ?? null;
  const sustained = sent >= Math.floor(rate * o.duration * 0.99) && (then === null ? lagEnd <= rate : lagEnd <= then + rate * 0.25);
  const p95 = quantile(start, end, 0.95);
  const rateAchieved = committed / elapsed;
  return {
    rate_offered: rate, rate_achieved: Math.round(rateAchieved), p50_ms: round(quantile(start, end, 0.5)), p95_ms: round(p95), p99_ms: round(quantile(start, end, 0.99)),
    max_ms: Math.max(maxBucket(start, end) ?? 0, pct(observed, 1) ?? 0) || null, errors: after.errors - start.errors + undelivered, undelivered, lag_end: lagEnd,
    sustained, slo_met: sustained && p95 !== null && p95 < SLO.p95 && rateAchieved >= SLO.rate * 0.99 && rate >= SLO.rate,
    duration_s: Number(elapsed.toFixed(1)), produced: producedRun, committed, backlog_30s_ago: then, backlog_ref_s: ref === null ? null : Math.round(ref[0]),
    catch_up_per_s: catchUpPerS,
    worker_cpu_us_per_event: committed > 0 ? Math.round(((end.cpuSeconds - start.cpuSeconds) * 1e6) / committed) : null,
    cpu_us_per_event: cpuPerEvent(cpuStart, cpuEnd, committed),
    ...(o.gc ? { gc: gcSource ? summarizeGc(parseGcTrace(readFileSync(gcSource.logFile, 'utf8')), t0 - gcSource.startedAt, t1 - gcSource.startedAt, committed) : 'the worker is not one this run started (--worker URL)' } : {}),
    ...(stmtStart === undefined ? {} : {
      pg_statements: typeof stmtStart === 'string' ? stmtStart : typeof stmtEnd === 'string' ? stmtEnd : statementsBetween(stmtStart, stmtEnd!, committed),
    }),
    sampled: { n: observed.length, lost, p50_ms: pct(observed, 0.5), p95_ms: pct(observed, 0.95), max_ms: pct(observed, 1) },
  };
}

const round = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);

const ms = (x: number | null) => (x === null ? 'n/a' : x === Infinity ? '> 5000 ms (beyond the histogram\'s last bucket)' : `${x} ms`);

function print(r: Result): void {
  process.stdout.write([
    `offered ${r.rate_offered.toLocaleString('en-US')} events/s for ${r.duration_s} s; committed ${r.rate_achieved.toLocaleString('en-US')} events/s (${r.committed} of ${r.produced})`,
    `latency (sync_latency_ms): p50 ${ms(r.p50_ms)}, p95 ${ms(r.p95_ms)}, p99 ${ms(r.p99_ms)}, max ${ms(r.max_ms)}`,
    `latency sampled in the PostgreSQL target (${r.sampled.n} updates, polled every 20 ms, ${r.sampled.lost} never seen): p50 ${ms(r.sampled.p50_ms)}, p95 ${ms(r.sampled.p95_ms)}, max ${ms(r.sampled.max_ms)}`,
    `worker CPU ${r.worker_cpu_us_per_event ?? 'n/a'} µs per committed event`,
    `CPU per committed event, by process (/proc, µs): ${Object.entries(r.cpu_us_per_event).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}`,
    ...(r.gc === undefined ? [] : [typeof r.gc === 'string' ? `worker GC: ${r.gc}` : `worker GC in the window (--trace-gc): ${r.gc.scavenges} scavenges, ${r.gc.mark_compacts} mark-compacts; per committed event ${r.gc.allocated_kb_per_event ?? 'n/a'} KB of JavaScript heap allocated, ${r.gc.pause_us_per_event ?? 'n/a'} µs of pauses`]),
    ...(r.pg_statements === undefined ? [] : typeof r.pg_statements === 'string' ? [`PostgreSQL statements: ${r.pg_statements}`] : [
      'PostgreSQL statements by time in the window (pg_stat_statements; µs of execution per committed event, calls, ms per call, rows):',
      ...r.pg_statements.map((q) => `  ${String(q.us_per_event).padStart(6)} µs/event  ${String(q.calls).padStart(7)} calls  ${q.ms_per_call.toFixed(3).padStart(9)} ms/call  ${String(q.rows).padStart(8)} rows  ${q.db}: ${q.query.slice(0, 110)}`),
    ]),
    `errors ${r.errors}${r.undelivered > 0 ? ` (${r.undelivered} generated messages never reached the broker)` : ''}; backlog at the end ${r.lag_end} events (at ${r.backlog_ref_s ?? 'n/a'} s: ${r.backlog_30s_ago ?? 'n/a'}); ${r.sustained ? 'sustained' : 'NOT sustained'}`,
    `verdict: ${r.slo_met ? 'SLO MET' : 'SLO NOT MET'} (${SLO.rate.toLocaleString('en-US')} events/s sustained with p95 < ${SLO.p95} ms)`,
    '',
  ].join('\n'));
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (typeof o === 'string') {
    process.stderr.write(o === '' ? USAGE : `${o}\n\n${USAGE}`);
    return o === '' ? 0 : 2;
  }
  for (const e of ENTITIES) await ensureTopic(o.brokers, `load.loadtest.${e}`, o.partitions, 1);
  const startedAt = Date.now();
  const group = `worker-sync-load-${startedAt.toString(36)}`;
  if (!o.workerUrl) {
    // its worker measures this run's events only: from the earliest offset it would first
    // replay every earlier run's events, which skews every figure by however much history
    // the stack holds
    const skipped = await commitAtEnd(o.brokers, group, ENTITIES.map((e) => `load.loadtest.${e}`));
    if (skipped > 0) process.stderr.write(`the new group starts after the ${skipped} events earlier runs left in the load topics\n`);
  }
  const worker = o.workerUrl ? { url: o.workerUrl, proc: undefined, logFile: '(external worker)', startedAt: undefined } : await startWorker(group, o);
  const gcSource = worker.startedAt === undefined ? undefined : { logFile: worker.logFile, startedAt: worker.startedAt };
  process.stderr.write(`worker ${worker.url} (log ${worker.logFile})\n`);
  const producer = loadProducer(o.brokers);
  const gen = new Generator(producer, Date.now() * 10);
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  await gen.start();
  const db = new pg.Pool({ connectionString: o.pgUrl, max: 2 });
  try {
    // seed the key space, then let the worker catch up: the measured run starts with live keys
    process.stderr.write(`seeding ${o.keys} keys per entity\n`);
    for (let i = 0; i < o.keys; i++) for (const e of ENTITIES) gen.produced += gen.emit('c', e);
    const seeded = gen.produced;
    while ((await scrape(worker.url)).committed < seeded) await sleep(500);
    let result: Result;
    if (o.rate === 'max') {
      // down by halves from 2,000 until a rate is sustained, then up by a quarter until one is not
      const tryRate = async (rate: number) => {
        process.stderr.write(`trying ${rate} events/s\n`);
        const r = await runAt(rate, { ...o, duration: Math.min(o.duration, 45) }, worker.url, gen, db, worker.proc?.pid, gcSource);
        print(r);
        return r;
      };
      let r = await tryRate(2000);
      while (!r.sustained && r.rate_offered > 125) r = await tryRate(Math.round(r.rate_offered / 2));
      let best: Result | null = r.sustained ? r : null;
      while (best !== null && r.sustained) {
        best = r;
        r = await tryRate(Math.round(r.rate_offered * 1.25));
      }
      result = best ?? r;
      process.stdout.write(best
        ? `highest sustained rate: ${best.rate_offered.toLocaleString('en-US')} events/s\n`
        : `no rate down to ${r.rate_offered} events/s was sustained\n`);
    } else {
      result = await runAt(o.rate, o, worker.url, gen, db, worker.proc?.pid, gcSource);
      print(result);
    }
    // where the time went, from the worker's own histograms (means over the whole process)
    const text = await (await fetch(`${worker.url}/metrics`)).text();
    const mean = (name: string, label = '') => {
      let sum = 0;
      let count = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith(`${name}_sum`) && line.includes(label)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
        if (line.startsWith(`${name}_count`) && line.includes(label)) count += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return count === 0 ? null : Math.round((sum / count) * 10) / 10;
    };
    const where = {
      batch_size_mean: mean('sync_batch_size'), commit_ms_mean: mean('sync_commit_duration_ms'),
      pg_write_ms_mean: mean('sync_node_write_duration_ms', 'node="pg"'), maria_write_ms_mean: mean('sync_node_write_duration_ms', 'node="maria"'),
      pg_batch_rows_mean: mean('sync_node_batch_size', 'node="pg"'),
    };
    process.stdout.write(`worker internals (means): ${JSON.stringify(where)}\n`);
    if (o.json) writeFileSync(o.json, `${JSON.stringify({ ...result, worker: where }, null, 2)}\n`);
    return result.slo_met ? 0 : 1;
  } finally {
    await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
    await db.end();
    await controlPool?.end();
    if (worker.proc) {
      const proc = worker.proc;
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      await deleteTopic(o.brokers, `${group}.changes`); // the worker's own; the next run's group has another
      if (o.flamegraphDir) await flamegraph(path.resolve(o.flamegraphDir), group, proc.pid!);
      if (o.allocProfile) process.stdout.write(existsSync(o.allocProfile) ? `the worker's allocation profile (its whole run): ${path.resolve(o.allocProfile)}\n` : `the worker wrote no allocation profile (see ${worker.logFile})\n`);
    }
  }
}

/** Draws the run's CPU profile with 0x (DIR/flamegraph.html) and prints its summary. */
async function flamegraph(dir: string, group: string, pid: number): Promise<void> {
  // Node writes one profile per thread (tsx's loader has one too): the worker's main thread has the most samples
  // Node names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: this worker's are the ones with its pid
  const ours = readdirSync(dir).filter((f) => f.startsWith('CPU.') && f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid)).map((f) => path.join(dir, f));
  const newest = [...ours].sort((a, b) => statSync(b).size - statSync(a).size)[0];
  if (!newest) {
    process.stderr.write(`the worker wrote no CPU profile into ${dir}\n`);
    return;
  }
  const file = path.join(dir, `${group}.cpuprofile`);
  renameSync(newest, file);
  for (const f of ours) if (f !== newest) rmSync(f); // the loader thread's
  process.stdout.write(`${summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, ROOT)}\n`);
  process.stderr.write('0x is drawing the flamegraph\n');
  const code = await new Promise<number | null>((resolve) => {
    spawn(process.execPath, [path.join(ROOT, 'node_modules/0x/cmd.js'), '--visualize-cpu-profile', file, '--title', `worker-sync under npm run load (${group})`], { stdio: ['ignore', 'ignore', 'inherit'] })
      .once('exit', resolve);
  });
  const html = path.join(dir, 'flamegraph.html');
  process.stdout.write(code === 0 && existsSync(html) ? `flamegraph: ${html}\n` : `0x could not draw ${file} (exit ${code})\n`);
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`load failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
