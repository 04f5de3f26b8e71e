import { errorMessage } from '../errors.ts';

export interface DependencyState {
  ok: boolean;
  detail?: string;
  checkedAt: string;
}

type Probe = () => Promise<void>;

/**
 * Readiness (DESIGN §9): Kafka, the control database and every target node, each probed
 * on an interval so `/ready` answers from memory and never blocks on a slow dependency.
 */
export class Readiness {
  private readonly probes = new Map<string, Probe>();
  private readonly state = new Map<string, DependencyState>();
  private timer: NodeJS.Timeout | undefined;
  private fatal: string | undefined;

  /** Not ready from now on, whatever the probes say: the process is about to exit. */
  fail(detail: string): void {
    this.fatal = detail;
  }

  add(name: string, probe: Probe): void {
    this.probes.set(name, probe);
  }

  async checkAll(): Promise<void> {
    await Promise.all([...this.probes].map(async ([name, probe]) => {
      const checkedAt = new Date().toISOString();
      try {
        await withTimeout(probe(), 2500);
        this.state.set(name, { ok: true, checkedAt });
      } catch (err) {
        this.state.set(name, { ok: false, detail: errorMessage(err), checkedAt });
      }
    }));
  }

  start(intervalMs = 2000): void {
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), intervalMs);
    this.timer.unref();
  }

  snapshot(): { ready: boolean; dependencies: Record<string, DependencyState> } {
    const deps: Record<string, DependencyState> = {};
    let ready = true;
    if (this.timer === undefined) {
      // start-up has not finished (nothing is probed before it does): never ready with no
      // probes at all, or a pod takes traffic before it has connected to anything
      deps.startup = { ok: false, detail: 'starting', checkedAt: new Date().toISOString() };
      ready = false;
    }
    for (const name of this.probes.keys()) {
      const s = this.state.get(name) ?? { ok: false, detail: 'not checked yet', checkedAt: new Date(0).toISOString() };
      deps[name] = s;
      if (!s.ok) ready = false;
    }
    if (this.fatal !== undefined) {
      deps.process = { ok: false, detail: this.fatal, checkedAt: new Date().toISOString() };
      ready = false;
    }
    return { ready, dependencies: deps };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}
