/**
 * A text summary of a V8 CPU profile (`node --cpu-prof`), for `npm run profile` and the
 * rounds in bench/RESULTS.md: busy time, self time by part of the program (each src/
 * directory, each npm package, GC, Node internals) and the functions with the most self
 * time. The flamegraph shows the same profile by call stack.
 */
export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Which part of the program a frame belongs to. */
export function bucketOf(url: string, functionName: string, root: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (url.startsWith('node:')) return 'node internals';
  const rel = url.replace(/^file:\/\//, '').replace(`${root}/`, '');
  const m = /^(src\/[^/]+|bin|load|bench)\//.exec(rel);
  return m ? m[1]! : 'other';
}

export function summarize(p: CpuProfile, root: string, top = 15): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const buckets = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const b = bucketOf(f.url, f.functionName, root);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(`${root}/`, '')}:${f.lineNumber + 1}` : '';
    const name = `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
  }
  const busy = total - idle;
  const s = (us: number) => `${(us / 1e6).toFixed(2)} s`;
  const pct = (us: number) => `${((us / Math.max(1, busy)) * 100).toFixed(1)} %`;
  const rows = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, us]) => `  ${s(us).padStart(8)}  ${pct(us).padStart(6)}  ${k}`);
  return [
    `CPU profile: ${s(total)} sampled, ${s(busy)} busy (${((busy / Math.max(1, total)) * 100).toFixed(0)} % of the main thread)`,
    'self time by part of the program (share of busy time):',
    ...rows(buckets, 20),
    `the ${top} functions with the most self time:`,
    ...rows(fns, top),
  ].join('\n');
}
