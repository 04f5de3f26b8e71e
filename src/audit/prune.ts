import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type pg from 'pg';
import { AdminLog, adminLogId, groupLogRegex, type PrunedLog } from './admin-log.ts';
import { conflictsAsJson, deleteConflicts, prunableConflicts } from '../control/conflicts.ts';
import { decodeFields, leafOfTexts, META_FIELD_NAMES, PAYLOAD_FIELD_NAMES, streamLeafRows } from './leaf.ts';
import { verifyCheckpoint } from './signing.ts';
import { appendOne, emptyFrontier, rootOf } from './merkle.ts';
import { logIds, rowLeaf, verifyLog, verifyLogs, type LogReport } from './verify.ts';

/**
 * Retention of the signed audit log (DESIGN §7, issue 5). A prune never deletes an audit
 * row: it archives the payloads (before, after, writes) of rows older than the cut-off,
 * then clears them, keeping every row's metadata, payload hash and leaf hash, and every
 * checkpoint, so the whole log still verifies and every row still has its proof. Resolved
 * and converged conflicts older than their own cut-off are archived and deleted (their
 * audit trail is the `conflict` and `resolve` leaves, which stay).
 *
 * In order:
 *  1. each log is pruned through its largest signed checkpoint whose rows are all older
 *     than the cut-off, and is verified first: damage found stops the prune, since
 *     clearing a tampered payload would destroy the evidence;
 *  2. the archive is written: gzip NDJSON of the rows (texts exactly as hashed, so every
 *     leaf can be recomputed from the archive alone) and of the conflicts, and a manifest
 *     with each log's range, the Merkle frontier before it and the signed checkpoint at
 *     its end, and each file's SHA-256;
 *  3. one transaction clears the payloads, deletes the conflicts and appends the prune to
 *     the admin log as an `admin` leaf naming the archive and its manifest's hash.
 */
export interface PruneOptions {
  group: string;
  before: Date;
  conflictsBefore: Date;
  archiveDir: string;
  actor: string;
  pinned: Map<string, string>;
  dryRun?: boolean;
  progress?: (what: string, done: number, total: number) => void;
}

export interface ManifestLog extends PrunedLog {
  rows: number;
  frontier_before: string[];
  checkpoint: { tree_size: number; root: string; prev_hash: string | null; signed_at: string; key_id: string; signature: string };
}

export interface Manifest {
  format: 1;
  leaf_format: 2;
  group: string;
  created_at: string;
  actor: string;
  before: string;
  conflicts_before: string;
  files: Array<{ name: string; rows: number; bytes: number; sha256: string }>;
  logs: ManifestLog[];
  conflicts: { count: number; first_id: number | null; last_id: number | null };
}

export interface PruneResult {
  archive: string | null;
  manifest_sha256: string | null;
  admin_seq: number | null;
  logs: Array<{ log_id: string; from_seq: number; to_seq: number; rows: number }>;
  conflicts: number;
  damaged: LogReport[];
  dry_run: boolean;
}

/** `90d`, `12h`, `30m`, `45s` before now, or an ISO-8601 instant. */
export function parseCutoff(text: string, now = Date.now()): Date {
  const m = /^(\d+)([dhms])$/.exec(text.trim());
  if (m) return new Date(now - Number(m[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's']);
  const t = Date.parse(text);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(text)) throw new Error(`"${text}" is neither a duration like 90d, 12h, 30m, 45s nor an ISO-8601 date`);
  return new Date(t);
}

/** The logs of the group (not its admin log) and how far each can be pruned now. */
async function plan(db: pg.ClientBase, o: PruneOptions, done: Map<string, number>): Promise<Array<{ logId: string; from: number; to: number; treeSize: number }>> {
  const { rows } = await db.query<{ log_id: string; tree_size: string; to_seq: string | null }>(
    `SELECT l.log_id, l.tree_size,
       (SELECT max(c.tree_size) FROM audit_checkpoints c WHERE c.log_id = l.log_id
          AND c.tree_size <= COALESCE((SELECT min(a.seq) - 1 FROM audit_log a WHERE a.log_id = l.log_id AND a.executed_at >= $2), l.tree_size)) AS to_seq
     FROM audit_logs l WHERE l.log_id ~ $1 AND l.log_id <> $3 ORDER BY l.log_id`,
    [groupLogRegex(o.group), o.before, `${o.group}:admin`]);
  return rows
    .map((r) => ({ logId: r.log_id, from: (done.get(r.log_id) ?? 0) + 1, to: Number(r.to_seq ?? 0), treeSize: Number(r.tree_size) }))
    .filter((p) => p.to >= p.from);
}

const hex = (b: Buffer | null) => b?.toString('hex') ?? null;

export async function prune(pool: pg.Pool, admin: AdminLog, o: PruneOptions): Promise<PruneResult> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    // 1. verify the whole group (admin log first) in one snapshot: a damaged log is not
    //    pruned, since clearing a tampered payload would destroy the evidence
    const ids = await logIds(client, o.group, []);
    const total = (await client.query<{ n: string }>('SELECT COALESCE(sum(tree_size), 0) AS n FROM audit_logs WHERE log_id = ANY($1)', [ids])).rows[0]!.n;
    let verified = 0;
    const reports = await verifyLogs(client, ids, o.pinned, [], (n) => o.progress?.('verify', verified += n, Number(total)));
    const done = new Map(reports.filter((r) => r.pruned).map((r) => [r.log_id, r.pruned!.to]));
    const todo = await plan(client, o, done);
    const conflictIds = await prunableConflicts(client, o.group, o.conflictsBefore);
    const result: PruneResult = {
      archive: null, manifest_sha256: null, admin_seq: null, logs: [], conflicts: conflictIds.length, damaged: reports.filter((r) => r.damage), dry_run: o.dryRun === true,
    };
    if (result.damaged.length > 0 || (todo.length === 0 && conflictIds.length === 0)) return result;

    // 2. the archive
    const created = new Date();
    const name = `audit-archive-${o.group.replace(/[^A-Za-z0-9._-]/g, '_')}-${created.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    const dir = path.join(o.archiveDir, name);
    const manifest: Manifest = {
      format: 1, leaf_format: 2, group: o.group, created_at: created.toISOString(), actor: o.actor, before: o.before.toISOString(),
      conflicts_before: o.conflictsBefore.toISOString(), files: [], logs: [],
      conflicts: { count: conflictIds.length, first_id: conflictIds[0] ?? null, last_id: conflictIds.at(-1) ?? null },
    };
    if (o.dryRun) {
      result.logs = todo.map((t) => ({ log_id: t.logId, from_seq: t.from, to_seq: t.to, rows: t.to - t.from + 1 }));
      return result;
    }
    mkdirSync(dir, { recursive: true });
    let phase: 'archive' | 'transaction' | 'commit' = 'archive';
    try {
      const archived = await writeArchive(client, dir, todo, conflictIds, manifest, o);
      manifest.files = archived;
      const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
      writeFileSync(path.join(dir, 'manifest.json'), manifestText);
      const manifestHash = createHash('sha256').update(manifestText).digest('hex');
      syncAll(dir, [...archived.map((f) => f.name), 'manifest.json']); // on disk before anything is cleared

      // 3. clear, delete, record: one transaction
      phase = 'transaction';
      await client.query('BEGIN');
      for (const l of manifest.logs) {
        await client.query('UPDATE audit_log SET before = NULL, after = NULL, writes = NULL WHERE log_id = $1 AND seq BETWEEN $2 AND $3', [l.log_id, l.from_seq, l.to_seq]);
      }
      await deleteConflicts(client, conflictIds);
      result.admin_seq = await admin.append(client, {
        op: 'prune', actor: o.actor, eventId: `prune/${name}`,
        details: {
          archive: name, manifest_sha256: manifestHash, before: manifest.before, conflicts_before: manifest.conflicts_before,
          logs: manifest.logs.map((l): PrunedLog => ({ log_id: l.log_id, from_seq: l.from_seq, to_seq: l.to_seq, root: l.root })),
          conflicts: manifest.conflicts,
        },
      });
      phase = 'commit';
      await client.query('COMMIT');
      result.archive = dir;
      result.manifest_sha256 = manifestHash;
      result.logs = manifest.logs.map((l) => ({ log_id: l.log_id, from_seq: l.from_seq, to_seq: l.to_seq, rows: l.rows }));
      return result;
    } catch (err) {
      broken = err as Error; // the connection may be mid-COPY or mid-commit: it is not reused
      if (phase === 'commit') {
        // the commit may have landed: the archive may be the only copy of the payloads
        throw new Error(`the prune's commit failed (${(err as Error).message}); it may have landed. The archive is kept at ${dir}: `
          + `if ${o.group}:admin holds event prune/${name}, the payloads were cleared and the archive is needed; otherwise delete it and run prune again`);
      }
      if (phase === 'transaction') await client.query('ROLLBACK').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true }); // nothing was cleared: an archive of nothing would mislead
      throw err;
    }
  } finally {
    client.release(broken);
  }
}

/** fsyncs the files and their directory. */
function syncAll(dir: string, names: string[]): void {
  for (const n of [...names.map((x) => path.join(dir, x)), dir]) {
    const fd = openSync(n, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** A gzip NDJSON file written as rows arrive, with backpressure. */
class NdjsonGz {
  private readonly gz = createGzip();
  private readonly done: Promise<void>;
  rows = 0;

  constructor(readonly file: string) {
    this.done = pipeline(this.gz, createWriteStream(file));
  }

  /** Writes lines; resolves when the stream can take more. */
  write(lines: string[]): Promise<void> | undefined {
    this.rows += lines.length;
    return this.gz.write(lines.length === 0 ? '' : `${lines.join('\n')}\n`) ? undefined : once(this.gz, 'drain').then(() => undefined);
  }

  async close(): Promise<Manifest['files'][number]> {
    this.gz.end();
    await this.done;
    const bytes = readFileSync(this.file);
    return { name: path.basename(this.file), rows: this.rows, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }
}

/** Writes audit_log.ndjson.gz and sync_conflicts.ndjson.gz; fills manifest.logs; returns the files. */
async function writeArchive(client: pg.PoolClient, dir: string, todo: Awaited<ReturnType<typeof plan>>, conflictIds: number[], manifest: Manifest, o: PruneOptions): Promise<Manifest['files']> {
  const total = todo.reduce((s, t) => s + t.to, 0);
  let done = 0;
  const audit = new NdjsonGz(path.join(dir, 'audit_log.ndjson.gz'));
  for (const t of todo) {
    const f = emptyFrontier();
    let frontierBefore: string[] = [];
    await streamLeafRows(client, t.logId, 1, t.to, (rows) => {
      const lines: string[] = [];
      for (const r of rows) {
        if (r.seq === t.from) frontierBefore = f.roots.map((h) => h.toString('hex'));
        appendOne(f, Buffer.from(r.storedLeaf ?? Buffer.alloc(32)));
        if (r.seq < t.from) continue;
        // the payload leaves the table only as it was signed: recheck it now, after the verify
        if (!r.storedLeaf || !rowLeaf(r, t.from - 1).leaf.equals(r.storedLeaf)) throw new Error(`${t.logId}: the row at seq ${r.seq} changed since it was verified; nothing pruned, run audit verify`);
        const meta = decodeFields(r.meta, META_FIELD_NAMES.length);
        const payload = r.payload ? decodeFields(r.payload, PAYLOAD_FIELD_NAMES.length) : [null, null, null];
        lines.push(JSON.stringify({
          log_id: t.logId, seq: r.seq,
          fields: Object.fromEntries(META_FIELD_NAMES.map((n, i) => [n, meta[i]])),
          payload: Object.fromEntries(PAYLOAD_FIELD_NAMES.map((n, i) => [n, payload[i]])),
          payload_hash: hex(r.storedPayload), leaf_hash: hex(r.storedLeaf),
        }));
      }
      o.progress?.('archive', done += rows.length, total);
      return audit.write(lines);
    });
    const { rows: cps } = await client.query<{ tree_size: string; root: Buffer; prev_hash: Buffer | null; signed_at: Date; key_id: string; signature: Buffer }>(
      'SELECT tree_size, root, prev_hash, signed_at, key_id, signature FROM audit_checkpoints WHERE log_id = $1 AND tree_size = $2', [t.logId, t.to]);
    const cp = cps[0]!;
    if (f.size !== t.to || !rootOf(f).equals(cp.root)) throw new Error(`${t.logId}: the leaves through seq ${t.to} do not hash to the checkpoint's root; run audit verify`);
    manifest.logs.push({
      log_id: t.logId, from_seq: t.from, to_seq: t.to, root: cp.root.toString('hex'), rows: t.to - t.from + 1, frontier_before: frontierBefore,
      checkpoint: { tree_size: t.to, root: cp.root.toString('hex'), prev_hash: hex(cp.prev_hash), signed_at: cp.signed_at.toISOString(), key_id: cp.key_id, signature: cp.signature.toString('hex') },
    });
  }
  const files = [await audit.close()];
  const conflicts = new NdjsonGz(path.join(dir, 'sync_conflicts.ndjson.gz'));
  for (let i = 0; i < conflictIds.length; i += 1000) {
    await conflicts.write(await conflictsAsJson(client, conflictIds.slice(i, i + 1000)));
  }
  files.push(await conflicts.close());
  return files;
}

export interface ArchiveReport {
  ok: boolean;
  archive: string;
  /** whether the manifest is the one the signed prune record names (checked against the database's admin log) */
  manifest: { authenticated: boolean; detail: string };
  files: Array<{ name: string; ok: boolean; detail?: string }>;
  logs: Array<{ log_id: string; from_seq: number; to_seq: number; ok: boolean; detail?: string }>;
}

/**
 * Checks an archive on its own, without the database: each file's SHA-256 against the
 * manifest; each archived row's payload and leaf hash recomputed from its texts; per log,
 * the frontier before the range plus the recomputed leaves must give the root of the
 * checkpoint at the range's end, whose signature must verify with a pinned key.
 */
export async function verifyArchive(dir: string, pinned: Map<string, string>, db: pg.ClientBase | null): Promise<ArchiveReport> {
  const manifestText = readFileSync(path.join(dir, 'manifest.json'));
  const manifest = JSON.parse(manifestText.toString('utf8')) as Manifest;
  const report: ArchiveReport = { ok: true, archive: dir, manifest: await authenticate(db, manifest, manifestText, path.basename(path.resolve(dir)), pinned), files: [], logs: [] };
  for (const f of manifest.files) {
    if (!/^[A-Za-z0-9._-]+$/.test(f.name) || f.name.startsWith('.')) {
      report.files.push({ name: f.name, ok: false, detail: 'not a plain file name in the archive' });
      continue;
    }
    const bytes = readFileSync(path.join(dir, f.name));
    const ok = createHash('sha256').update(bytes).digest('hex') === f.sha256;
    report.files.push(ok ? { name: f.name, ok } : { name: f.name, ok, detail: 'its SHA-256 differs from the manifest' });
  }
  const byLog = new Map(manifest.logs.map((l) => [l.log_id, { l, f: { size: l.from_seq - 1, roots: l.frontier_before.map((h) => Buffer.from(h, 'hex')) }, bad: undefined as string | undefined }]));
  const lines = createInterface({ input: createReadStream(path.join(dir, 'audit_log.ndjson.gz')).pipe(createGunzip()), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line === '') continue;
    const r = JSON.parse(line) as { log_id: string; seq: number; fields: Record<string, string | null>; payload: Record<string, string | null>; payload_hash: string; leaf_hash: string };
    const s = byLog.get(r.log_id);
    if (!s) {
      report.ok = false;
      report.logs.push({ log_id: r.log_id, from_seq: r.seq, to_seq: r.seq, ok: false, detail: 'rows of a log the manifest does not list' });
      continue;
    }
    if (s.bad) continue;
    if (r.seq !== s.f.size + 1) {
      s.bad = `seq ${r.seq} follows ${s.f.size}`;
      continue;
    }
    const payload = PAYLOAD_FIELD_NAMES.map((n) => r.payload[n] ?? null);
    const meta = META_FIELD_NAMES.map((n) => r.fields[n] ?? null);
    const leaf = payload.every((p) => p === null) && r.payload_hash ? leafOfTexts(meta, Buffer.from(r.payload_hash, 'hex')) : leafOfTexts(meta, payload);
    if (leaf.toString('hex') !== r.leaf_hash) {
      s.bad = `the row at seq ${r.seq} does not hash to its leaf`;
      continue;
    }
    appendOne(s.f, leaf);
  }
  for (const { l, f, bad } of byLog.values()) {
    let detail = bad;
    const cp = l.checkpoint;
    const key = pinned.get(cp.key_id);
    if (!detail && f.size !== l.to_seq) detail = `the archive holds rows through seq ${f.size}, the manifest says ${l.to_seq}`;
    if (!detail && rootOf(f).toString('hex') !== cp.root) detail = `the archived rows do not hash to the root signed at tree size ${cp.tree_size}`;
    if (!detail && !key) detail = `the checkpoint is signed by key ${cp.key_id}, which is not pinned`;
    if (!detail && !verifyCheckpoint(key!, { logId: l.log_id, treeSize: cp.tree_size, root: Buffer.from(cp.root, 'hex'), prevHash: cp.prev_hash === null ? null : Buffer.from(cp.prev_hash, 'hex'), signedAt: cp.signed_at, keyId: cp.key_id }, Buffer.from(cp.signature, 'hex'))) {
      detail = `the checkpoint's signature does not verify with key ${cp.key_id}`;
    }
    report.logs.push(detail ? { log_id: l.log_id, from_seq: l.from_seq, to_seq: l.to_seq, ok: false, detail } : { log_id: l.log_id, from_seq: l.from_seq, to_seq: l.to_seq, ok: true });
  }
  report.ok = (report.manifest.authenticated || db === null) && report.files.every((f) => f.ok) && report.logs.every((l) => l.ok);
  return report;
}

/**
 * The manifest is only the archive's word: it is authenticated by the prune record that
 * names it in the group's admin log, covered by a verified checkpoint there.
 */
async function authenticate(db: pg.ClientBase | null, manifest: Manifest, text: Buffer, name: string, pinned: Map<string, string>): Promise<ArchiveReport['manifest']> {
  if (db === null) return { authenticated: false, detail: 'not checked (--offline): the manifest\'s own hashes are trusted' };
  const admin = await verifyLog(db, adminLogId(manifest.group), pinned, []);
  const { rows } = await db.query<{ seq: string; sha: string | null }>(
    `SELECT seq, writes->>'manifest_sha256' AS sha FROM audit_log WHERE log_id = $1 AND event_id = $2 AND kind = 'admin' AND op = 'prune'`,
    [adminLogId(manifest.group), `prune/${name}`]);
  const rec = rows[0];
  if (!rec) return { authenticated: false, detail: `no prune record prune/${name} in ${adminLogId(manifest.group)}` };
  if (Number(rec.seq) > admin.verified_through) return { authenticated: false, detail: `the prune record at seq ${rec.seq} of ${adminLogId(manifest.group)} is not covered by a verified checkpoint` };
  const sha = createHash('sha256').update(text).digest('hex');
  return sha === rec.sha
    ? { authenticated: true, detail: `matches the signed prune record at seq ${rec.seq} of ${adminLogId(manifest.group)}` }
    : { authenticated: false, detail: `its SHA-256 ${sha} is not the ${rec.sha} the signed prune record names` };
}
