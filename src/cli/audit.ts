import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import pgCopy from 'pg-copy-streams';
import path from 'node:path';
import pg from 'pg';
import Kafka from 'node-rdkafka';
import { PROJECT_ROOT } from '../config/env.ts';
import { errorMessage } from '../errors.ts';
import { groupOf, logIds, rowLeaf, verifyLog, verifyLogs } from '../audit/verify.ts';
import type { PublishedCheckpoint } from '../audit/audit-service.ts';
import { LEAF_SESSION_SQL, streamLeafRows, type LeafRow } from '../audit/leaf.ts';
import { buildReport, renderHtml, renderMarkdown } from '../audit/report.ts';
import { parseVerifierKey, type Verifier } from '../audit/note.ts';
import { consistencyProof, inclusionProof, treeRoot, verifyConsistency, verifyInclusion } from '../audit/merkle.ts';
import { generateSigningKey, loadSigningKey, noteVerifierKey, readPinnedKeys, registerKey, verifyCheckpoint, type CheckpointRow } from '../audit/signing.ts';
import type { Loaded } from './loaded.ts';
import { AdminLog, adminLogId, groupLogRegex, prunedThrough } from '../audit/admin-log.ts';
import { migrateControlSchema } from '../audit/control-schema.ts';
import { parseCutoff, prune, verifyArchive } from '../audit/prune.ts';
import { kafkaClientProps } from '../kafka/client-config.ts';

const USAGE = `usage: worker-sync audit verify --keys FILE [--group G | --log LOG_ID] [--witness-key VKEY] [--no-kafka] [--json]   (FILE default: AUDIT_PINNED_KEYS_FILE)
       worker-sync audit prove --event ID --keys FILE [--size N] [--group G] [--json]
       worker-sync audit prune --before 90d --archive DIR [--conflicts-before 30d] [--group G] [--keys FILE] [--actor NAME] [--dry-run] [--json]
       worker-sync audit verify-archive DIR --keys FILE [--offline] [--json]
       worker-sync audit export --from DATE --to DATE [--group G]      CSV with a header row, to stdout
       worker-sync audit report [--from DATE (30d)] [--to DATE (now)] [--format md|html|json] [--group G] [--keys FILE] [--witness-key VKEY] [--no-kafka] [--out FILE]
       worker-sync audit public-key [--format json|c2sp]   the pinned-keys entry of AUDIT_SIGNING_KEY_FILE, or its C2SP verifier key
       worker-sync audit checkpoint --log LOG_ID [--size N] [--format c2sp|json]   a signed checkpoint (default: the latest) as a C2SP note
       worker-sync audit consistency --log LOG_ID --from M --to N [--json]   an RFC 9162 consistency proof between two tree sizes
       worker-sync audit rotate-key [--out FILE]

verify streams every audit log, recomputes each row's leaf and each signed root, checks
every checkpoint against the keys pinned in FILE ({"keys": [{"key_id", "public_key"}]};
audit_keys is never trusted alone) and against the checkpoints published to Kafka
(AUDIT_CHECKPOINT_TOPIC). It names the first bad seq of each damaged log and the kind:
modified, missing, inserted, reordered, bad signature, unknown key, truncated.
Each group is read in one snapshot, so it can run while workers write: it says up to
which seq it checked each log. With --witness-key (default AUDIT_WITNESS_PUBLIC_KEY), a
C2SP verifier key, it also says up to which tree size the witness cosigned.

checkpoint, public-key --format c2sp, prove and consistency speak the transparency-log
standards, so an auditor can check the log with tools that are not ours: a checkpoint
is a C2SP signed note (origin AUDIT_ORIGIN_PREFIX + log id, tree size, base64 root,
signed with Ed25519 under AUDIT_NOTE_KEY_NAME), followed by a witness's cosignature
when AUDIT_WITNESS_URL cosigned it; prove gives an RFC 9162 inclusion proof
(leaf_index = seq - 1, tree_size, leaf_hash, audit_path); consistency gives first_size,
second_size, both roots and the proof. Hashes are hex in JSON, base64 in notes.

prune archives the payloads (before, after, writes) of rows older than --before into
DIR (gzip NDJSON and a manifest of the signed roots), then clears them, keeping every
row's metadata and hashes and every checkpoint; resolved conflicts older than
--conflicts-before are archived and deleted. It verifies the logs first and refuses to
prune a damaged one. The prune is recorded as an admin row in the group's admin log.
Never DELETE audit rows by hand: verify reports that as tampering.
verify-archive checks an archive: that its manifest is the one the signed prune record
names (skipped with --offline, when there is no database to ask), the files' hashes,
every row's leaf, and the roots and their signatures.

export streams audit rows (executed_at in [--from, --to)) as CSV with a header row, by
COPY … TO STDOUT. report summarises a period for auditors: changes by entity, op, node
and day, conflicts and their resolutions, dead letters, the integrity verdict (a full
verify when pinned keys are given; --no-kafka skips the published checkpoints), the
signing keys used and the retention status. DATE is ISO-8601 or an age such as 7d.

--group G is the deployment (consumer group) whose logs are meant: for prove, prune and
report it defaults to KAFKA_GROUP_ID; verify and export cover every group unless given.

Exit codes: 0 intact / done, 1 damage found (or the proof does not verify), 2 usage.
`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export async function runAudit(args: string[], cfg: Loaded): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'verify': return verify(rest, cfg);
    case 'prove': return prove(rest, cfg);
    case 'public-key': return publicKey(rest, cfg);
    case 'checkpoint': return checkpointCommand(rest, cfg);
    case 'consistency': return consistencyCommand(rest, cfg);
    case 'rotate-key': return rotateKey(rest, cfg);
    case 'prune': return pruneCommand(rest, cfg);
    case 'verify-archive': return verifyArchiveCommand(rest, cfg);
    case 'export': return exportCommand(rest, cfg);
    case 'report': return reportCommand(rest, cfg);
    default:
      process.stderr.write(USAGE);
      return sub === '--help' || sub === 'help' ? 0 : 2;
  }
}

function keyFile(cfg: Loaded): string {
  return cfg.env.auditKeyFile ?? path.join(PROJECT_ROOT, '.local/audit/signing-key.pem');
}

function pinnedOrUsage(args: string[]): Map<string, string> | number {
  const file = flag(args, '--keys') ?? process.env.AUDIT_PINNED_KEYS_FILE;
  if (!file) {
    process.stderr.write(`--keys FILE (or AUDIT_PINNED_KEYS_FILE) is required: the public keys you pinned (worker-sync audit public-key prints an entry)\n\n${USAGE}`);
    return 2;
  }
  try {
    return readPinnedKeys(file);
  } catch (err) {
    process.stderr.write(`cannot use the pinned keys: ${errorMessage(err)}\n`);
    return 2;
  }
}

/** Every checkpoint published to the topic, read from the beginning to the current end. */
export async function readPublished(brokers: string, topic: string, timeoutMs = 15_000): Promise<PublishedCheckpoint[]> {
  const consumer = new Kafka.KafkaConsumer({ ...kafkaClientProps(), 'metadata.broker.list': brokers, 'group.id': `worker-sync-verify-${process.pid}`, 'enable.auto.commit': false }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: timeoutMs }, (err) => (err ? reject(err) : resolve())));
  try {
    const md = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: timeoutMs }, (err, m) => (err ? reject(err) : resolve(m))));
    const t = md.topics.find((x) => x.name === topic);
    if (!t || t.partitions.length === 0) return [];
    const ends = new Map<number, number>();
    for (const p of t.partitions) {
      const w = await new Promise<{ highOffset: number }>((resolve, reject) => consumer.queryWatermarkOffsets(topic, p.id, timeoutMs, (err, o) => (err ? reject(err) : resolve(o))));
      if (w.highOffset > 0) ends.set(p.id, w.highOffset);
    }
    if (ends.size === 0) return [];
    consumer.assign([...ends.keys()].map((partition) => ({ topic, partition, offset: 0 })));
    const out: PublishedCheckpoint[] = [];
    const done = new Set<number>();
    const deadline = Date.now() + timeoutMs;
    while (done.size < ends.size) {
      if (Date.now() > deadline) throw new Error(`timed out reading ${topic}`);
      const msgs = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(1000, (err, m) => (err ? reject(err) : resolve(m))));
      for (const m of msgs) {
        if (m.value) out.push(JSON.parse(m.value.toString('utf8')) as PublishedCheckpoint);
        if (m.offset + 1 >= ends.get(m.partition)!) done.add(m.partition);
      }
    }
    return out;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

async function verify(args: string[], cfg: Loaded): Promise<number> {
  const pinned = pinnedOrUsage(args);
  if (typeof pinned === 'number') return pinned;
  const asJson = args.includes('--json');
  const group = flag(args, '--group');
  const only = flag(args, '--log');
  const witnessKey = flag(args, '--witness-key') ?? cfg.env.auditWitnessKey;
  let witness: Verifier | undefined;
  try {
    witness = witnessKey === undefined ? undefined : parseVerifierKey(witnessKey);
  } catch (err) {
    process.stderr.write(`--witness-key: ${errorMessage(err)}\n`);
    return 2;
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  const started = performance.now();
  try {
    const published = args.includes('--no-kafka') ? [] : await readPublished(cfg.brokers, cfg.env.auditCheckpointTopic);
    const ids = only ? [only] : await logIds(db, group, published);
    const { rows: sizes } = await db.query<{ n: string }>('SELECT COALESCE(sum(tree_size), 0) AS n FROM audit_logs WHERE log_id = ANY($1)', [ids]);
    const total = Number(sizes[0]!.n);
    let done = 0;
    const bar = process.stderr.isTTY && !asJson;
    const progress = (n: number) => {
      done += n;
      if (bar) process.stderr.write(`\r[${'#'.repeat(Math.round((Math.min(done, total) / Math.max(total, 1)) * 30)).padEnd(30)}] ${done}/${total} rows`);
    };
    const reports = await verifyLogs(db, ids, pinned, published, progress, witness);
    if (bar) process.stderr.write('\n');
    const seconds = (performance.now() - started) / 1000;
    const rows = reports.reduce((s, r) => s + r.rows, 0);
    const damaged = reports.filter((r) => r.damage);
    if (asJson) {
      process.stdout.write(`${JSON.stringify({ ok: damaged.length === 0, logs: reports, rows, seconds: Number(seconds.toFixed(3)), rows_per_second: Math.round(rows / Math.max(seconds, 1e-9)), published: published.length })}\n`);
    } else {
      for (const r of reports) {
        process.stdout.write(r.damage
          ? `DAMAGED ${r.log_id}: first bad seq ${r.damage.seq}: ${r.damage.kind} (${r.damage.detail})\n`
          : `ok      ${r.log_id}: ${r.rows} rows (through seq ${r.checked_through}), ${r.checkpoints} checkpoints${r.unsigned ? `, ${r.unsigned} not yet signed` : ''}`
            + `${r.witnessed_through === undefined ? '' : `, cosigned by the witness through tree size ${r.witnessed_through}`}${r.pruned ? `, payloads of seq ${r.pruned.from}-${r.pruned.to} pruned (archived; their hashes verified)` : ''}\n`);
      }
      process.stdout.write(`${damaged.length === 0 ? 'intact' : `${damaged.length} damaged log(s)`}: ${reports.length} logs, ${rows} rows in ${seconds.toFixed(2)} s, ${published.length} published checkpoints compared\n`);
    }
    return damaged.length === 0 ? 0 : 1;
  } finally {
    await db.end();
  }
}

async function prove(args: string[], cfg: Loaded): Promise<number> {
  const pinned = pinnedOrUsage(args);
  if (typeof pinned === 'number') return pinned;
  const event = flag(args, '--event');
  if (!event) {
    process.stderr.write(`--event ID is required\n\n${USAGE}`);
    return 2;
  }
  const atSize = sizeFlag(args, '--size');
  if (Number.isNaN(atSize)) {
    process.stderr.write(`--size is a tree size\n\n${USAGE}`);
    return 2;
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    // event ids name a source position, which every deployment consuming that topic sees: one group's logs
    const group = flag(args, '--group') ?? cfg.env.groupId;
    const { rows: hits } = await db.query<{ log_id: string; seq: string }>(
      'SELECT log_id, seq FROM audit_log WHERE event_id = $1 AND log_id ~ $2 ORDER BY log_id, seq', [event, groupLogRegex(group)]);
    if (hits.length === 0) {
      process.stderr.write(`no audit row for event ${event} in the logs of ${group}\n`);
      return 1;
    }
    const proofs = [];
    let allOk = true;
    for (const h of hits) {
      const seq = Number(h.seq);
      // the first checkpoint that covers the row, or the one at --size
      const { rows: cps } = await db.query<{ tree_size: string; root: Buffer; prev_hash: Buffer | null; signed_at: Date; key_id: string; signature: Buffer; note: string | null }>(
        `SELECT tree_size, root, prev_hash, signed_at, key_id, signature, note FROM audit_checkpoints
         WHERE log_id = $1 AND tree_size >= $2 AND ($3::bigint IS NULL OR tree_size = $3) ORDER BY tree_size LIMIT 1`, [h.log_id, seq, atSize ?? null]);
      const cp = cps[0];
      if (!cp) {
        proofs.push({ log_id: h.log_id, seq, verified: false, error: atSize === undefined ? 'no signed checkpoint covers this row yet' : `no checkpoint at tree size ${atSize} covers this row` });
        allOk = false;
        continue;
      }
      const size = Number(cp.tree_size);
      const leaves: Buffer[] = [];
      let row: LeafRow | undefined;
      await streamLeafRows(db, h.log_id, 1, size, (rows) => {
        for (const r of rows) {
          leaves.push(Buffer.from(r.storedLeaf ?? Buffer.alloc(32)));
          if (r.seq === seq) row = { ...r, meta: Buffer.from(r.meta), payload: r.payload && Buffer.from(r.payload), storedPayload: r.storedPayload && Buffer.from(r.storedPayload) };
        }
      });
      const group = groupOf(h.log_id);
      const admin = await verifyLog(db, adminLogId(group), pinned, []);
      const pruned = (await prunedThrough(db, group, admin.verified_through)).get(h.log_id) ?? 0;
      const leaf = rowLeaf(row!, pruned).leaf;
      const path_ = inclusionProof(leaves, seq - 1);
      const key = pinned.get(cp.key_id);
      const signed = key !== undefined && verifyCheckpoint(key, { logId: h.log_id, treeSize: size, root: cp.root, prevHash: cp.prev_hash, signedAt: cp.signed_at.toISOString(), keyId: cp.key_id }, cp.signature);
      const included = leaves.length === size && verifyInclusion(leaf, seq - 1, size, path_, cp.root);
      allOk &&= signed && included;
      proofs.push({
        // RFC 9162 §2.1.3: leaf_index is 0-based (seq - 1); the audit path runs bottom up
        event_id: event, log_id: h.log_id, seq, leaf_index: seq - 1, leaf_hash: leaf.toString('hex'), tree_size: size, root: cp.root.toString('hex'),
        audit_path: path_.map((p) => p.toString('hex')),
        checkpoint: { signed_at: cp.signed_at.toISOString(), key_id: cp.key_id, signature: cp.signature.toString('hex'), note: cp.note },
        included, signature_verified: signed, verified: signed && included,
      });
    }
    if (args.includes('--json')) process.stdout.write(`${JSON.stringify(proofs)}\n`);
    else for (const p of proofs) process.stdout.write(`${p.verified ? 'PROVEN' : 'NOT PROVEN'} ${JSON.stringify(p, null, 2)}\n`);
    return allOk ? 0 : 1;
  } finally {
    await db.end();
  }
}

function publicKey(args: string[], cfg: Loaded): number {
  const file = keyFile(cfg);
  if (!existsSync(file)) {
    process.stderr.write(`no signing key at ${file} (AUDIT_SIGNING_KEY_FILE)\n`);
    return 2;
  }
  const k = loadSigningKey(file, cfg.env.auditNote);
  const format = flag(args, '--format') ?? 'json';
  if (format === 'c2sp') process.stdout.write(`${noteVerifierKey(k)}\n`);
  else if (format === 'json') process.stdout.write(`${JSON.stringify({ keys: [{ key_id: k.keyId, public_key: k.publicPem }] }, null, 2)}\n`);
  else {
    process.stderr.write(`--format is json or c2sp, not ${format}\n`);
    return 2;
  }
  return 0;
}

interface StoredCheckpoint extends CheckpointRow {
  note: string | null;
  cosignatures: string | null;
}

/** The checkpoint of `logId` at exactly `size`, or its latest. */
async function storedCheckpoint(db: pg.ClientBase, logId: string, size: number | undefined): Promise<StoredCheckpoint | undefined> {
  const { rows } = await db.query<StoredCheckpoint>(
    `SELECT log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash, note, cosignatures FROM audit_checkpoints
     WHERE log_id = $1 AND ($2::bigint IS NULL OR tree_size = $2) ORDER BY tree_size DESC LIMIT 1`, [logId, size ?? null]);
  return rows[0];
}

/** A whole-number option: undefined when absent, NaN when not a number. */
function sizeFlag(args: string[], name: string): number | undefined {
  const v = flag(args, name);
  return v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : Number.NaN;
}

async function checkpointCommand(args: string[], cfg: Loaded): Promise<number> {
  const logId = flag(args, '--log');
  const size = sizeFlag(args, '--size');
  const format = flag(args, '--format') ?? 'c2sp';
  if (!logId || Number.isNaN(size) || !['c2sp', 'json'].includes(format)) {
    process.stderr.write(`--log LOG_ID is required; --size is a tree size; --format is c2sp or json\n\n${USAGE}`);
    return 2;
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    const c = await storedCheckpoint(db, logId, size);
    if (!c) {
      process.stderr.write(`no checkpoint of ${logId}${size === undefined ? '' : ` at tree size ${size}`}\n`);
      return 1;
    }
    if (format === 'json') {
      process.stdout.write(`${JSON.stringify({
        log_id: c.log_id, tree_size: Number(c.tree_size), root: c.root.toString('hex'), prev_hash: c.prev_hash?.toString('hex') ?? null, signed_at: c.signed_at.toISOString(),
        key_id: c.key_id, signature: c.signature.toString('hex'), checkpoint_hash: c.checkpoint_hash.toString('hex'), note: c.note, cosignatures: c.cosignatures,
      })}\n`);
      return 0;
    }
    if (!c.note) {
      process.stderr.write(`the checkpoint of ${logId} at tree size ${c.tree_size} was signed before checkpoints carried a C2SP note; use --format json, or a later size\n`);
      return 1;
    }
    // a witness's cosignature lines follow the log's own: a C2SP verifier ignores the keys it does not know
    process.stdout.write(c.note + (c.cosignatures ?? ''));
    return 0;
  } finally {
    await db.end();
  }
}

/** Every stored leaf hash of `logId` from seq 1 through `size`, in order (a row without one is a hole: verify names it). */
async function leavesThrough(db: pg.ClientBase, logId: string, size: number): Promise<Buffer[]> {
  const { rows } = await db.query<{ leaf_hash: Buffer | null }>('SELECT leaf_hash FROM audit_log WHERE log_id = $1 AND seq <= $2 ORDER BY seq', [logId, size]);
  return rows.map((r) => r.leaf_hash ?? Buffer.alloc(32));
}

async function consistencyCommand(args: string[], cfg: Loaded): Promise<number> {
  const logId = flag(args, '--log');
  const from = sizeFlag(args, '--from');
  const to = sizeFlag(args, '--to');
  if (!logId || from === undefined || to === undefined || Number.isNaN(from) || Number.isNaN(to) || from > to) {
    process.stderr.write(`--log LOG_ID, --from M and --to N (M <= N) are required\n\n${USAGE}`);
    return 2;
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    const leaves = await leavesThrough(db, logId, to);
    if (leaves.length !== to) {
      process.stderr.write(`${logId} holds ${leaves.length} rows up to seq ${to}: there is no tree of size ${to}\n`);
      return 1;
    }
    const proof = consistencyProof(from, to, (lo, hi) => treeRoot(leaves, lo, hi));
    const first = treeRoot(leaves, 0, from);
    const second = treeRoot(leaves, 0, to);
    // the roots as signed, where a checkpoint signed that size: a proof between unsigned sizes proves less
    const signed = async (n: number) => (await storedCheckpoint(db, logId, n))?.root ?? null;
    const [s1, s2] = [await signed(from), await signed(to)];
    // a proof between sizes no checkpoint signed has no anchor: printed, but not called verified
    const ok = verifyConsistency(from, to, first, second, proof) && s1 !== null && s1.equals(first) && s2 !== null && s2.equals(second);
    const out = {
      log_id: logId, first_size: from, second_size: to, first_root: first.toString('hex'), second_root: second.toString('hex'),
      proof: proof.map((h) => h.toString('hex')), first_signed: s1 !== null, second_signed: s2 !== null, verified: ok,
    };
    const verdict = ok ? 'CONSISTENT' : s1 === null || s2 === null ? 'NOT VERIFIED (a size without a signed checkpoint)' : 'NOT CONSISTENT';
    process.stdout.write(args.includes('--json') ? `${JSON.stringify(out)}\n` : `${verdict} ${JSON.stringify(out, null, 2)}\n`);
    return ok ? 0 : 1;
  } finally {
    await db.end();
  }
}

async function rotateKey(args: string[], cfg: Loaded): Promise<number> {
  const file = flag(args, '--out') ?? keyFile(cfg);
  const db = new pg.Pool({ connectionString: cfg.controlUrl, max: 1 });
  try {
    let old: string | undefined;
    if (existsSync(file)) {
      old = loadSigningKey(file).keyId;
      renameSync(file, `${file}.${old}.retired`);
    }
    const key = generateSigningKey(file);
    await registerKey(db, key);
    if (old) await db.query('UPDATE audit_keys SET retired_at = now() WHERE key_id = $1 AND retired_at IS NULL', [old]);
    process.stdout.write(`${JSON.stringify({ rotated_from: old ?? null, key_file: file, keys: [{ key_id: key.keyId, public_key: key.publicPem }] }, null, 2)}\n`);
    process.stderr.write('Add the new key to your pinned keys file (keep the old one: old checkpoints stay signed by it), then restart the workers.\n');
    return 0;
  } finally {
    await db.end();
  }
}

function bar(what: string, done: number, total: number): void {
  process.stderr.write(`\r${what.padEnd(8)} [${'#'.repeat(Math.round((Math.min(done, total) / Math.max(total, 1)) * 30)).padEnd(30)}] ${done}/${total} rows`);
}

async function pruneCommand(args: string[], cfg: Loaded): Promise<number> {
  const before = flag(args, '--before');
  const archiveDir = flag(args, '--archive');
  if (!before || !archiveDir) {
    process.stderr.write(`--before AGE and --archive DIR are required\n\n${USAGE}`);
    return 2;
  }
  const pinned = pinnedOrUsage(args);
  if (typeof pinned === 'number') return pinned;
  let cutoff: Date;
  let conflictsCutoff: Date;
  try {
    cutoff = parseCutoff(before);
    conflictsCutoff = parseCutoff(flag(args, '--conflicts-before') ?? '30d');
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return 2;
  }
  const file = keyFile(cfg);
  if (!existsSync(file)) {
    process.stderr.write(`no signing key at ${file} (AUDIT_SIGNING_KEY_FILE): the prune is signed into the admin log\n`);
    return 2;
  }
  const asJson = args.includes('--json');
  const group = flag(args, '--group') ?? cfg.env.groupId;
  const actor = flag(args, '--actor') ?? process.env.USER ?? 'cli';
  const pool = new pg.Pool({ connectionString: cfg.controlUrl, max: 2 });
  const tty = process.stderr.isTTY && !asJson;
  try {
    await migrateControlSchema(pool);
    const admin = new AdminLog(loadSigningKey(file, cfg.env.auditNote), group);
    if (!args.includes('--dry-run')) await admin.claim(pool, `audit-prune:${actor}`);
    const result = await prune(pool, admin, {
      group, before: cutoff, conflictsBefore: conflictsCutoff, archiveDir, actor, pinned, dryRun: args.includes('--dry-run'),
      progress: tty ? bar : undefined,
    });
    if (tty) process.stderr.write('\n');
    if (asJson) {
      process.stdout.write(`${JSON.stringify({ ...result, damaged: result.damaged.map((d) => ({ log_id: d.log_id, damage: d.damage })) })}\n`);
    } else if (result.damaged.length > 0) {
      for (const d of result.damaged) process.stdout.write(`DAMAGED ${d.log_id}: first bad seq ${d.damage!.seq}: ${d.damage!.kind} (${d.damage!.detail})\n`);
      process.stdout.write('nothing pruned: clearing a damaged log\'s payloads would destroy the evidence; investigate with audit verify\n');
    } else {
      const rows = result.logs.reduce((s, l) => s + l.rows, 0);
      for (const l of result.logs) process.stdout.write(`${result.dry_run ? 'would prune' : 'pruned'} ${l.log_id}: seq ${l.from_seq}-${l.to_seq} (${l.rows} rows)\n`);
      process.stdout.write(`${result.dry_run ? 'dry run: ' : ''}${rows} audit rows in ${result.logs.length} logs and ${result.conflicts} resolved conflicts ${result.dry_run ? 'would be' : 'were'} archived and cleared`
        + `${result.archive ? `; archive ${result.archive} (manifest sha256 ${result.manifest_sha256}), admin row seq ${result.admin_seq} of ${adminLogId(group)}` : ''}\n`);
    }
    return result.damaged.length > 0 ? 1 : 0;
  } finally {
    await pool.end();
  }
}

async function verifyArchiveCommand(args: string[], cfg: Loaded): Promise<number> {
  const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--keys');
  if (!dir) {
    process.stderr.write(`the archive's directory is required\n\n${USAGE}`);
    return 2;
  }
  const pinned = pinnedOrUsage(args);
  if (typeof pinned === 'number') return pinned;
  let db: pg.Client | null = null;
  if (!args.includes('--offline')) {
    db = new pg.Client({ connectionString: cfg.controlUrl });
    await db.connect();
  }
  const report = await verifyArchive(dir, pinned, db).finally(() => db?.end());
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    process.stdout.write(`${report.manifest.authenticated ? 'ok     ' : db === null ? 'UNCHECKED' : 'BAD    '} manifest: ${report.manifest.detail}\n`);
    for (const f of report.files) process.stdout.write(`${f.ok ? 'ok     ' : 'BAD    '} file ${f.name}${f.detail ? `: ${f.detail}` : ''}\n`);
    for (const l of report.logs) process.stdout.write(`${l.ok ? 'ok     ' : 'BAD    '} ${l.log_id} seq ${l.from_seq}-${l.to_seq}${l.detail ? `: ${l.detail}` : ''}\n`);
    process.stdout.write(`${report.ok ? 'archive intact' : 'archive damaged'}: ${dir}\n`);
  }
  return report.ok ? 0 : 1;
}

/** --from/--to: an ISO-8601 date or an age such as 7d; --to defaults to now, and --from (where `defaultFrom` is given) to that age. */
function period(args: string[], defaultFrom?: string): { from: Date; to: Date } | string {
  const from = flag(args, '--from') ?? defaultFrom;
  if (!from) return '--from DATE is required';
  try {
    const to = flag(args, '--to');
    const p = { from: parseCutoff(from), to: to ? parseCutoff(to) : new Date() };
    return p.from < p.to ? p : '--from must be before --to';
  } catch (err) {
    return errorMessage(err);
  }
}

async function exportCommand(args: string[], cfg: Loaded): Promise<number> {
  const p = period(args);
  if (typeof p === 'string') {
    process.stderr.write(`${p}\n\n${USAGE}`);
    return 2;
  }
  const group = flag(args, '--group');
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    await db.query(LEAF_SESSION_SQL); // timestamps in UTC, ISO
    const where = `executed_at >= ${db.escapeLiteral(p.from.toISOString())} AND executed_at < ${db.escapeLiteral(p.to.toISOString())}`
      + (group === undefined ? '' : ` AND log_id ~ ${db.escapeLiteral(groupLogRegex(group))}`);
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE ${where}`);
    const total = rows[0]!.n;
    const source = db.query(pgCopy.to(
      `COPY (SELECT log_id, seq, kind, event_id, entity, record_key, op, source_node, source_position, source_ts, before, after, changed_columns,
                    encode(version, 'hex') AS version, hlc, writes, actor, executed_at, encode(payload_hash, 'hex') AS payload_hash, encode(leaf_hash, 'hex') AS leaf_hash
             FROM audit_log WHERE ${where} ORDER BY executed_at, log_id, seq) TO STDOUT WITH (FORMAT csv, HEADER)`));
    let lines = 0;
    const tty = process.stderr.isTTY;
    source.on('data', (chunk: Buffer) => {
      if (!tty) return;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
      bar('export', Math.max(0, lines - 1), total);
    });
    await pipeline(source, process.stdout);
    if (tty) process.stderr.write(`\nexported ${total} rows\n`);
    return 0;
  } finally {
    await db.end();
  }
}

async function reportCommand(args: string[], cfg: Loaded): Promise<number> {
  // the runbook runs `npm run compliance:report` bare: the last 30 days
  const p = period(args, '30d');
  const format = flag(args, '--format') ?? 'md';
  if (typeof p === 'string' || !['md', 'html', 'json'].includes(format)) {
    process.stderr.write(`${typeof p === 'string' ? p : `--format must be md, html or json, not ${format}`}\n\n${USAGE}`);
    return 2;
  }
  const witnessKey = flag(args, '--witness-key') ?? cfg.env.auditWitnessKey;
  try {
    if (witnessKey !== undefined) parseVerifierKey(witnessKey);
  } catch (err) {
    process.stderr.write(`--witness-key: ${errorMessage(err)}\n`);
    return 2;
  }
  const keysFile = flag(args, '--keys') ?? process.env.AUDIT_PINNED_KEYS_FILE;
  let pinned: Map<string, string> | null = null;
  if (keysFile) {
    const k = pinnedOrUsage(args);
    if (typeof k === 'number') return k;
    pinned = k;
  }
  let published: PublishedCheckpoint[] | null = null;
  let publishedError: string | undefined;
  if (pinned && !args.includes('--no-kafka')) {
    try {
      published = await readPublished(cfg.brokers, cfg.env.auditCheckpointTopic);
    } catch (err) {
      publishedError = errorMessage(err);
    }
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    const report = await buildReport(db, {
      group: flag(args, '--group') ?? cfg.env.groupId, from: p.from, to: p.to, pinned, published, publishedError,
      witness: witnessKey === undefined ? undefined : parseVerifierKey(witnessKey),
      retentionDays: Number(flag(args, '--retention-days') ?? 90), conflictRetentionDays: Number(flag(args, '--conflict-retention-days') ?? 30),
    });
    const text = format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'html' ? renderHtml(report) : renderMarkdown(report);
    const out = flag(args, '--out');
    if (out) {
      writeFileSync(out, text);
      process.stderr.write(`wrote ${out}: integrity ${report.integrity.verdict}, ${report.changes.total} changes\n`);
    } else {
      process.stdout.write(text);
    }
    return report.integrity.verdict === 'damaged' ? 1 : 0;
  } finally {
    await db.end();
  }
}
