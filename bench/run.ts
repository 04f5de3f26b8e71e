/**
 * `npm run bench [-- NAME ...]`: runs the named micro-benchmarks (all without a name).
 * Each prints its figures and writes bench/results/NAME.json. Benchmarks measure and
 * print; none of them is a test, and none belongs to `npm test`.
 */
import type { BenchOptions } from '../harness/common.ts';

const BENCHES: Record<string, { about: string; load: () => Promise<{ run: (o: BenchOptions) => Promise<void> }> }> = {
  hot: { about: 'the per-event hot path: decode (both converter forms), classify, audit row encode + hash, Merkle append', load: () => import('./hot.ts') },
  clock: { about: 'version vector codec, TypeScript vs native: encode, decode, batch compare and merge at 1/100/1000', load: () => import('./clock.ts') },
  verify: { about: 'audit log verification speed over a 200,000-row log (needs the stack)', load: () => import('./verify.ts') },
  generator: { about: 'the load generator\'s CPU per event: envelope building, the paced generator without a worker, idle wake-ups (needs the stack)', load: () => import('./generator.ts') },
  idle: { about: 'an idle worker\'s CPU per second, per thread (timers and polls with nothing to do; needs the stack; WORKER_SYNC_BIN for an A/B)', load: () => import('./idle.ts') },
  hop: { about: 'the second Kafka hop alone: change records produced and consumed at a paced rate with the worker\'s clients, CPU per record of this process and the broker (needs the stack)', load: () => import('./hop.ts') },
  arrays: { about: 'array parameters of the set-based statements: JS arrays (array literals) vs binary arrays, CPU per row of this process and the backend (needs the stack)', load: () => import('./arrays.ts') },
  sinks: { about: 'each sink\'s batch apply at 100/500/1000 rows; PostgreSQL unnest vs COPY staging (needs the stack)', load: () => import('./sinks.ts') },
};

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const o: BenchOptions = {};
  const j = args.indexOf('--json');
  if (j >= 0) {
    o.json = args[j + 1];
    args.splice(j, 2);
    if (!o.json) {
      process.stderr.write('--json needs a FILE\n');
      return 2;
    }
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`usage: npm run bench [-- NAME ...] [--json FILE]   (verify writes verify_rows_per_s, the median of its rounds)\n\n${Object.entries(BENCHES).map(([n, b]) => `  ${n.padEnd(10)} ${b.about}`).join('\n')}\n`);
    return 0;
  }
  const names = args.length > 0 ? args : Object.keys(BENCHES);
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}\n`);
    return 2;
  }
  for (const name of names) {
    process.stdout.write(`== ${name}\n`);
    await (await BENCHES[name]!.load()).run(o);
  }
  return 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
