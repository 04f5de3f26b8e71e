import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { VersionVector } from '../src/clock/version-vector.ts';
import { pack } from '../src/clock/batch.ts';
import { loadNative, typescriptCodec, type ClockCodec } from '../src/clock/clock-codec.ts';
import { ROOT, median, table, writeResults } from '../harness/common.ts';

/**
 * The version vector codec, TypeScript against the native addon (issue 4): encode, decode,
 * batch compare and batch merge, at batch sizes 1, 10, 100 and 1,000. Vectors have 3 to 8
 * nodes with counters of one to three LEB128 bytes, like a deployment's. Rounds alternate
 * the two codecs; the figure is the median, in vectors (or pairs) per second. Writes
 * bench/results/clock.json and the clock section of bench/RESULTS.md.
 */
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 250);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const SIZES = [1, 10, 100, 1000];

function vectors(n: number, seed: number): VersionVector[] {
  let s = seed;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, () => {
    const len = 3 + Math.floor(r() * 6);
    return Array.from({ length: len }, (_, k) => [k + 1, 1 + Math.floor(r() ** 3 * 100_000)] as const);
  });
}

type Op = 'encode' | 'decode' | 'compareBatch' | 'mergeBatch';

function runner(codec: ClockCodec, op: Op, size: number): () => number {
  const vs = vectors(size, 1);
  const ws = vectors(size, 2);
  const encoded = vs.map((v) => typescriptCodec.encode(v));
  const a = pack(encoded);
  const b = pack(ws.map((v) => typescriptCodec.encode(v)));
  switch (op) {
    case 'encode': return () => { for (const v of vs) codec.encode(v); return size; };
    case 'decode': return () => { for (const e of encoded) codec.decode(e); return size; };
    case 'compareBatch': return () => { codec.compareBatch(a, b); return size; };
    case 'mergeBatch': return () => { codec.mergeBatch(a, b); return size; };
  }
}

function measure(fn: () => number): number {
  let n = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < ROUND_MS) {
    for (let k = 0; k < 20; k++) n += fn();
    elapsed = performance.now() - started;
  }
  return n / (elapsed / 1000);
}

export async function run(): Promise<void> {
  const native = loadNative();
  if (native instanceof Error) throw native;
  const codecs: Array<[string, ClockCodec]> = [['typescript', typescriptCodec], ['native', native]];
  const rows: Array<{ op: Op; batch: number; typescript: number; native: number; native_over_ts: number }> = [];
  for (const op of ['encode', 'decode', 'compareBatch', 'mergeBatch'] as Op[]) {
    for (const size of SIZES) {
      const samples: Record<string, number[]> = { typescript: [], native: [] };
      const fns = codecs.map(([name, c]) => [name, runner(c, op, size)] as const);
      for (const [, fn] of fns) measure(fn); // warm-up
      for (let round = 0; round < ROUNDS; round++) for (const [name, fn] of fns) samples[name]!.push(measure(fn));
      const t = median(samples.typescript!);
      const n = median(samples.native!);
      rows.push({ op, batch: size, typescript: Math.round(t), native: Math.round(n), native_over_ts: Number((n / t).toFixed(2)) });
      if (process.stderr.isTTY) process.stderr.write(`\r${op} ${size}        `);
    }
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  process.stdout.write(`${table(rows)}\n(ops: vectors per second; for the batch ops, pairs per second)\n`);
  const file = writeResults('clock', { rounds: ROUNDS, round_ms: ROUND_MS, unit: 'vectors (pairs for the batch ops) per second, median', results: rows });
  process.stdout.write(`wrote ${file}\n`);

  const md = path.join(ROOT, 'bench/RESULTS.md');
  const section = [
    '<!-- clock:begin (written by `npm run bench -- clock`) -->',
    `Command: \`npm run -s bench -- clock\` (${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${ROUNDS} rounds of ${ROUND_MS} ms per figure, codecs alternating).`,
    '',
    '| operation | batch | TypeScript ops/s | native ops/s | native / TypeScript |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.op} | ${r.batch} | ${r.typescript.toLocaleString('en-US')} | ${r.native.toLocaleString('en-US')} | ${r.native_over_ts} |`),
    '<!-- clock:end -->',
  ].join('\n');
  const text = readFileSync(md, 'utf8');
  const re = /<!-- clock:begin[\s\S]*?<!-- clock:end -->/;
  writeFileSync(md, re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n## Clock codec: TypeScript vs native (issue 4)\n\n${section}\n`);
  process.stdout.write(`updated ${md}\n`);
}
