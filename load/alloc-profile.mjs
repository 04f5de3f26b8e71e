// `npm run load -- --alloc-profile FILE`: runs the worker with V8's sampling heap profiler,
// counting every sampled allocation, the ones collected since too, so the profile shows what
// allocates, not only what stays. Usage: node load/alloc-profile.mjs FILE WORKER_BIN ARGS...
// The profile is written when the worker exits (after the load run's SIGTERM); open it in
// Chrome DevTools' Memory tab. Plain JavaScript, so that it runs before tsx's loader.
import inspector from 'node:inspector';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [file, bin, ...rest] = process.argv.slice(2);
if (!file || !bin) {
  process.stderr.write('usage: node load/alloc-profile.mjs FILE WORKER_BIN [ARGS...]\n');
  process.exit(2);
}
const session = new inspector.Session();
session.connect();
// a session on this thread answers synchronously, so the profile can be taken at exit
const post = (method, params = {}) => {
  let out;
  session.post(method, params, (err, res) => {
    if (err) throw err;
    out = res;
  });
  return out;
};
post('HeapProfiler.enable');
post('HeapProfiler.startSampling', { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
process.on('exit', () => {
  const { profile } = post('HeapProfiler.stopSampling');
  writeFileSync(file, JSON.stringify(profile));
});
process.argv = [process.argv[0], path.resolve(bin), ...rest];
await import(pathToFileURL(path.resolve(bin)).href);
