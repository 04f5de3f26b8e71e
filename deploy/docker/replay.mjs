// Replays deploy/docker/Dockerfile's build stage in a scratch folder, without Docker: its
// WORKDIR, ENV and COPY steps, then its RUN steps in order (apt-get is skipped: the packages
// are this machine's). It catches what a build would hit first: a step that needs a file
// not yet copied (the install script's native/build.mjs and binding.gyp before `npm ci`), a
// dependency the lock file does not hold, and an image that does not start.
//
// `npm ci` runs here with --offline and --ignore-scripts, then the install scripts the image
// relies on are run one by one: ours (the native clock codec, compiled from what was copied)
// and node-rdkafka's, whose librdkafka build is taken from this checkout's node_modules (the
// same version, from the same lock file; CI's own npm ci compiles it). Exit 1 on a failure.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const lines = readFileSync(path.join(root, 'deploy/docker/Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const scratch = mkdtempSync(path.join(os.tmpdir(), 'ws-docker-replay-'));
const env = { ...process.env };
let stage = -1;
let workdir = '/';
const say = (m) => process.stdout.write(`replay: ${m}\n`);
const fail = (m) => { process.stderr.write(`replay: FAILED: ${m}\n(scratch folder kept: ${scratch})\n`); process.exit(1); };
const inScratch = (p) => path.join(scratch, path.isAbsolute(p) ? p : path.join(workdir, p));

try {
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op === 'FROM') {
      stage++;
      if (stage > 0) break; // the run stage copies /app from this one
      say(`stage ${stage}: ${args}`);
      continue;
    }
    if (op === 'WORKDIR') { workdir = args; mkdirSync(inScratch('.'), { recursive: true }); continue; }
    if (op === 'ENV') { for (const m of args.matchAll(/(\w+)=(\S+)/g)) env[m[1]] = m[2]; continue; }
    if (op === 'COPY') {
      const parts = rest.filter((p) => !p.startsWith('--'));
      const dest = parts.pop();
      for (const src of parts) {
        if (!existsSync(path.join(root, src))) fail(`COPY ${src}: no such file in the repository`);
        const to = dest.endsWith('/') ? path.join(inScratch(dest), path.basename(src)) : inScratch(dest);
        cpSync(path.join(root, src), to, { recursive: true });
      }
      say(`COPY ${parts.join(' ')} -> ${dest}`);
      continue;
    }
    if (op === 'RUN') {
      for (const cmd of args.split('&&').map((c) => c.trim())) {
        if (/^apt-get|^rm -rf \/var\/lib\/apt/.test(cmd)) continue;
        if (/^npm ci\b/.test(cmd)) { npmCi(cmd); continue; }
        say(`RUN ${cmd}`);
        try {
          execSync(cmd, { cwd: inScratch('.'), env, stdio: ['ignore', 'ignore', 'inherit'] });
        } catch {
          fail(`RUN ${cmd} exited non-zero`);
        }
      }
      continue;
    }
  }
  say(`ok: the build stage's steps run in order (${scratch})`);
  rmSync(scratch, { recursive: true, force: true });
} catch (err) {
  fail(err.message);
}

function npmCi(cmd) {
  const cwd = inScratch('.');
  const pkg = JSON.parse(readFileSync(path.join(cwd, 'package.json'), 'utf8'));
  // what the lifecycle scripts need must already be copied
  const install = pkg.scripts?.install;
  const script = install?.match(/^node\s+(\S+)/)?.[1];
  if (script && !existsSync(path.join(cwd, script))) fail(`${cmd}: the install script "${install}" needs ${script}, not copied yet`);
  if (script && readFileSync(path.join(cwd, script), 'utf8').includes('binding.gyp') && !existsSync(path.join(cwd, 'binding.gyp'))) fail(`${cmd}: ${script} builds binding.gyp, not copied yet`);
  say(`RUN ${cmd} (offline, scripts run one by one below)`);
  const flags = cmd.replace(/^npm ci/, '').trim();
  try {
    execSync(`npm ci ${flags} --offline --ignore-scripts --loglevel=error`, { cwd, env, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch {
    fail(`${cmd}: npm ci failed (a dependency the lock file or the cache lacks?)`);
  }
  cpSync(path.join(root, 'node_modules/node-rdkafka/build'), path.join(cwd, 'node_modules/node-rdkafka/build'), { recursive: true });
  say('node-rdkafka: librdkafka build taken from this checkout');
  if (install) {
    say(`install script: ${install}`);
    try {
      execSync(install, { cwd, env, stdio: ['ignore', 'ignore', 'inherit'] });
    } catch {
      fail(`the install script "${install}" failed`);
    }
  }
}
