import type pg from 'pg';
import type { EntityConfig, Topology } from '../config/topology.ts';
import type { ChangeEvent, Row } from '../events/change-event.ts';
import { positionKey } from '../events/source-position.ts';
import { decode, encode } from '../clock/codec.ts';
import { format, type VersionVector } from '../clock/version-vector.ts';
import type { WriteOutcome } from '../sinks/sink.ts';
import { mongoForm } from '../events/mongo-values.ts';
import { classify, recordOutcome, resolveOpen, type Decision, type PlannedWrite } from './classify.ts';
import { emptyState, rowDigest, type RecordState } from './record-state.ts';
import type { StateStore } from './state-store.ts';

/** What one source change caused at one node, as the audit leaf lists it (DESIGN §7). */
export interface WriteRecord {
  node: string;
  op: 'upsert' | 'delete';
  version: string;
  /** `superseded`: a later change of the same key in the same batch carried the write. */
  outcome: WriteOutcome | 'superseded';
}

export interface SyncedEvent {
  event: ChangeEvent;
  decision: Decision;
  writes: WriteRecord[];
}

/**
 * A change of a record one of whose writes a node kept refusing: it goes to the dead
 * letters with its record's state left as it was before the batch, and so do the
 * record's other changes of the batch (`first` false), in order. Replayed, they apply as
 * they would have: the writes that did land are found `already` there.
 */
export interface RejectedEvent {
  event: ChangeEvent;
  node: string;
  error: string;
  first: boolean;
}

export interface SyncBatchResult {
  synced: SyncedEvent[];
  rejected: RejectedEvent[];
  /** Record states to persist, per entity, keyed by canonical key text. */
  states: Map<string, Map<string, RecordState>>;
  counts: Record<Decision['kind'], number>;
}

/** One planned write to apply: the apply step sets its outcome (or 'rejected', with the error). */
export interface WriteSlot {
  write: PlannedWrite;
  state: RecordState;
  entity: EntityConfig;
  key: Row;
  keyText: string;
  outcome: WriteOutcome | 'rejected' | undefined;
  error?: string;
}

/**
 * The apply step (DESIGN §2 apply), which the runtime provides (src/runtime/apply.ts): it
 * writes the slots, one sink call per node and entity, and sets each slot's outcome. The
 * engine decides what to write and what the outcomes mean; it never calls a sink.
 */
export type ApplyStep = (slots: WriteSlot[]) => Promise<void>;

export type Logger = { debug(o: object, m: string): void; warn(o: object, m: string): void; isLevelEnabled(l: string): boolean };

/**
 * The sync stage of one lane batch (DESIGN §2 sync): load the batch's record states in
 * one query per entity, classify every event in order, reduce the planned writes to the
 * last one per node and key, hand them to the apply step, and record from its outcomes
 * which writes will echo. The caller commits the states, audit
 * leaves and checkpoint in one transaction afterwards.
 */
export class SyncEngine {
  private readonly topology: Topology;
  private readonly applyStep: ApplyStep;
  private readonly nodeIndex: Map<string, number>;
  private readonly nodePriority: Map<string, number>;
  private readonly store: StateStore;
  private readonly log: Logger;

  /** Rows as MongoDB nodes will emit them; the other kinds emit what they were given. */
  private readonly emitted: ((node: string, row: Row, entity: EntityConfig) => Row) | undefined;

  constructor(topology: Topology, apply: ApplyStep, nodeIndex: Map<string, number>, store: StateStore, log: Logger) {
    this.applyStep = apply;
    const mongo = new Set([...topology.nodes.values()].filter((n) => n.kind === 'mongodb').map((n) => n.name));
    this.emitted = mongo.size === 0 ? undefined : (node, row, entity) => (mongo.has(node) ? mongoForm(row, entity) : row);
    this.topology = topology;
    this.nodeIndex = nodeIndex;
    this.nodePriority = new Map([...topology.nodes.values()].map((n) => [n.name, n.priority]));
    this.store = store;
    this.log = log;
  }

  async process(db: pg.Pool, events: ChangeEvent[]): Promise<SyncBatchResult> {
    const keysByEntity = new Map<string, Set<string>>();
    for (const ev of events) {
      if (ev.op === 't') continue; // a truncate has no record of its own
      let set = keysByEntity.get(ev.entity);
      if (!set) keysByEntity.set(ev.entity, (set = new Set()));
      set.add(ev.keyText);
    }
    const states = new Map<string, Map<string, RecordState>>();
    await Promise.all([...keysByEntity].map(async ([entity, keys]) => {
      states.set(entity, await this.store.load(db, entity, [...keys]));
    }));

    const counts: Record<Decision['kind'], number> = { duplicate: 0, echo: 0, repair: 0, causal: 0, concurrent: 0, resolved: 0, ignored: 0 };
    let synced: SyncedEvent[] = [];
    const failed = new Map<string, { node: string; error: string }>();
    let slots = new Map<string, WriteSlot>();
    let eventSlots: Array<Array<{ id: string; write: PlannedWrite }>> = [];
    let firstPending = 0;
    const debug = this.log.isLevelEnabled('debug');

    // Applies the writes planned so far and settles the audit writes of their events.
    const flush = async () => {
      await this.applyStep([...slots.values()]);
      for (const slot of slots.values()) {
        if (slot.outcome === 'rejected') {
          const id = `${slot.entity.name}\u0000${slot.keyText}`;
          if (!failed.has(id)) failed.set(id, { node: slot.write.node, error: slot.error! });
        } else {
          recordOutcome(slot.state, slot.write, slot.outcome!, !slot.entity.echoless.has(slot.write.node));
        }
      }
      for (let i = 0; i < eventSlots.length; i++) {
        synced[firstPending + i]!.writes = eventSlots[i]!.map(({ id, write }) => {
          const final = slots.get(id);
          const outcome = final?.write === write ? final.outcome! : 'superseded';
          return { node: write.node, op: write.op, version: encode(write.version).toString('hex'), outcome: outcome === 'rejected' ? 'cas-skipped' : outcome };
        });
      }
      firstPending = synced.length;
      slots = new Map();
      eventSlots = [];
    };

    for (const ev of events) {
      if (ev.op === 't') {
        // Audited; with `truncate: propagate` the caller fans it out (truncateDeletes).
        counts.ignored++;
        synced.push({ event: ev, decision: { kind: 'ignored', reason: 'truncate' }, writes: [] });
        eventSlots.push([]);
        continue;
      }
      // A record a node refused earlier in this batch: its later changes wait behind it.
      if (failed.has(`${ev.entity}\u0000${ev.keyText}`)) {
        synced.push({ event: ev, decision: { kind: 'ignored', reason: 'parked' }, writes: [] });
        eventSlots.push([]);
        continue;
      }
      // An event from a node this batch is about to write the same record at can be the
      // echo of a write made before a crash (it carries what the write will write): apply
      // what is planned first, so its echo entry exists when the event is classified.
      // Any other event there (an application's own change) is classified with the write
      // still pending. Normal batches never split.
      const pending = slots.get(`${ev.node}\u0000${ev.entity}\u0000${ev.keyText}`);
      if (pending && mayEcho(ev, pending.write)) await flush();
      const entity = this.topology.entities.get(ev.entity)!;
      const byKey = states.get(ev.entity)!;
      let state = byKey.get(ev.keyText);
      if (!state) byKey.set(ev.keyText, (state = emptyState()));
      const carried = readVersion(ev.baseVersion);
      const node = this.topology.nodes.get(ev.node)!;
      const ctx = { entity, nodeIndex: this.nodeIndex, nodePriority: this.nodePriority, positionKey: positionKey(node.kind, ev.position.source), emitted: this.emitted };
      const decision = ev.resolve ? resolveOpen(state, ev.resolve, ctx) : classify(state, ev, carried, ctx);
      counts[decision.kind]++;
      if (debug) this.log.debug({ event: ev.id, key: ev.keyText, node: ev.node, decision: decision.kind, carried: format(carried), version: format(state.version) }, 'Vector clock');
      if (decision.kind === 'concurrent') {
        const c = decision.conflict;
        this.log.warn({ entity: ev.entity, key: ev.keyText, local: c.local.node, incoming: ev.node, winner: c.winner, strategy: c.strategy, open: c.open }, 'Conflict detected');
        if (c.open && !c.updatesOpen) {
          // manual: the writes this batch planned for the record (an earlier change that
          // now turns out to conflict) are dropped, so each node keeps its value
          for (const n of entity.nodes.keys()) slots.delete(`${n}\u0000${ev.entity}\u0000${ev.keyText}`);
        }
      }
      const mine: Array<{ id: string; write: PlannedWrite }> = [];
      if ('writes' in decision) {
        for (const w of decision.writes) {
          const id = `${w.node}\u0000${ev.entity}\u0000${ev.keyText}`;
          slots.set(id, { write: w, state, entity, key: ev.key!, keyText: ev.keyText, outcome: undefined }); // the last write per node and key wins
          mine.push({ id, write: w });
        }
      }
      eventSlots.push(mine);
      synced.push({ event: ev, decision, writes: [] });
    }
    await flush();

    const rejected: RejectedEvent[] = [];
    if (failed.size > 0) {
      const kept: SyncedEvent[] = [];
      const seen = new Set<string>();
      for (const s of synced) {
        const id = `${s.event.entity}\u0000${s.event.keyText}`;
        const f = failed.get(id);
        if (!f) {
          kept.push(s);
          continue;
        }
        rejected.push({ event: s.event, node: f.node, error: f.error, first: !seen.has(id) });
        seen.add(id);
      }
      for (const id of failed.keys()) {
        const [entity, keyText] = id.split('\u0000') as [string, string];
        states.get(entity)?.delete(keyText);
      }
      synced = kept;
    }
    return { synced, rejected, states, counts };
  }

  /**
   * A truncate of an entity whose policy is `propagate`, as one key-only delete per live
   * record, from the truncated node and at the truncate's source position. Each goes
   * through its own record's lane like any delete, so it keeps its place among that
   * record's changes: a record the node changed again after the truncate is past that
   * position, and its delete is recognised as a duplicate. Empty for `ignore`.
   */
  async truncateDeletes(db: pg.Pool, ev: ChangeEvent): Promise<ChangeEvent[]> {
    const entity = this.topology.entities.get(ev.entity);
    if (ev.op !== 't' || entity?.truncate !== 'propagate') return [];
    const { rows } = await db.query<{ record_key: string }>(
      'SELECT record_key FROM sync_metadata WHERE entity = $1 AND NOT tombstone AND version IS NOT NULL ORDER BY record_key',
      [entity.name],
    );
    return rows.map(({ record_key: keyText }) => {
      const parts = JSON.parse(keyText) as Row[string][];
      const key: Row = Object.fromEntries(entity.key.map((k, i) => [k, parts[i]!]));
      return { ...ev, id: `${ev.id}#${keyText}`, op: 'd', key, keyText, before: key, after: null, changed: null, baseVersion: null };
    });
  }
}

/** Whether `ev` could be the echo of `w`: a delete of a delete, or the row `w` writes. */
function mayEcho(ev: ChangeEvent, w: PlannedWrite): boolean {
  if (w.op === 'delete') return ev.op === 'd';
  return ev.op !== 'd' && ev.after !== null && rowDigest(ev.after) === w.digest;
}

function readVersion(buf: Buffer | null): VersionVector | null {
  if (buf === null || buf.length === 0) return null;
  try {
    return decode(buf);
  } catch {
    // Bytes that are not a format-1 vector were not written by a worker: no usable version.
    return null;
  }
}

