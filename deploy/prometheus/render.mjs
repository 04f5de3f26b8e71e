// Renders deploy/prometheus/rules.yml, the alerts' one source, as the Prometheus Operator's
// PrometheusRule (deploy/k8s/prometheus-rule.yaml).
//   node deploy/prometheus/render.mjs           write it
//   node deploy/prometheus/render.mjs --check   exit 1 if the committed file is not what rules.yml renders to
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = path.join(here, 'rules.yml');
const target = path.join(here, '../k8s/prometheus-rule.yaml');
const rules = parse(readFileSync(source, 'utf8'));
const rule = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  // release: most Prometheus Operator installs select rules by such a label; set it to yours
  metadata: { name: 'worker-sync', namespace: 'sync-system', labels: { app: 'worker-sync', release: 'prometheus' } },
  spec: { groups: rules.groups },
};
const text = `# Generated from deploy/prometheus/rules.yml by deploy/prometheus/render.mjs: edit that file, then run it.\n${stringify(rule, { lineWidth: 0 })}`;
if (process.argv.includes('--check')) {
  let current = '';
  try { current = readFileSync(target, 'utf8'); } catch { /* missing */ }
  if (current !== text) {
    process.stderr.write(`${path.relative(process.cwd(), target)} is not what rules.yml renders to: run node deploy/prometheus/render.mjs\n`);
    process.exit(1);
  }
  process.stdout.write(`${path.relative(process.cwd(), target)}: up to date with rules.yml (${rules.groups.reduce((n, g) => n + g.rules.length, 0)} alerts)\n`);
} else {
  writeFileSync(target, text);
  process.stdout.write(`wrote ${path.relative(process.cwd(), target)}\n`);
}
