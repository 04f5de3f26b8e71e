import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * CPU time per process group of the local stack, read from /proc, so a load run can say
 * where the whole machine's CPU went (worker, PostgreSQL, MariaDB, the broker, Connect and
 * the generator itself) and not only the worker's.
 *
 * A group's time is user + system time in seconds. PostgreSQL's is its postmaster's, its
 * live backends' and, through cutime/cstime, the backends that exited since (the postmaster
 * waits for them). Linux only; a group it cannot find reads as null.
 */
export type CpuGroup = 'worker' | 'postgres' | 'mariadb' | 'broker' | 'connect' | 'generator';

const TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux x86_64 and arm64

function stat(pid: number): { ppid: number; self: number; children: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces: the fields after it start past the last ')'
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / TICKS, children: (Number(f[13]) + Number(f[14])) / TICKS };
  } catch {
    return undefined;
  }
}

const pidFrom = (file: string) => { try { return Number(readFileSync(file, 'utf8').split('\n')[0]!.trim()) || undefined; } catch { return undefined; } };

export function cpuSnapshot(root: string, workerPid: number | undefined): Record<CpuGroup, number | null> {
  const run = path.join(root, '.local/stack/run');
  let pgData = path.join(root, '.local/stack/postgres');
  try { pgData = realpathSync(pgData); } catch { /* not there */ }
  const postmaster = pidFrom(path.join(pgData, 'postmaster.pid'));
  const one = (pid: number | undefined) => { const s = pid === undefined ? undefined : stat(pid); return s === undefined ? null : s.self; };
  let postgres: number | null = null;
  if (postmaster !== undefined) {
    const pm = stat(postmaster);
    if (pm) {
      postgres = pm.self + pm.children;
      for (const d of readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        const s = stat(Number(d));
        if (s && s.ppid === postmaster) postgres += s.self;
      }
    }
  }
  const gen = process.cpuUsage();
  return {
    worker: one(workerPid), postgres, mariadb: one(pidFrom(path.join(run, 'mariadb.pid'))), broker: one(pidFrom(path.join(run, 'kafka.pid'))),
    connect: one(pidFrom(path.join(run, 'connect.pid'))), generator: (gen.user + gen.system) / 1e6,
  };
}

/** µs of CPU per event between two snapshots, per group. */
export function cpuPerEvent(a: Record<CpuGroup, number | null>, b: Record<CpuGroup, number | null>, events: number): Record<CpuGroup, number | null> {
  const out = {} as Record<CpuGroup, number | null>;
  for (const k of Object.keys(a) as CpuGroup[]) {
    const x = a[k];
    const y = b[k];
    out[k] = x === null || y === null || events <= 0 ? null : Math.round(((y - x) * 1e6) / events);
  }
  return out;
}
