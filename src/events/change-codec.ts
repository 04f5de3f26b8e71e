import type { ChangeEvent } from './change-event.ts';

/**
 * The changes topic's record format: a normalised ChangeEvent, or a dead letter found at
 * ingest, as JSON. Dead letters travel the same way so that the sync stage stores them
 * in the same commit as everything else of its batch.
 */
export interface DeadLetterRecord {
  reason: string;
  error: string;
  topic: string;
  partition: number;
  offset: number;
  entity: string | null;
  node: string | null;
  /** Canonical key text, where the message key could be read: the key is parked. */
  recordKey: string | null;
  /** The original message value, base64. */
  payload: string | null;
  /** 'debezium': the source message; 'change': a routed change that waited behind a parked key. */
  payloadKind: 'debezium' | 'change';
  /** The payload was too large to travel with the record: it waits in sync_staged_payloads. */
  payloadStaged?: boolean;
}

export type ChangeRecord = { event: ChangeEvent } | { dead: DeadLetterRecord };

export function encodeChange(ev: ChangeEvent): Buffer {
  return Buffer.from(JSON.stringify({ event: { ...ev, baseVersion: ev.baseVersion?.toString('base64') ?? null } }));
}

export function encodeDead(d: DeadLetterRecord): Buffer {
  return Buffer.from(JSON.stringify({ dead: d }));
}

export function decodeChangeRecord(value: Buffer): ChangeRecord {
  const doc = JSON.parse(value.toString('utf8')) as { event?: ChangeEvent & { baseVersion: string | null }; dead?: DeadLetterRecord };
  if (doc.dead) return { dead: doc.dead };
  if (!doc.event) throw new Error('changes record holds neither an event nor a dead letter');
  const ev = doc.event;
  return { event: { ...ev, baseVersion: ev.baseVersion === null ? null : Buffer.from(ev.baseVersion, 'base64') } };
}

/** Records of one entity and key share a partition of the changes topic. */
export function routingKey(ev: ChangeEvent): string {
  return `${ev.entity}:${ev.keyText}`;
}
