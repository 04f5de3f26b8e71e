import pg from 'pg';
import { Redis } from 'ioredis';
import { DebeziumDecoder } from '../events/debezium.ts';
import { decodeChangeRecord, encodeChange, routingKey } from '../events/change-codec.ts';
import { ChangeProducer, recordBytes, recordLimit, type OutMessage } from '../kafka/producer.ts';
import { DLQ_REDIS_KEY, mirrorEntry } from '../runtime/dead-letters.ts';
import { listDeadLetters, replayCandidates, setDeadLetterStatus, type DeadLetterRow, type DeadLetterStatus } from '../control/dead-letters.ts';
import { createLogger } from '../log.ts';
import { errorMessage } from '../errors.ts';
import type { Loaded } from './loaded.ts';

const USAGE = `usage: worker-sync dlq list [--status open|replayed|all] [--limit N] [--json]
       worker-sync dlq replay (--all | --id N [--id N ...]) [--dry-run] [--json]

Dead letters of this deployment (KAFKA_GROUP_ID), oldest first. replay decodes each
again with the current topology and re-drives it through the changes topic, in order,
together with every later open dead letter of the same record; a record whose first
dead letter still fails keeps every later one parked.
Exit codes: 0 done, 1 some dead letters still fail, 2 usage.
`;

function flag(args: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) if (args[i] === name && args[i + 1] !== undefined) out.push(args[++i]!);
  return out;
}

export async function runDlq(args: string[], cfg: Loaded): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'list' && sub !== 'replay') {
    process.stderr.write(USAGE);
    return sub === '--help' || sub === 'help' ? 0 : 2;
  }
  const db = new pg.Client({ connectionString: cfg.controlUrl });
  await db.connect();
  try {
    return sub === 'list' ? await list(db, rest, cfg) : await replay(db, rest, cfg);
  } finally {
    await db.end();
  }
}

async function list(db: pg.Client, args: string[], cfg: Loaded): Promise<number> {
  const status = flag(args, '--status')[0] ?? 'open';
  const limit = Number(flag(args, '--limit')[0] ?? 100);
  if (!['open', 'replayed', 'replaying', 'all'].includes(status) || !Number.isInteger(limit) || limit < 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const rows = await listDeadLetters(db, cfg.env.groupId, status as DeadLetterStatus | 'all', limit);
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r, id: Number(r.id), offset: Number(r.offset) })))}\n`);
    return 0;
  }
  if (rows.length === 0) {
    process.stdout.write(`no ${status === 'all' ? '' : `${status} `}dead letters for group ${cfg.env.groupId}\n`);
    return 0;
  }
  for (const r of rows) {
    process.stdout.write(`#${r.id}  ${r.created_at.toISOString()}  ${r.status.padEnd(8)} ${r.reason.padEnd(26)} ${r.topic}/${r.partition}@${r.offset}  ${r.entity ?? '-'} ${r.record_key ?? '-'}\n    ${r.error}\n`);
  }
  return 0;
}

async function replay(db: pg.Client, args: string[], cfg: Loaded): Promise<number> {
  const ids = flag(args, '--id').map(Number);
  const all = args.includes('--all');
  const dryRun = args.includes('--dry-run');
  const asJson = args.includes('--json');
  if ((!all && ids.length === 0) || ids.some((n) => !Number.isInteger(n))) {
    process.stderr.write(USAGE);
    return 2;
  }
  // The selected dead letters and every open one of the same records: a record's dead
  // letters are re-driven together and in order, or not at all.
  const rows = await replayCandidates(db, cfg.env.groupId, all, ids);
  const decoder = new DebeziumDecoder(cfg.topology);
  const blocked = new Set<string>();
  const first = new Map<string, DeadLetterRow & { selected: boolean }>();
  const ready: Array<{ row: DeadLetterRow; out: OutMessage | null }> = [];
  const failing: Array<{ id: number; error: string }> = [];
  for (const row of rows) {
    const key = row.entity && row.record_key ? `${row.entity}:${row.record_key}` : null;
    if (key && !first.has(key)) first.set(key, row);
    const head = key ? first.get(key)! : row;
    if (!head.selected) {
      // An earlier open dead letter of this record was not selected: replaying this one
      // alone would apply the record's changes out of order.
      if (row.selected) failing.push({ id: Number(row.id), error: `waits behind #${head.id} of the same record; replay that one (it takes this one along) or use --all` });
      continue;
    }
    if (key && blocked.has(key)) {
      failing.push({ id: Number(row.id), error: 'still parked behind an earlier dead letter of the same record' });
      continue;
    }
    try {
      if (row.payload === null) throw new Error('no payload was kept');
      let out: OutMessage | null;
      if (row.payload_kind === 'change') {
        const rec = decodeChangeRecord(row.payload);
        if (!('event' in rec)) throw new Error('payload is not a change');
        out = { topic: cfg.env.changesTopic, key: routingKey(rec.event), value: encodeChange(rec.event) };
      } else {
        const ev = decoder.decode({ topic: row.topic, partition: row.partition, offset: Number(row.offset), value: row.payload });
        out = 'tombstone' in ev ? null : { topic: cfg.env.changesTopic, key: routingKey(ev), value: encodeChange(ev) };
      }
      const limit = recordLimit(cfg.env.kafkaMaxMessageBytes);
      if (out && recordBytes(out) > limit) {
        throw new Error(`still too large for the changes topic: ${recordBytes(out)} bytes, and KAFKA_MAX_MESSAGE_BYTES leaves ${limit}; raise it (with the topic's max.message.bytes) to replay`);
      }
      ready.push({ row, out });
    } catch (err) {
      if (key) blocked.add(key);
      failing.push({ id: Number(row.id), error: errorMessage(err) });
    }
  }

  if (!dryRun && ready.length > 0) {
    const readyIds = ready.map((r) => r.row.id);
    // 'replaying' releases the park, so the re-driven changes are not parked again.
    await setDeadLetterStatus(db, readyIds, 'replaying');
    const producer = new ChangeProducer(cfg.brokers, `${cfg.env.workerId}-dlq`, createLogger('warn', 'worker-sync-dlq'), cfg.env.kafkaMaxMessageBytes);
    try {
      await producer.connect();
      const messages = ready.flatMap((r) => (r.out ? [r.out] : []));
      for (let i = 0; i < messages.length; i += 500) {
        await producer.send(messages.slice(i, i + 500));
        if (!asJson && messages.length > 500) process.stderr.write(`\rreplayed ${Math.min(i + 500, messages.length)}/${messages.length}`);
      }
      if (!asJson && messages.length > 500) process.stderr.write('\n');
      await setDeadLetterStatus(db, readyIds, 'replayed');
    } catch (err) {
      await setDeadLetterStatus(db, readyIds, 'open');
      throw err;
    } finally {
      await producer.disconnect();
    }
    if (cfg.redisUrl) {
      const redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 3000 });
      try {
        const pipeline = redis.pipeline();
        for (const r of ready) pipeline.lrem(DLQ_REDIS_KEY, 0, mirrorEntry({ id: r.row.id, group: cfg.env.groupId, reason: r.row.reason, entity: r.row.entity, recordKey: r.row.record_key }));
        await pipeline.exec();
      } catch (err) {
        process.stderr.write(`warning: Redis mirror not updated: ${errorMessage(err)}\n`);
      } finally {
        redis.disconnect();
      }
    }
  }

  const summary = { dryRun, replayed: ready.map((r) => Number(r.row.id)), failing };
  if (asJson) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(`${dryRun ? 'would replay' : 'replayed'} ${ready.length} dead letter(s)${ready.length ? `: #${summary.replayed.join(', #')}` : ''}\n`);
    for (const f of failing) process.stdout.write(`still failing #${f.id}: ${f.error}\n`);
  }
  return failing.length > 0 ? 1 : 0;
}
