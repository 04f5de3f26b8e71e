// The CPUs this process is given: the cgroup's CPU quota (cgroup v2 cpu.max, v1
// cpu.cfs_quota_us over cpu.cfs_period_us: what a Kubernetes CPU limit becomes), rounded up,
// and never more than the machine's. Node's os.availableParallelism() counts the machine's
// CPUs (or the affinity mask, which the kubelet's static CPU manager does set) but not the
// quota, so a pod limited to 2 CPUs on a 64-core node would size itself for 64.
// Plain JavaScript, read synchronously: bin/worker-sync.js needs it before libuv's thread
// pool first runs, which is before any TypeScript can be loaded.
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** @param {(file: string) => string} [read] */
export function cpusGiven(read = (f) => readFileSync(f, 'utf8')) {
  const machine = os.availableParallelism();
  let quota;
  try {
    const [max, period] = read('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (max && max !== 'max' && period) quota = Number(max) / Number(period);
  } catch { /* not cgroup v2 */ }
  if (quota === undefined) {
    try {
      const q = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim());
      const p = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim());
      if (q > 0 && p > 0) quota = q / p;
    } catch { /* no cgroup v1 either */ }
  }
  if (quota === undefined || !Number.isFinite(quota) || quota <= 0) return { cpus: machine, source: 'the machine (no cgroup CPU quota)' };
  return { cpus: Math.max(1, Math.min(machine, Math.ceil(quota))), source: `the cgroup CPU quota (${quota})` };
}
