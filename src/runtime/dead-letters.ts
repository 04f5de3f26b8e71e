import type pg from 'pg';
import { encodeChange, type DeadLetterRecord } from '../events/change-codec.ts';
import type { ChangeEvent } from '../events/change-event.ts';
import type { ConsumedMessage } from '../kafka/consumer.ts';
import type { RejectedEvent } from '../sync/sync-engine.ts';
import { errorMessage } from '../errors.ts';

/**
 * The dead letters a sync commit stores (DESIGN §8): built from what failed, inserted in
 * the batch's transaction with the payloads ingest staged, and mirrored in Redis for the
 * runbook.
 */

/** The runbook's Redis LIST of failed work (`redis-cli LLEN bull:sync:failed`). */
export const DLQ_REDIS_KEY = 'bull:sync:failed';

/**
 * A changes record whose processing kept failing on its own (DESIGN §3, invariant 7): the
 * error, the record as it travelled, and its key, which is parked behind it.
 */
export function internalLetter(msg: ConsumedMessage, parsed: { events: ChangeEvent[]; dead: DeadLetterRecord[] }, err: unknown): DeadLetterRecord {
  const ev = parsed.events[0];
  const error = `${err instanceof Error ? err.name : 'Error'}: ${errorMessage(err)}`.slice(0, 2000);
  if (ev) {
    return {
      reason: 'WS_INTERNAL', error, topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset, entity: ev.entity, node: ev.node,
      recordKey: ev.keyText, payload: msg.value?.toString('base64') ?? null, payloadKind: 'change',
    };
  }
  const d = parsed.dead[0];
  return {
    reason: 'WS_INTERNAL', error, topic: d?.topic ?? msg.topic, partition: d?.partition ?? msg.partition, offset: d?.offset ?? msg.offset, entity: d?.entity ?? null,
    node: d?.node ?? null, recordKey: d?.recordKey ?? null, payload: msg.value?.toString('base64') ?? null, payloadKind: 'change',
  };
}

/** A change whose record a target node kept refusing (DESIGN §6): dead-lettered, its key parked. */
export function rejectedLetter(r: RejectedEvent): DeadLetterRecord {
  const ev = r.event;
  return {
    reason: r.first ? 'WS_TARGET_REJECTED' : 'WS_PARKED',
    error: r.first ? r.error : `waits behind an earlier dead letter of ${ev.entity} ${ev.keyText}`,
    topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset, entity: ev.entity, node: ev.node,
    recordKey: ev.keyText, payload: encodeChange(ev).toString('base64'), payloadKind: 'change',
  };
}

/** The Redis mirror's entry for one dead letter; `dlq replay` removes it by this exact text. */
export function mirrorEntry(d: { id: string | number; group: string; reason: string; entity: string | null; recordKey: string | null }): string {
  return JSON.stringify({ id: Number(d.id), group: d.group, reason: d.reason, entity: d.entity, key: d.recordKey });
}

/** Dead letters per INSERT: 11 parameters each stays under PostgreSQL's 65,535 bind parameters. */
const LETTERS_PER_STATEMENT = 5000;

export async function insertDeadLetters(client: pg.PoolClient, group: string, dls: DeadLetterRecord[]): Promise<string[]> {
  const ids: string[] = [];
  for (let from = 0; from < dls.length; from += LETTERS_PER_STATEMENT) {
    const part = dls.slice(from, from + LETTERS_PER_STATEMENT);
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const d of part) {
      const b = params.length;
      tuples.push(`(${Array.from({ length: 11 }, (_, i) => `$${b + i + 1}`).join(', ')})`);
      params.push(d.reason, d.error, d.topic, d.partition, d.offset, d.entity, d.node, d.recordKey, d.payload === null ? null : Buffer.from(d.payload, 'base64'), d.payloadKind, group);
    }
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO sync_dead_letters (reason, error, topic, partition, "offset", entity, source_node, record_key, payload, payload_kind, consumer_group) VALUES ${tuples.join(', ')} RETURNING id`,
      params,
    );
    for (const r of rows) ids.push(r.id);
  }
  // Payloads too large for the changes topic wait in sync_staged_payloads: they are copied
  // into their dead letters in this same transaction. The staged row stays a day, so a
  // letter routed twice (ingest re-routes a batch after a crash) finds its payload too.
  const staged = ids.filter((_, i) => dls[i]!.payloadStaged === true);
  if (staged.length > 0) {
    await client.query(
      `UPDATE sync_dead_letters d SET payload = s.payload FROM sync_staged_payloads s
       WHERE d.id = ANY($1::bigint[]) AND s.consumer_group = d.consumer_group AND s.topic = d.topic AND s.partition = d.partition AND s."offset" = d."offset"`,
      [staged],
    );
    await client.query(`DELETE FROM sync_staged_payloads WHERE consumer_group = $1 AND staged_at < now() - interval '1 day'`, [group]);
  }
  return ids;
}
