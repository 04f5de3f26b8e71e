import type pg from 'pg';
import type { Verifier } from './note.ts';
import { adminLogId, groupLogRegex, prunedThrough } from './admin-log.ts';
import { deadLetterCounts } from '../control/dead-letters.ts';
import { conflictsByResolution, conflictsDue, openConflictsBefore } from '../control/conflicts.ts';
import type { PublishedCheckpoint } from './audit-service.ts';
import { logIds, verifyLog, verifyLogs } from './verify.ts';

/**
 * The compliance report (issue 5): what the audit log holds for a period, for an auditor.
 * Counts of audited changes by entity, operation, source node and day; conflicts and how
 * each was resolved; dead letters; the integrity verdict of a full verification against
 * the pinned keys; the signing keys used; and the retention status. Rendered as JSON,
 * Markdown or HTML (with inline SVG charts, no external assets).
 */
export interface ReportOptions {
  group: string;
  from: Date;
  to: Date;
  /** null: verification not run (no pinned keys given), and the report says so */
  pinned: Map<string, string> | null;
  published: PublishedCheckpoint[] | null;
  publishedError?: string;
  /** The witness's verifier key: its cosignatures are checked, not only counted. */
  witness?: Verifier;
  retentionDays: number;
  conflictRetentionDays: number;
}

export interface Count { key: string; count: number }

export interface ComplianceReport {
  group: string;
  from: string;
  to: string;
  generated_at: string;
  changes: {
    total: number;
    by_entity: Count[];
    by_op: Count[];
    by_node: Count[];
    by_day: Count[];
    rows: Array<{ day: string; entity: string; op: string; source_node: string; count: number }>;
  };
  leaves_by_kind: Count[];
  conflicts: {
    audited: number;
    by_resolution: Array<{ entity: string; strategy: string; resolution: string; resolved_by: string | null; state: string; count: number }>;
    open: Array<{ id: number; entity: string; record_key: string; detected_at: string }>;
  };
  dead_letters: Array<{ reason: string; status: string; count: number }>;
  integrity: {
    verdict: 'intact' | 'damaged' | 'not verified';
    detail: string;
    logs: number;
    rows: number;
    damaged: Array<{ log_id: string; seq: number; kind: string; detail: string }>;
    published_checkpoints: number | null;
  };
  /** Per log: its newest signed size, the newest the witness cosigned, and (with its key) up to which size the cosignatures verify. */
  witness: { key_given: boolean; logs: Array<{ log_id: string; signed_size: number; cosigned_size: number | null; verified_through: number | null; last_cosigned_at: string | null }> };
  keys: Array<{ key_id: string; checkpoints: number; first_signed: string; last_signed: string; pinned: boolean | null; created_at: string | null; retired_at: string | null }>;
  retention: {
    policy: { audit_payload_days: number; resolved_conflict_days: number };
    pruned: Array<{ log_id: string; through_seq: number }>;
    prunes: Array<{ at: string; actor: string | null; archive: string; before: string; rows: number; conflicts: number }>;
    oldest_payload_at: string | null;
    rows_due: number;
    conflicts_due: number;
  };
}

function totals(rows: Array<Record<string, unknown> & { count: number }>, field: string): Count[] {
  const m = new Map<string, number>();
  for (const r of rows) m.set(String(r[field]), (m.get(String(r[field])) ?? 0) + r.count);
  return [...m].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
}

export async function buildReport(db: pg.ClientBase, o: ReportOptions): Promise<ComplianceReport> {
  const win = [groupLogRegex(o.group), o.from, o.to];
  const { rows: changeRows } = await db.query<{ day: string; entity: string; op: string; source_node: string; count: number }>(
    `SELECT to_char(executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, COALESCE(entity, '') AS entity, COALESCE(op, '') AS op,
            COALESCE(source_node, '') AS source_node, count(*)::int AS count
     FROM audit_log WHERE log_id ~ $1 AND executed_at >= $2 AND executed_at < $3 AND kind = 'change'
     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, win);
  const { rows: kinds } = await db.query<{ key: string; count: number }>(
    `SELECT kind AS key, count(*)::int AS count FROM audit_log WHERE log_id ~ $1 AND executed_at >= $2 AND executed_at < $3 GROUP BY 1 ORDER BY 1`, win);
  const resolutions = await conflictsByResolution<ComplianceReport['conflicts']['by_resolution'][number]>(db, o.group, o.from, o.to);
  const open = await openConflictsBefore(db, o.group, o.to);
  const dead = await deadLetterCounts(db, o.group, o.from, o.to);
  // every key that signed the group's checkpoints: a checkpoint signed after the period
  // began covers its rows, so keys are listed with all their checkpoints
  const { rows: keys } = await db.query<{ key_id: string; checkpoints: number; first_signed: Date; last_signed: Date; created_at: Date | null; retired_at: Date | null }>(
    `SELECT c.key_id, count(*)::int AS checkpoints, min(c.signed_at) AS first_signed, max(c.signed_at) AS last_signed, k.created_at, k.retired_at
     FROM audit_checkpoints c LEFT JOIN audit_keys k ON k.key_id = c.key_id
     WHERE c.log_id ~ $1 GROUP BY c.key_id, k.created_at, k.retired_at ORDER BY 3`, [groupLogRegex(o.group)]);

  // retention: how far each log was pruned, by the admin log's verified prune records
  const reports = o.pinned === null ? null : await verifyLogs(db, await logIds(db, o.group, o.published ?? []), o.pinned, o.published ?? [], undefined, o.witness);
  const { rows: witnessed } = await db.query<{ log_id: string; signed: string; cosigned: string | null; last: Date | null }>(
    `SELECT log_id, max(tree_size) AS signed, max(tree_size) FILTER (WHERE cosignatures IS NOT NULL) AS cosigned, max(witnessed_at) AS last
     FROM audit_checkpoints WHERE log_id ~ $1 GROUP BY log_id ORDER BY log_id`, [groupLogRegex(o.group)]);
  const witnessedThrough = new Map((reports ?? []).map((r) => [r.log_id, r.witnessed_through ?? null]));
  const admin = await verifyLog(db, adminLogId(o.group), o.pinned ?? new Map(), []);
  const pruned = await prunedThrough(db, o.group, o.pinned === null ? Number.MAX_SAFE_INTEGER : admin.verified_through);
  const { rows: prunes } = await db.query<{ executed_at: Date; actor: string | null; writes: { archive: string; before: string; logs: Array<{ from_seq: number; to_seq: number }>; conflicts: { count: number } } }>(
    `SELECT executed_at, actor, writes FROM audit_log WHERE log_id = $1 AND kind = 'admin' AND op = 'prune' ORDER BY seq`, [adminLogId(o.group)]);
  const { rows: oldest } = await db.query<{ at: Date | null; due: number }>(
    `SELECT min(executed_at) AS at, count(*) FILTER (WHERE executed_at < now() - make_interval(days => $2))::int AS due
     FROM audit_log WHERE log_id ~ $1 AND log_id <> $3 AND writes IS NOT NULL`, [groupLogRegex(o.group), o.retentionDays, adminLogId(o.group)]);
  const conflictsDueN = await conflictsDue(db, o.group, o.conflictRetentionDays);

  // integrity: a full verification of the group's logs, as `audit verify` does it
  let integrity: ComplianceReport['integrity'];
  if (reports === null) {
    integrity = { verdict: 'not verified', detail: 'no pinned keys were given (--keys or AUDIT_PINNED_KEYS_FILE); nothing is claimed about integrity', logs: 0, rows: 0, damaged: [], published_checkpoints: null };
  } else {
    const published = o.published ?? [];
    const damaged = reports.filter((r) => r.damage).map((r) => ({ log_id: r.log_id, ...r.damage! }));
    integrity = {
      verdict: damaged.length === 0 ? 'intact' : 'damaged',
      detail: `${reports.length} logs verified against ${o.pinned?.size ?? 0} pinned key(s)`
        + (o.published === null ? `; published checkpoints not compared${o.publishedError ? ` (${o.publishedError})` : ''}` : `; ${published.length} published checkpoints compared`),
      logs: reports.length, rows: reports.reduce((s, r) => s + r.rows, 0), damaged, published_checkpoints: o.published === null ? null : published.length,
    };
  }

  return {
    group: o.group, from: o.from.toISOString(), to: o.to.toISOString(), generated_at: new Date().toISOString(),
    changes: {
      total: changeRows.reduce((s, r) => s + r.count, 0),
      by_entity: totals(changeRows, 'entity'), by_op: totals(changeRows, 'op'), by_node: totals(changeRows, 'source_node'),
      by_day: totals(changeRows, 'day').sort((a, b) => a.key.localeCompare(b.key)),
      rows: changeRows,
    },
    leaves_by_kind: kinds,
    conflicts: {
      audited: kinds.find((k) => k.key === 'conflict')?.count ?? 0,
      by_resolution: resolutions,
      open: open.map((c) => ({ id: Number(c.id), entity: c.entity, record_key: c.record_key, detected_at: c.detected_at.toISOString() })),
    },
    dead_letters: dead,
    integrity,
    witness: {
      // checked only where a verification ran (pinned keys given) with the witness's key
      key_given: o.witness !== undefined && reports !== null,
      logs: witnessed.map((w) => ({
        log_id: w.log_id, signed_size: Number(w.signed), cosigned_size: w.cosigned === null ? null : Number(w.cosigned),
        verified_through: witnessedThrough.get(w.log_id) ?? null, last_cosigned_at: w.last?.toISOString() ?? null,
      })),
    },
    keys: keys.map((k) => ({
      key_id: k.key_id, checkpoints: k.checkpoints, first_signed: k.first_signed.toISOString(), last_signed: k.last_signed.toISOString(),
      pinned: o.pinned === null ? null : o.pinned.has(k.key_id), created_at: k.created_at?.toISOString() ?? null, retired_at: k.retired_at?.toISOString() ?? null,
    })),
    retention: {
      policy: { audit_payload_days: o.retentionDays, resolved_conflict_days: o.conflictRetentionDays },
      pruned: [...pruned].map(([log_id, through]) => ({ log_id, through_seq: through })).sort((a, b) => a.log_id.localeCompare(b.log_id)),
      prunes: prunes.map((p) => ({
        at: p.executed_at.toISOString(), actor: p.actor, archive: p.writes.archive, before: p.writes.before,
        rows: p.writes.logs.reduce((s, l) => s + l.to_seq - l.from_seq + 1, 0), conflicts: p.writes.conflicts.count,
      })),
      oldest_payload_at: oldest[0]?.at?.toISOString() ?? null,
      rows_due: oldest[0]?.due ?? 0,
      conflicts_due: conflictsDueN,
    },
  };
}

// ---------------------------------------------------------------------------- rendering

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]!));
const mdCell = (s: unknown) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

function mdTable(head: string[], rows: unknown[][]): string {
  if (rows.length === 0) return '_none_\n';
  return `| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n${rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`).join('\n')}\n`;
}

function verdictLine(r: ComplianceReport): string {
  const i = r.integrity;
  return `**${i.verdict.toUpperCase()}**: ${i.detail}${i.verdict === 'not verified' ? '' : `; ${i.rows} rows in ${i.logs} logs`}.`;
}

export function renderMarkdown(r: ComplianceReport): string {
  const c = r.changes;
  return [
    `# worker-sync compliance report: ${r.group}`,
    '',
    `Period: ${r.from} to ${r.to} (executed_at, UTC; the end is exclusive). Generated ${r.generated_at}.`,
    '',
    '## Integrity',
    '',
    verdictLine(r),
    '',
    mdTable(['log', 'first bad seq', 'kind', 'detail'], r.integrity.damaged.map((d) => [d.log_id, d.seq, d.kind, d.detail])),
    `## Audited changes: ${c.total}`,
    '',
    '### By entity', '', mdTable(['entity', 'changes'], c.by_entity.map((x) => [x.key, x.count])),
    '### By operation', '', mdTable(['op', 'changes'], c.by_op.map((x) => [x.key, x.count])),
    '### By source node', '', mdTable(['node', 'changes'], c.by_node.map((x) => [x.key, x.count])),
    '### By day', '', mdTable(['day', 'changes'], c.by_day.map((x) => [x.key, x.count])),
    '### All leaves by kind', '', mdTable(['kind', 'rows'], r.leaves_by_kind.map((x) => [x.key, x.count])),
    `## Conflicts: ${r.conflicts.audited} audited`,
    '',
    mdTable(['entity', 'policy', 'resolution', 'resolved by', 'state', 'count'], r.conflicts.by_resolution.map((x) => [x.entity, x.strategy, x.resolution, x.resolved_by ?? '', x.state, x.count])),
    '### Open (awaiting an operator)', '',
    mdTable(['id', 'entity', 'record', 'detected'], r.conflicts.open.map((x) => [x.id, x.entity, x.record_key, x.detected_at])),
    '## Witness',
    '',
    r.witness.logs.some((w) => w.cosigned_size !== null)
      ? (r.witness.key_given ? 'Cosignatures checked against the witness key given.' : 'No witness key was given: cosignatures are counted, not checked.')
      : 'No checkpoint of this group carries a witness cosignature (AUDIT_WITNESS_URL unset, or the witness has not answered).',
    '',
    mdTable(['log', 'newest signed size', 'newest cosigned size', 'cosignatures verified through', 'last cosigned'],
      r.witness.logs.map((w) => [w.log_id, w.signed_size, w.cosigned_size ?? 'none', w.verified_through ?? (r.witness.key_given ? 0 : 'not checked'), w.last_cosigned_at ?? ''])),
    '## Dead letters',
    '',
    mdTable(['reason', 'status', 'count'], r.dead_letters.map((x) => [x.reason, x.status, x.count])),
    '## Signing keys',
    '',
    mdTable(['key id', 'checkpoints', 'first signed', 'last signed', 'pinned', 'retired'], r.keys.map((k) => [k.key_id, k.checkpoints, k.first_signed, k.last_signed, k.pinned === null ? 'not checked' : k.pinned ? 'yes' : '**no**', k.retired_at ?? ''])),
    '## Retention',
    '',
    `Policy: payloads ${r.retention.policy.audit_payload_days} days, resolved conflicts ${r.retention.policy.resolved_conflict_days} days (\`worker-sync audit prune\`).`,
    `Oldest row still holding its payload: ${r.retention.oldest_payload_at ?? 'none'}. Rows past the policy, not yet pruned: ${r.retention.rows_due}. Resolved conflicts past the policy: ${r.retention.conflicts_due}.`,
    '',
    mdTable(['pruned at', 'by', 'archive', 'cut-off', 'rows', 'conflicts'], r.retention.prunes.map((p) => [p.at, p.actor ?? '', p.archive, p.before, p.rows, p.conflicts])),
    mdTable(['log', 'payloads pruned through seq'], r.retention.pruned.map((p) => [p.log_id, p.through_seq])),
  ].join('\n');
}

/** A horizontal bar chart as inline SVG. */
function barChart(title: string, data: Count[]): string {
  if (data.length === 0) return `<p><em>${esc(title)}: none</em></p>`;
  const max = Math.max(...data.map((d) => d.count));
  const rowH = 22;
  const labelW = 160;
  const barW = 420;
  const h = data.length * rowH + 30;
  const bars = data.map((d, i) => {
    const y = 24 + i * rowH;
    const w = Math.max(1, Math.round((d.count / max) * barW));
    return `<text x="${labelW - 6}" y="${y + 14}" text-anchor="end">${esc(d.key)}</text>`
      + `<rect x="${labelW}" y="${y}" width="${w}" height="${rowH - 6}" fill="#3b6ea5"><title>${esc(d.key)}: ${d.count}</title></rect>`
      + `<text x="${labelW + w + 6}" y="${y + 14}">${d.count}</text>`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${esc(title)}" width="${labelW + barW + 80}" height="${h}" font-family="sans-serif" font-size="12">`
    + `<text x="0" y="14" font-weight="bold">${esc(title)}</text>${bars}</svg>`;
}

function htmlTable(head: string[], rows: unknown[][]): string {
  if (rows.length === 0) return '<p><em>none</em></p>';
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c ?? '')}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

export function renderHtml(r: ComplianceReport): string {
  const c = r.changes;
  const colour = r.integrity.verdict === 'intact' ? '#1a7f37' : r.integrity.verdict === 'damaged' ? '#cf222e' : '#9a6700';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>worker-sync compliance report: ${esc(r.group)}</title>
<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#1f2328}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}.verdict{font-size:1.3em;font-weight:bold;color:${colour}}</style></head>
<body>
<h1>worker-sync compliance report: ${esc(r.group)}</h1>
<p>Period: ${esc(r.from)} to ${esc(r.to)} (executed_at, UTC; the end is exclusive). Generated ${esc(r.generated_at)}.</p>
<h2>Integrity</h2>
<p class="verdict">${esc(r.integrity.verdict.toUpperCase())}</p><p>${esc(r.integrity.detail)}${r.integrity.verdict === 'not verified' ? '' : `; ${r.integrity.rows} rows in ${r.integrity.logs} logs`}.</p>
${htmlTable(['log', 'first bad seq', 'kind', 'detail'], r.integrity.damaged.map((d) => [d.log_id, d.seq, d.kind, d.detail]))}
<h2>Audited changes: ${c.total}</h2>
${barChart('Changes per day', c.by_day)}
${barChart('Changes by entity', c.by_entity)}
${barChart('Changes by operation', c.by_op)}
${barChart('Changes by source node', c.by_node)}
${htmlTable(['day', 'entity', 'op', 'source node', 'changes'], c.rows.map((x) => [x.day, x.entity, x.op, x.source_node, x.count]))}
<h3>All leaves by kind</h3>
${htmlTable(['kind', 'rows'], r.leaves_by_kind.map((x) => [x.key, x.count]))}
<h2>Conflicts: ${r.conflicts.audited} audited</h2>
${barChart('Conflicts by resolution', totals(r.conflicts.by_resolution.map((x) => ({ ...x, key: `${x.strategy} → ${x.resolution}` })), 'key'))}
${htmlTable(['entity', 'policy', 'resolution', 'resolved by', 'state', 'count'], r.conflicts.by_resolution.map((x) => [x.entity, x.strategy, x.resolution, x.resolved_by ?? '', x.state, x.count]))}
<h3>Open (awaiting an operator)</h3>
${htmlTable(['id', 'entity', 'record', 'detected'], r.conflicts.open.map((x) => [x.id, x.entity, x.record_key, x.detected_at]))}
<h2>Witness</h2>
${htmlTable(['log', 'newest signed size', 'newest cosigned size', 'cosignatures verified through', 'last cosigned'],
    r.witness.logs.map((w) => [w.log_id, w.signed_size, w.cosigned_size ?? 'none', w.verified_through ?? (r.witness.key_given ? 0 : 'not checked'), w.last_cosigned_at ?? '']))}
<h2>Dead letters</h2>
${htmlTable(['reason', 'status', 'count'], r.dead_letters.map((x) => [x.reason, x.status, x.count]))}
<h2>Signing keys</h2>
${htmlTable(['key id', 'checkpoints', 'first signed', 'last signed', 'pinned', 'retired'], r.keys.map((k) => [k.key_id, k.checkpoints, k.first_signed, k.last_signed, k.pinned === null ? 'not checked' : k.pinned ? 'yes' : 'NO', k.retired_at ?? '']))}
<h2>Retention</h2>
<p>Policy: payloads ${r.retention.policy.audit_payload_days} days, resolved conflicts ${r.retention.policy.resolved_conflict_days} days (<code>worker-sync audit prune</code>).
Oldest row still holding its payload: ${esc(r.retention.oldest_payload_at ?? 'none')}. Rows past the policy, not yet pruned: ${r.retention.rows_due}. Resolved conflicts past the policy: ${r.retention.conflicts_due}.</p>
${htmlTable(['pruned at', 'by', 'archive', 'cut-off', 'rows', 'conflicts'], r.retention.prunes.map((p) => [p.at, p.actor ?? '', p.archive, p.before, p.rows, p.conflicts]))}
${htmlTable(['log', 'payloads pruned through seq'], r.retention.pruned.map((p) => [p.log_id, p.through_seq]))}
</body></html>
`;
}
