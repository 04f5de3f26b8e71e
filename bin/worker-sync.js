#!/usr/bin/env node
// Entry point: runs the TypeScript sources through tsx's loader, so `npm start`,
// `npx worker-sync` and the tests all run exactly the code in src/.
import { register } from 'tsx/esm/api';

import { cpusGiven } from './cpus.js';

// libuv's thread pool (DNS lookups, file I/O, zlib) sized to the CPUs the process is given,
// before anything uses it: 4 threads (Node's default) up to 4 CPUs, one a CPU beyond. An
// explicit UV_THREADPOOL_SIZE wins. The worker logs what it found (WORKER_SYNC_CPUS).
const given = cpusGiven();
process.env.WORKER_SYNC_CPUS = `${given.cpus} ${given.source}`;
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, given.cpus));
register();
await import('../src/cli/main.ts');
