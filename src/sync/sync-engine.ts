import type pg from 'pg';
import type { EntityConfig, Topology } from '../config/topology.ts';
import type { ChangeEvent, Row } from '../events/change-event.ts';
import { positionKey } from '../events/source-position.ts';
import { decode, encode } from '../clock/codec.ts';
import { format, type VersionVector } from '../clock/version-vector.ts';
import type { Sink, UpsertRow, DeleteRow, WriteOutcome } from '../sinks/sink.ts';
import { classify, recordOutcome, type Decision, type PlannedWrite } from './classify.ts';
import { emptyState, type RecordState } from './record-state.ts';
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

export interface SyncBatchResult {
  synced: SyncedEvent[];
  /** Record states to persist, per entity, keyed by canonical key text. */
  states: Map<string, Map<string, RecordState>>;
  counts: Record<Decision['kind'], number>;
}

interface Slot {
  write: PlannedWrite;
  state: RecordState;
  entity: EntityConfig;
  key: Row;
  outcome: WriteOutcome | undefined;
}

/** Told about every sink batch: its node, duration, and per-row outcomes or the error. */
export type SinkObserver = (node: string, durationMs: number, result: WriteOutcome[] | Error) => void;

export type Logger = { debug(o: object, m: string): void; warn(o: object, m: string): void; isLevelEnabled(l: string): boolean };

/**
 * The sync stage of one lane batch (DESIGN §2 sync + apply): load the batch's record
 * states in one query per entity, classify every event in order, reduce the planned
 * writes to the last one per node and key, apply them with one sink call per node and
 * entity, and record which writes will echo. The caller commits the states, audit
 * leaves and checkpoint in one transaction afterwards.
 */
export class SyncEngine {
  private readonly topology: Topology;
  private readonly sinks: Map<string, Sink>;
  private readonly nodeIndex: Map<string, number>;
  private readonly nodePriority: Map<string, number>;
  private readonly store: StateStore;
  private readonly log: Logger;
  private readonly observe: SinkObserver;

  constructor(topology: Topology, sinks: Map<string, Sink>, nodeIndex: Map<string, number>, store: StateStore, log: Logger, observe: SinkObserver = () => undefined) {
    this.observe = observe;
    this.topology = topology;
    this.sinks = sinks;
    this.nodeIndex = nodeIndex;
    this.nodePriority = new Map([...topology.nodes.values()].map((n) => [n.name, n.priority]));
    this.store = store;
    this.log = log;
  }

  async process(db: pg.Pool, events: ChangeEvent[]): Promise<SyncBatchResult> {
    const keysByEntity = new Map<string, Set<string>>();
    for (const ev of events) {
      let set = keysByEntity.get(ev.entity);
      if (!set) keysByEntity.set(ev.entity, (set = new Set()));
      set.add(ev.keyText);
    }
    const states = new Map<string, Map<string, RecordState>>();
    await Promise.all([...keysByEntity].map(async ([entity, keys]) => {
      states.set(entity, await this.store.load(db, entity, [...keys]));
    }));

    const counts: Record<Decision['kind'], number> = { duplicate: 0, echo: 0, repair: 0, causal: 0, concurrent: 0, ignored: 0 };
    const synced: SyncedEvent[] = [];
    let slots = new Map<string, Slot>();
    let eventSlots: Array<Array<{ id: string; write: PlannedWrite }>> = [];
    let firstPending = 0;
    const debug = this.log.isLevelEnabled('debug');

    // Applies the writes planned so far and settles the audit writes of their events.
    const flush = async () => {
      await this.apply(slots);
      for (const slot of slots.values()) recordOutcome(slot.state, slot.write, slot.outcome!);
      for (let i = 0; i < eventSlots.length; i++) {
        synced[firstPending + i]!.writes = eventSlots[i]!.map(({ id, write }) => {
          const final = slots.get(id)!;
          return { node: write.node, op: write.op, version: encode(write.version).toString('hex'), outcome: final.write === write ? final.outcome! : 'superseded' };
        });
      }
      firstPending = synced.length;
      slots = new Map();
      eventSlots = [];
    };

    for (const ev of events) {
      // An event from a node this batch is about to write the same record at can be the
      // echo of a write made before a crash: apply what is planned first, so its echo
      // entry exists when the event is classified. Normal batches never split.
      if (slots.has(`${ev.node}\u0000${ev.entity}\u0000${ev.keyText}`)) await flush();
      const entity = this.topology.entities.get(ev.entity)!;
      const byKey = states.get(ev.entity)!;
      let state = byKey.get(ev.keyText);
      if (!state) byKey.set(ev.keyText, (state = emptyState()));
      const carried = readVersion(ev.baseVersion);
      const node = this.topology.nodes.get(ev.node)!;
      const decision = classify(state, ev, carried, {
        entity, nodeIndex: this.nodeIndex, nodePriority: this.nodePriority, positionKey: positionKey(node.kind, ev.position.source),
      });
      counts[decision.kind]++;
      if (debug) this.log.debug({ event: ev.id, key: ev.keyText, node: ev.node, decision: decision.kind, carried: format(carried), version: format(state.version) }, 'Vector clock');
      if (decision.kind === 'concurrent') {
        this.log.warn({ entity: ev.entity, key: ev.keyText, local: decision.conflict.local.node, incoming: ev.node, winner: decision.conflict.winner, strategy: decision.conflict.strategy }, 'Conflict detected');
      }
      const mine: Array<{ id: string; write: PlannedWrite }> = [];
      if ('writes' in decision) {
        for (const w of decision.writes) {
          const id = `${w.node}\u0000${ev.entity}\u0000${ev.keyText}`;
          slots.set(id, { write: w, state, entity, key: ev.key!, outcome: undefined }); // the last write per node and key wins
          mine.push({ id, write: w });
        }
      }
      eventSlots.push(mine);
      synced.push({ event: ev, decision, writes: [] });
    }
    await flush();
    return { synced, states, counts };
  }

  /** One applyBatch per node and entity; nodes in parallel, entities of a node in turn. */
  private async apply(slots: Map<string, Slot>): Promise<void> {
    const byNode = new Map<string, Map<EntityConfig, Slot[]>>();
    for (const slot of slots.values()) {
      let entities = byNode.get(slot.write.node);
      if (!entities) byNode.set(slot.write.node, (entities = new Map()));
      const list = entities.get(slot.entity) ?? [];
      list.push(slot);
      entities.set(slot.entity, list);
    }
    await Promise.all([...byNode].map(async ([node, entities]) => {
      const sink = this.sinks.get(node);
      if (!sink) throw new Error(`no sink for node ${node}`);
      for (const [entity, list] of entities) {
        const ups = list.filter((s) => s.write.op === 'upsert');
        const dels = list.filter((s) => s.write.op === 'delete');
        const expected = (s: Slot) => (s.write.expected === null ? null : encode(s.write.expected));
        const upserts: UpsertRow[] = ups.map((s) => ({ key: s.key, row: s.write.row!, version: encode(s.write.version), expected: expected(s), expectAbsent: s.write.expectedAbsent }));
        const deletes: DeleteRow[] = dels.map((s) => ({ key: s.key, expected: expected(s), anyVersion: s.write.anyVersion }));
        const started = performance.now();
        let res;
        try {
          res = await sink.applyBatch(entity, upserts, deletes);
        } catch (err) {
          this.observe(node, performance.now() - started, err as Error);
          throw err;
        }
        this.observe(node, performance.now() - started, [...res.upserts, ...res.deletes]);
        ups.forEach((s, i) => { s.outcome = res.upserts[i]; });
        dels.forEach((s, i) => { s.outcome = res.deletes[i]; });
      }
    }));
  }
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

