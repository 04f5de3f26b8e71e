import { encodeChange, type DeadLetterRecord } from '../events/change-codec.ts';
import type { ChangeEvent } from '../events/change-event.ts';
import type { ConsumedMessage } from '../kafka/consumer.ts';
import type { RejectedEvent } from '../sync/sync-engine.ts';
import { errorMessage } from '../errors.ts';

/**
 * The dead letters a sync commit stores (DESIGN §8): built here from what failed, inserted
 * in the batch's transaction (src/control/dead-letters.ts, the table's one owner) with the
 * payloads ingest staged, and mirrored in Redis for the runbook.
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
