import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { commitAtEnd } from '../src/kafka/consumer.ts';
import { deleteTopic } from '../src/kafka/producer.ts';
import { ENTITIES } from '../load/events.ts';
import { freePort, ROOT, table, writeResults, type BenchOptions } from '../harness/common.ts';

/**
 * What an idle worker costs (issue 13): a worker on the load topology, with nothing
 * arriving, its CPU per second over BENCH_IDLE_SECONDS (20), per thread, from
 * /proc/<pid>/task/<tid>/schedstat. Each wake-up of a process costs 100-340 µs of CPU on
 * this 2-core machine (`npm run bench -- generator` measures it), so timers and polls that
 * fire when there is nothing to do are CPU taken from the rest of the stack, and per
 * event they weigh most at low rates. WORKER_SYNC_BIN runs another build's worker, for an
 * A/B. Needs the local stack.
 */
export async function run(o: BenchOptions = {}): Promise<void> {
  const seconds = Number(process.env.BENCH_IDLE_SECONDS ?? 20);
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';
  const group = `worker-sync-idle-${Date.now().toString(36)}`;
  await commitAtEnd(brokers, group, ENTITIES.map((e) => `load.loadtest.${e}`)); // nothing to replay: idle from the start
  const port = await freePort();
  const bin = process.env.WORKER_SYNC_BIN ? path.resolve(process.env.WORKER_SYNC_BIN) : path.join(ROOT, 'bin/worker-sync.js');
  const proc = spawn(process.execPath, [bin, 'run'], {
    stdio: 'ignore',
    env: { ...process.env, WORKER_SYNC_CONFIG: path.join(ROOT, 'load/topology.yaml'), KAFKA_GROUP_ID: group, HTTP_HOST: '127.0.0.1', HTTP_PORT: String(port), LOG_LEVEL: 'warn' },
  });
  try {
    const deadline = Date.now() + 120_000;
    while (!(await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.ok, () => false))) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`the worker did not get ready (exit ${proc.exitCode})`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await new Promise((r) => setTimeout(r, 5000)); // start-up's own work settles
    const a = threads(proc.pid!);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const b = threads(proc.pid!);
    const byName = new Map<string, number>();
    for (const [tid, t] of b) byName.set(t.name, (byName.get(t.name) ?? 0) + (t.ns - (a.get(tid)?.ns ?? 0)) / 1e6 / seconds);
    const total = [...byName.values()].reduce((x, y) => x + y, 0);
    const rows = [...byName].filter(([, ms]) => ms >= 0.05).sort((x, y) => y[1] - x[1]).map(([name, ms]) => ({ thread: name, 'CPU ms per second': Number(ms.toFixed(1)) }));
    process.stdout.write(`${table([...rows, { thread: 'total', 'CPU ms per second': Number(total.toFixed(1)) }])}\n`);
    const summary = { seconds, worker_bin: bin, idle_cpu_ms_per_s: Number(total.toFixed(1)), by_thread: Object.fromEntries(rows.map((r) => [r.thread, r['CPU ms per second']])) };
    process.stdout.write(`results: ${writeResults('idle', summary)}\n`);
    if (o.json) writeFileSync(o.json, `${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await deleteTopic(brokers, `${group}.changes`).catch(() => undefined);
  }
}

/** Each thread's CPU time (ns, schedstat) and name; a thread of the main process is "main" when its tid is the pid. */
function threads(pid: number): Map<string, { name: string; ns: number }> {
  const out = new Map<string, { name: string; ns: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const name = tid === String(pid) ? 'main' : comm === 'node' ? 'node (V8, libuv)' : comm.replace(/^rdk:broker.*$/, 'rdk:broker');
      out.set(tid, { name, ns });
    } catch { /* the thread ended */ }
  }
  return out;
}
