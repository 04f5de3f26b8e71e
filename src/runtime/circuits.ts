import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';

interface CircuitState {
  open: boolean;
  since: number;
  failures: number;
  lastError: string | null;
}

/**
 * One circuit per target node (DESIGN §8). A failed sink batch opens it; the next
 * successful one closes it. While it is open, the lanes writing there back off with
 * jitter and retry in order (they never skip ahead), `/ready` names the node and the
 * metrics show it.
 */
export class Circuits {
  private readonly states = new Map<string, CircuitState>();
  private readonly metrics: Metrics;
  private readonly log: Logger;

  constructor(nodes: string[], metrics: Metrics, log: Logger) {
    this.metrics = metrics;
    this.log = log;
    for (const n of nodes) {
      this.states.set(n, { open: false, since: Date.now(), failures: 0, lastError: null });
      metrics.circuitOpen.labels(n).set(0);
    }
  }

  failure(node: string, err: Error): void {
    const s = this.states.get(node);
    if (!s) return;
    s.failures++;
    s.lastError = err.message;
    if (!s.open) {
      s.open = true;
      s.since = Date.now();
      this.metrics.circuitOpen.labels(node).set(1);
      this.metrics.circuitOpens.labels(node).inc();
      this.log.error({ node, err: err.message }, 'Circuit opened: target node failing; its lanes back off and keep order');
    }
  }

  success(node: string): void {
    const s = this.states.get(node);
    if (!s?.open) return;
    this.log.info({ node, openMs: Date.now() - s.since, failures: s.failures }, 'Circuit closed: target node back');
    s.open = false;
    s.since = Date.now();
    s.failures = 0;
    this.metrics.circuitOpen.labels(node).set(0);
  }

  /** Throws while the node's circuit is open, for /ready. */
  check(node: string): void {
    const s = this.states.get(node);
    if (s?.open) throw new Error(`circuit open for ${Math.round((Date.now() - s.since) / 1000)} s after ${s.failures} failed batch(es): ${s.lastError}`);
  }
}
