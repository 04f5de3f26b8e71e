// npm's install step for the native clock codec (binding.gyp -> build/Release/ws_clock.node).
// A failed build is loud but not fatal by default, because the TypeScript codec is the
// reference and the worker runs on it; with WORKER_SYNC_REQUIRE_NATIVE=1 (as .ci/run sets
// it) a failed build fails the install.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const require_ = process.env.WORKER_SYNC_REQUIRE_NATIVE === '1';
// npm hands its own node-gyp to install scripts; run by hand, use the one npm ships.
const bundled = path.join(path.dirname(path.dirname(process.execPath)), 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const gyp = process.env.npm_config_node_gyp || (existsSync(bundled) ? bundled : undefined);
// Headers: this machine cannot download them, but a Node.js installed from packages
// carries them under <prefix>/include/node.
const prefix = path.dirname(path.dirname(process.execPath));
const nodedir = process.env.npm_config_nodedir || (existsSync(path.join(prefix, 'include/node/node_api.h')) ? prefix : undefined);
const gypArgs = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const [cmd, args] = gyp ? [process.execPath, [gyp, ...gypArgs]] : ['node-gyp', gypArgs];
const started = Date.now();
const res = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (res.status === 0) {
  process.stdout.write(`worker-sync: native addons built (build/Release/ws_clock.node: the clock codec; ws_hash.node: batch SHA-256 for the audit log) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.exit(0);
}
process.stderr.write(`${res.stdout ?? ''}${res.stderr ?? ''}${res.error ? `${res.error.message}\n` : ''}`);
process.stderr.write(`\nworker-sync: THE NATIVE CLOCK CODEC DID NOT BUILD (node-gyp exit ${res.status}).\n`);
if (require_) {
  process.stderr.write('worker-sync: WORKER_SYNC_REQUIRE_NATIVE=1, so the install fails.\n');
  process.exit(1);
}
process.stderr.write('worker-sync: the worker will use the TypeScript codec. Set WORKER_SYNC_REQUIRE_NATIVE=1 to make this fatal.\n');
process.exit(0);
