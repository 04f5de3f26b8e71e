/**
 * Validates the Kubernetes objects in deploy/k8s against the Kubernetes API schemas (the
 * kubernetes-models package, and @kubernetes-models/prometheus-operator for ServiceMonitor
 * and PrometheusRule), then holds them to what docs/RUNBOOK.md and DESIGN §1 promise:
 * Guaranteed QoS in whole CPUs, the restricted securityContext, the three probes, a grace
 * period longer than SHUTDOWN_GRACE_MS, an HPA capped at the changes topic's partitions, and
 * a ConfigMap topology the worker itself accepts. Run by deploy/check.sh; exit 1 on a finding.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as rbac from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as net from 'kubernetes-models/networking.k8s.io/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parseTopology } from '../../src/config/topology.ts';
import { parse } from 'yaml';

type Obj = Record<string, unknown> & { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } };
type Model = { validate(): void };
const MODELS: Record<string, new (o: never) => Model> = {
  'v1/Namespace': core.Namespace, 'v1/ServiceAccount': core.ServiceAccount, 'v1/ConfigMap': core.ConfigMap, 'v1/Service': core.Service,
  'apps/v1/Deployment': apps.Deployment, 'batch/v1/CronJob': batch.CronJob,
  'rbac.authorization.k8s.io/v1/Role': rbac.Role, 'rbac.authorization.k8s.io/v1/RoleBinding': rbac.RoleBinding,
  'networking.k8s.io/v1/NetworkPolicy': net.NetworkPolicy, 'policy/v1/PodDisruptionBudget': policy.PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
  'monitoring.coreos.com/v1/ServiceMonitor': monitoring.ServiceMonitor, 'monitoring.coreos.com/v1/PrometheusRule': monitoring.PrometheusRule,
};

const here = path.dirname(fileURLToPath(import.meta.url));
const findings: string[] = [];
const objects: Array<{ file: string; o: Obj }> = [];
for (const file of readdirSync(here).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()) {
  for (const doc of parseAllDocuments(readFileSync(path.join(here, file), 'utf8'))) {
    if (doc.errors.length > 0) findings.push(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const o = doc.toJS() as Obj | null;
    if (o) objects.push({ file, o });
  }
}
const listed = new Set((parse(readFileSync(path.join(here, 'kustomization.yaml'), 'utf8')) as { resources: string[] }).resources);
// the adapter's rules are merged into the adapter by hand (kustomization.yaml says why)
for (const f of new Set(objects.map((x) => x.file))) if (!listed.has(f) && f !== 'prometheus-adapter-rules.yaml') findings.push(`kustomization.yaml does not list ${f}`);

for (const { file, o } of objects) {
  const key = `${o.apiVersion}/${o.kind}`;
  const Model = MODELS[key];
  const name = `${file}: ${o.kind} ${o.metadata?.name}`;
  if (!Model) { findings.push(`${name}: no schema for ${key}`); continue; }
  try {
    new Model(o as never).validate();
  } catch (err) {
    findings.push(`${name}: ${(err as Error).message}`);
  }
}

const byKind = (kind: string, n?: string) => objects.map((x) => x.o).filter((o) => o.kind === kind && (n === undefined || o.metadata?.name === n));
const check = (ok: boolean, what: string) => { if (!ok) findings.push(what); };

type Container = { name: string; env?: Array<{ name: string; value?: string }>; resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>; startupProbe?: unknown; livenessProbe?: { httpGet?: { path: string } }; readinessProbe?: { httpGet?: { path: string } } };
const dep = byKind('Deployment', 'worker-sync')[0] as { spec: { template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> & { containers: Container[]; terminationGracePeriodSeconds?: number; securityContext?: Record<string, unknown> } } } } | undefined;
check(dep !== undefined, 'no Deployment worker-sync');
if (dep) {
  const pod = dep.spec.template.spec;
  const c = pod.containers.find((x) => x.name === 'worker-sync');
  check(dep.spec.template.metadata.labels.app === 'worker-sync', 'the pods are not labelled app=worker-sync');
  check(c !== undefined, 'no container named worker-sync');
  if (c) {
    const { requests = {}, limits = {} } = c.resources ?? {};
    check(requests.cpu === limits.cpu && requests.memory === limits.memory, 'Guaranteed QoS: requests must equal limits');
    check(/^\d+$/.test(limits.cpu ?? ''), `CPU pinning needs whole CPUs, got ${limits.cpu}`);
    const sc = c.securityContext ?? {};
    check(sc.allowPrivilegeEscalation === false, 'allowPrivilegeEscalation must be false');
    check(sc.readOnlyRootFilesystem === true, 'readOnlyRootFilesystem must be true');
    check(JSON.stringify((sc.capabilities as { drop?: string[] } | undefined)?.drop) === '["ALL"]', 'capabilities must drop ALL');
    check(pod.securityContext?.runAsNonRoot === true, 'runAsNonRoot must be true');
    check((pod.securityContext?.seccompProfile as { type?: string } | undefined)?.type === 'RuntimeDefault', 'seccomp must be RuntimeDefault');
    check(c.startupProbe !== undefined, 'no startup probe');
    check(c.livenessProbe?.httpGet?.path === '/health', 'liveness must probe /health');
    check(c.readinessProbe?.httpGet?.path === '/ready', 'readiness must probe /ready');
    const grace = Number(c.env?.find((e) => e.name === 'SHUTDOWN_GRACE_MS')?.value ?? 25_000);
    check((pod.terminationGracePeriodSeconds ?? 30) * 1000 > grace, `terminationGracePeriodSeconds (${pod.terminationGracePeriodSeconds}) must exceed SHUTDOWN_GRACE_MS (${grace} ms)`);
    const partitions = Number(c.env?.find((e) => e.name === 'CHANGES_PARTITIONS')?.value ?? 15);
    const hpa = byKind('HorizontalPodAutoscaler', 'worker-sync')[0] as { spec: { maxReplicas: number } } | undefined;
    check(hpa !== undefined && hpa.spec.maxReplicas <= partitions, `the HPA's maxReplicas must not exceed the changes topic's ${partitions} partitions`);
  }
}
for (const kind of ['ServiceAccount', 'Role', 'RoleBinding', 'NetworkPolicy', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ServiceMonitor', 'PrometheusRule', 'Namespace']) {
  check(byKind(kind).length > 0, `no ${kind}`);
}
const cm = byKind('ConfigMap', 'worker-sync-config')[0] as { data?: Record<string, string> } | undefined;
try {
  const t = parseTopology(parse(cm?.data?.['topology.yaml'] ?? '') as unknown, 'deploy/k8s/config.yaml worker-sync-config', { resolveUrls: false });
  process.stdout.write(`topology in worker-sync-config: ${t.nodes.size} nodes, ${t.entities.size} entities, ${t.topics.size} topics\n`);
  // and through the command a user runs
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-k8s-')), 'topology.yaml');
  writeFileSync(file, cm?.data?.['topology.yaml'] ?? '');
  const r = spawnSync(process.execPath, [path.join(here, '../../bin/worker-sync.js'), 'config', 'check', '--file', file], { encoding: 'utf8' });
  if (r.status !== 0) findings.push(`worker-sync config check of worker-sync-config's topology exited ${r.status}: ${r.stderr || r.stdout}`);
  else process.stdout.write(r.stdout);
} catch (err) {
  findings.push(`worker-sync-config's topology: ${(err as Error).message}`);
}

if (findings.length > 0) {
  process.stderr.write(`deploy/k8s: ${findings.length} finding(s)\n  ${findings.join('\n  ')}\n`);
  process.exit(1);
}
process.stdout.write(`deploy/k8s: ${objects.length} objects valid against the Kubernetes schemas, and hold to the runbook's requirements\n`);
