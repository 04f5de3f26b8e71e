import type { EntityConfig } from '../config/topology.ts';
import { encode } from '../clock/codec.ts';
import { errorMessage, TargetError, type FailureKind } from '../errors.ts';
import { sleep } from '../retry.ts';
import type { DeleteRow, Sink, UpsertRow, WriteOutcome } from '../sinks/sink.ts';
import type { WriteSlot } from '../sync/sync-engine.ts';

/** A row is tried alone this many times before it is rejected (DESIGN §6). */
export const REJECT_AFTER = 3;

/**
 * Told about every sink statement: its node, duration, and per-row outcomes, or the
 * error and what kind of failure the sink found it to be (only `unavailable` says
 * anything of the node's health).
 */
export type SinkObserver = (node: string, durationMs: number, result: WriteOutcome[] | { error: Error; kind: FailureKind }) => void;

/**
 * The apply step (DESIGN §2 apply): the sync engine decides what to write; this writes it
 * to the target nodes, one sink call per node and entity, and sets each slot's outcome,
 * which the engine then reads. It is the only part of a batch that calls the sinks.
 */
export class Applier {
  constructor(private readonly sinks: Map<string, Sink>, private readonly log: { warn(o: object, m: string): void }, private readonly observe: SinkObserver = () => undefined) {}

  /** Every target node answers (asked before a persistent failure is blamed on a record). */
  async ping(): Promise<void> {
    await Promise.all([...this.sinks.values()].map((s) => s.ping()));
  }

  /** One applyBatch per node and entity; nodes in parallel, entities of a node in turn. */
  async apply(slots: WriteSlot[]): Promise<void> {
    const byNode = new Map<string, Map<EntityConfig, WriteSlot[]>>();
    for (const slot of slots) {
      let entities = byNode.get(slot.write.node);
      if (!entities) byNode.set(slot.write.node, (entities = new Map()));
      const list = entities.get(slot.entity) ?? [];
      list.push(slot);
      entities.set(slot.entity, list);
    }
    await Promise.all([...byNode].map(async ([node, entities]) => {
      const sink = this.sinks.get(node);
      if (!sink) throw new Error(`no sink for node ${node}`);
      for (const [entity, list] of entities) await this.applyOnHalves(sink, entity, list);
    }));
  }

  /**
   * Writes the slots of one node and entity: one call for the whole list, normally. A
   * statement the node refuses for what its rows hold is retried on halves until the rows
   * at fault stand alone; a row refused alone REJECT_AFTER times is marked rejected, and
   * every other row is written (DESIGN §6). Any other failure is thrown: the batch is
   * retried whole, in order.
   */
  private async applyOnHalves(sink: Sink, entity: EntityConfig, list: WriteSlot[]): Promise<void> {
    const pending: WriteSlot[][] = [list];
    const tries = new Map<WriteSlot, number>();
    const refusedAlone = async (slot: WriteSlot, error: string) => {
      const n = (tries.get(slot) ?? 0) + 1;
      tries.set(slot, n);
      if (n >= REJECT_AFTER) {
        slot.outcome = 'rejected';
        slot.error = `${sink.node} refused the write ${n} times: ${error}`;
        this.log.warn({ node: sink.node, entity: entity.name, key: slot.keyText, err: error }, 'Target refused a row; it goes to the dead letters');
        return;
      }
      await sleep(50 * n); // a parent row in flight on another lane may land meanwhile
      pending.push([slot]);
    };
    while (pending.length > 0) {
      const chunk = pending.shift()!;
      const ups = chunk.filter((s) => s.write.op === 'upsert');
      const dels = chunk.filter((s) => s.write.op === 'delete');
      const expected = (s: WriteSlot) => (s.write.expected === null ? null : encode(s.write.expected));
      const upserts: UpsertRow[] = ups.map((s) => ({ key: s.key, row: s.write.row!, version: encode(s.write.version), expected: expected(s), expectAbsent: s.write.expectedAbsent }));
      const deletes: DeleteRow[] = dels.map((s) => ({ key: s.key, expected: expected(s), anyVersion: s.write.anyVersion }));
      const started = performance.now();
      let res;
      try {
        res = await sink.applyBatch(entity, upserts, deletes);
      } catch (err) {
        const failure = TargetError.from(sink.node, err);
        this.observe(sink.node, performance.now() - started, { error: failure, kind: failure.kind });
        if (failure.kind !== 'rows') throw failure;
        if (chunk.length > 1) pending.unshift(chunk.slice(0, chunk.length >> 1), chunk.slice(chunk.length >> 1));
        else await refusedAlone(chunk[0]!, errorMessage(failure.cause ?? failure));
        continue;
      }
      const outcomes: WriteOutcome[] = [];
      const settle = (s: WriteSlot, o: (typeof res.upserts)[number]) => {
        if (typeof o === 'string') {
          s.outcome = o;
          outcomes.push(o);
        }
      };
      ups.forEach((s, i) => settle(s, res.upserts[i]!));
      dels.forEach((s, i) => settle(s, res.deletes[i]!));
      this.observe(sink.node, performance.now() - started, outcomes);
      const refused = [...ups.map((s, i) => [s, res.upserts[i]!] as const), ...dels.map((s, i) => [s, res.deletes[i]!] as const)];
      for (const [s, o] of refused) if (typeof o !== 'string') await refusedAlone(s, o.rejected);
    }
  }
}
