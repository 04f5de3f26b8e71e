import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm test` starts the local stack when it is down (stack.sh up is idempotent and
 * quick when everything already runs). Unit-only runs can skip it with
 * WORKER_SYNC_SKIP_STACK=1.
 */
export default function setup(): void {
  if (process.env.WORKER_SYNC_SKIP_STACK === '1') return;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const res = spawnSync('bash', [path.join(root, 'deploy/local/stack.sh'), 'up'], { stdio: 'inherit' });
  if (res.status !== 0) throw new Error(`deploy/local/stack.sh up failed with exit code ${res.status}`);
}
