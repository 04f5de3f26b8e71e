#!/usr/bin/env bash
# Checks everything in deploy/ that nothing here runs for real (no cluster, no Docker engine,
# no Grafana): run by .ci/run, and by hand after editing deploy/.
#   1. the alerts: promtool check rules, promtool test rules, the PrometheusRule rendered
#      from rules.yml is the committed one, and every runbook_url names a section of docs/RUNBOOK.md;
#   2. the Kubernetes objects against the Kubernetes schemas and the runbook's rules, and the
#      ConfigMap's topology through `worker-sync config check`;
#   3. the dashboards' JSON;
#   4. the Dockerfile's build stage, replayed in a scratch folder.
# Exit 0 when all pass, 1 at the first that does not.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n--- %s\n' "$*"; }

command -v promtool >/dev/null || { echo "promtool not found: bash deploy/local/stack.sh up installs Debian's prometheus package" >&2; exit 1; }

step "promtool check rules deploy/prometheus/rules.yml"
promtool check rules deploy/prometheus/rules.yml
step "promtool test rules deploy/prometheus/rules.test.yml"
(cd deploy/prometheus && promtool test rules rules.test.yml)
step "the PrometheusRule is rendered from rules.yml"
node deploy/prometheus/render.mjs --check
step "every runbook_url names a section of docs/RUNBOOK.md"
node -e "
const fs = require('node:fs');
const rules = fs.readFileSync('deploy/prometheus/rules.yml', 'utf8');
const doc = fs.readFileSync('docs/RUNBOOK.md', 'utf8');
const anchors = [...rules.matchAll(/runbook_url: \S+#([a-z0-9-]+)/g)].map((m) => m[1]);
const missing = [...new Set(anchors)].filter((a) => !doc.includes('<a id=\"' + a + '\"></a>'));
if (missing.length) { console.error('docs/RUNBOOK.md has no section for: ' + missing.join(', ')); process.exit(1); }
console.log(anchors.length + ' runbook_url annotations, ' + new Set(anchors).size + ' sections, all in docs/RUNBOOK.md');
"
step "Kubernetes objects (deploy/k8s/validate.ts)"
npx tsx deploy/k8s/validate.ts
step "Grafana dashboards (deploy/grafana)"
node -e "
const fs = require('node:fs');
const files = fs.readdirSync('deploy/grafana').filter((f) => f.endsWith('.json'));
const uids = new Set();
for (const f of files) {
  const d = JSON.parse(fs.readFileSync('deploy/grafana/' + f, 'utf8'));
  if (!d.uid || uids.has(d.uid)) throw new Error(f + ': missing or repeated uid');
  uids.add(d.uid);
  for (const p of d.panels) if (!p.targets?.length || p.targets.some((t) => !t.expr)) throw new Error(f + ': panel ' + p.title + ' has no query');
  console.log(f + ': uid ' + d.uid + ', ' + d.panels.length + ' panels, ' + d.panels.reduce((n, p) => n + p.targets.length, 0) + ' queries');
}
for (const u of ['worker-sync-overview', 'database-health', 'kafka-monitoring']) if (!uids.has(u)) throw new Error('no dashboard with uid ' + u);
"
step "Dockerfile build stage, replayed (deploy/docker/replay.mjs)"
node deploy/docker/replay.mjs
printf '\ndeploy/check.sh: all passed\n'
