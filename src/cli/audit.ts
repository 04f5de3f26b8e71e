import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import Kafka from 'node-rdkafka';
import { PROJECT_ROOT } from '../config/env.ts';
import { errorMessage } from '../errors.ts';
import { logIds, verifyLog, type LogReport } from '../audit/verify.ts';
import type { PublishedCheckpoint } from '../audit/audit-service.ts';
import { AUDIT_ROW_COLUMNS, fieldsOfRow, leafOf, type AuditRow } from '../audit/leaf.ts';
import { inclusionProof, verifyInclusion } from '../audit/merkle.ts';
import { generateSigningKey, loadSigningKey, readPinnedKeys, registerKey, verifyCheckpoint } from '../audit/signing.ts';
import type { Loaded } from './main.ts';

const USAGE = `usage: worker-sync audit verify --keys FILE [--group G | --log LOG_ID] [--no-kafka] [--json]   (FILE default: AUDIT_PINNED_KEYS_FILE)
       worker-sync audit prove --event ID --keys FILE [--json]
       worker-sync audit public-key            the pinned-keys entry of AUDIT_SIGNING_KEY_FILE
       worker-sync audit rotate-key [--out FILE]

verify streams every audit log, recomputes each row's leaf and each signed root, checks
every checkpoint against the keys pinned in FILE ({"keys": [{"key_id", "public_key"}]};
audit_keys is never trusted alone) and against the checkpoints published to Kafka
(AUDIT_CHECKPOINT_TOPIC). It names the first bad seq of each damaged log and the kind:
modified, missing, inserted, reordered, bad signature, unknown key, truncated.
Exit codes: 0 intact, 1 damage found (or the proof does not verify), 2 usage.
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
    case 'public-key': return publicKey(cfg);
    case 'rotate-key': return rotateKey(rest, cfg);
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
  const consumer = new Kafka.KafkaConsumer({ 'metadata.broker.list': brokers, 'group.id': `worker-sync-verify-${process.pid}`, 'enable.auto.commit': false }, { 'auto.offset.reset': 'earliest' });
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
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  const started = performance.now();
  try {
    const published = args.includes('--no-kafka') ? [] : await readPublished(cfg.brokers, cfg.env.auditCheckpointTopic);
    const ids = only ? [only] : await logIds(db, group === undefined ? undefined : `${group}:`, published);
    const { rows: sizes } = await db.query<{ n: string }>('SELECT COALESCE(sum(tree_size), 0) AS n FROM audit_logs WHERE log_id = ANY($1)', [ids]);
    const total = Number(sizes[0]!.n);
    let done = 0;
    const bar = process.stderr.isTTY && !asJson;
    const progress = (n: number) => {
      done += n;
      if (bar) process.stderr.write(`\r[${'#'.repeat(Math.round((Math.min(done, total) / Math.max(total, 1)) * 30)).padEnd(30)}] ${done}/${total} rows`);
    };
    const reports: LogReport[] = [];
    for (const id of ids) reports.push(await verifyLog(db, id, pinned, published, progress));
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
          : `ok      ${r.log_id}: ${r.rows} rows, ${r.checkpoints} checkpoints${r.unsigned ? `, ${r.unsigned} not yet signed` : ''}\n`);
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
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    const { rows: hits } = await db.query<{ log_id: string; seq: string }>('SELECT log_id, seq FROM audit_log WHERE event_id = $1 ORDER BY log_id, seq', [event]);
    if (hits.length === 0) {
      process.stderr.write(`no audit row for event ${event}\n`);
      return 1;
    }
    const proofs = [];
    let allOk = true;
    for (const h of hits) {
      const seq = Number(h.seq);
      const { rows: cps } = await db.query<{ tree_size: string; root: Buffer; prev_hash: Buffer | null; signed_at: Date; key_id: string; signature: Buffer }>(
        'SELECT tree_size, root, prev_hash, signed_at, key_id, signature FROM audit_checkpoints WHERE log_id = $1 AND tree_size >= $2 ORDER BY tree_size LIMIT 1', [h.log_id, seq]);
      const cp = cps[0];
      if (!cp) {
        proofs.push({ log_id: h.log_id, seq, verified: false, error: 'no signed checkpoint covers this row yet' });
        allOk = false;
        continue;
      }
      const size = Number(cp.tree_size);
      const leaves: Buffer[] = [];
      let row: AuditRow | undefined;
      for (let from = 1; from <= size; from += 10_000) {
        const { rows } = await db.query<AuditRow>(`SELECT ${AUDIT_ROW_COLUMNS} FROM audit_log WHERE log_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`, [h.log_id, from, Math.min(size, from + 9999)]);
        for (const r of rows) {
          leaves.push(r.leaf_hash ?? leafOf(fieldsOfRow(r)));
          if (Number(r.seq) === seq) row = r;
        }
      }
      const leaf = leafOf(fieldsOfRow(row!));
      const path_ = inclusionProof(leaves, seq - 1);
      const key = pinned.get(cp.key_id);
      const signed = key !== undefined && verifyCheckpoint(key, { logId: h.log_id, treeSize: size, root: cp.root, prevHash: cp.prev_hash, signedAt: cp.signed_at.toISOString(), keyId: cp.key_id }, cp.signature);
      const included = leaves.length === size && verifyInclusion(leaf, seq - 1, size, path_, cp.root);
      allOk &&= signed && included;
      proofs.push({
        event_id: event, log_id: h.log_id, seq, leaf_hash: leaf.toString('hex'), tree_size: size, root: cp.root.toString('hex'),
        audit_path: path_.map((p) => p.toString('hex')), checkpoint: { signed_at: cp.signed_at.toISOString(), key_id: cp.key_id, signature: cp.signature.toString('hex') },
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

function publicKey(cfg: Loaded): number {
  const file = keyFile(cfg);
  if (!existsSync(file)) {
    process.stderr.write(`no signing key at ${file} (AUDIT_SIGNING_KEY_FILE)\n`);
    return 2;
  }
  const k = loadSigningKey(file);
  process.stdout.write(`${JSON.stringify({ keys: [{ key_id: k.keyId, public_key: k.publicPem }] }, null, 2)}\n`);
  return 0;
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
