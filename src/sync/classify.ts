import type { EntityConfig } from '../config/topology.ts';
import type { ChangeEvent, ResolveCommand, Row } from '../events/change-event.ts';
import { compare, counterOf, equals, merge, withCounter, type VersionVector } from '../clock/version-vector.ts';
import { nodeState, PENDING_CONFLICT, rowDigest, type EchoEntry, type RecordState } from './record-state.ts';
import { sameValue } from '../events/debezium.ts';
import { hlcOf, hlcReceive, hlcTick } from '../clock/hlc.ts';

/**
 * Classification of one source change against its record's state (DESIGN §6). Pure:
 * it mutates only the state it is given and returns what to write where. The caller
 * applies the writes, then calls `recordOutcome` for each, which pushes the echo
 * entries of the writes that landed.
 */
export interface PlannedWrite {
  node: string;
  op: 'upsert' | 'delete';
  row: Row | null;
  version: VersionVector;
  /** What the node must hold for the write to happen. */
  expected: VersionVector | null;
  expectedAbsent: boolean;
  /** Delete whatever the node holds (a winning delete after a conflict). */
  anyVersion: boolean;
  digest: string | null;
}

export interface Conflict {
  entity: string;
  key: Row;
  local: { node: string | null; version: VersionVector | null; value: Row | null; hlc: bigint; deleted: boolean };
  incoming: { node: string; version: VersionVector; value: Row | null; hlc: bigint; deleted: boolean };
  strategy: EntityConfig['policy'];
  /** `merged`: the merge policy combined both sides' changed fields. Under `manual`, the suggested winner (lww's). */
  winner: 'local' | 'incoming' | 'merged';
  /** The value written to every node (null: the record is deleted); under `manual`, none is written. */
  value: Row | null;
  merged: VersionVector;
  /** `manual`: the conflict stays open until an operator resolves it. */
  open: boolean;
  /** `manual`: the record already had an open conflict; this change updates its side of it. */
  updatesOpen: boolean;
}

export type Decision =
  | { kind: 'duplicate' }
  | { kind: 'echo'; popped: number }
  | { kind: 'repair'; writes: PlannedWrite[] }
  | { kind: 'causal'; version: VersionVector; writes: PlannedWrite[] }
  | { kind: 'concurrent'; version: VersionVector; writes: PlannedWrite[]; conflict: Conflict }
  | { kind: 'resolved'; version: VersionVector; writes: PlannedWrite[]; command: ResolveCommand }
  | { kind: 'ignored'; reason: string };

export interface ClassifyContext {
  entity: EntityConfig;
  /** Node name -> small integer (sync_nodes). */
  nodeIndex: Map<string, number>;
  nodePriority: Map<string, number>;
  /** Source position of the event as a sortable string. */
  positionKey: string;
  /** A row as a node will emit it once written there (MongoDB cuts timestamps to ms); identity when absent. */
  emitted?: (node: string, row: Row, entity: EntityConfig) => Row;
}

/** The state a node is believed to hold once its pending echoes are in. */
function expectedAt(state: RecordState, node: string): { version: VersionVector | null; absent: boolean } {
  const n = nodeState(state, node);
  const newest = n.fifo[n.fifo.length - 1];
  if (newest) return newest.delete ? { version: newest.pushed, absent: true } : { version: newest.pushed, absent: false };
  return { version: n.rowVersion, absent: !n.present };
}

function planWrite(ctx: ClassifyContext, state: RecordState, node: string, row: Row | null, version: VersionVector, anyVersion = false): PlannedWrite {
  const exp = expectedAt(state, node);
  return {
    node,
    op: row === null ? 'delete' : 'upsert',
    row,
    version,
    expected: exp.absent ? null : exp.version,
    expectedAbsent: exp.absent,
    anyVersion,
    // what the node will emit, so that its echo matches (DESIGN §6, Echoes); a target-only
    // node emits nothing, and hashing a 1 KB row twice per event showed in the load profile
    digest: row === null || ctx.entity.echoless.has(node) ? null : rowDigest(ctx.emitted ? ctx.emitted(node, row, ctx.entity) : row),
  };
}

function sameVersion(a: VersionVector | null, b: VersionVector | null): boolean {
  return equals(a, b);
}

/**
 * Called per write after the sink reported it. A write that changed the row, or found it
 * already at the new version, will come back as an echo (unless the node is not captured): it gets one FIFO entry (never
 * two for one version, so a replay after a crash yields exactly one echo).
 */
export function recordOutcome(state: RecordState, w: PlannedWrite, outcome: 'applied' | 'already' | 'cas-skipped', echoes = true): void {
  if (outcome === 'cas-skipped') return;
  const n = nodeState(state, w.node);
  if (!echoes) {
    // a target-only node: nothing will come back, so what was written is what it holds
    n.seen = w.version;
    n.present = w.op !== 'delete';
    n.rowVersion = w.op === 'delete' ? null : w.version;
    return;
  }
  if (n.fifo.some((e) => sameVersion(e.pushed, w.version) && e.delete === (w.op === 'delete'))) return;
  if (outcome === 'already' && w.op === 'delete') {
    // Nothing was there to emit a delete, so no echo will come. Where the node's own
    // delete has been seen already (a conflict between deletes), it now holds what was
    // written, and its next insert builds on this tombstone. Otherwise its own delete is
    // still on its way and is classified against the record when it comes.
    if (!n.present) {
      n.seen = w.version;
      n.rowVersion = null;
    }
    return;
  }
  const entry: EchoEntry = { expected: w.expected, expectedAbsent: w.expectedAbsent, pushed: w.version, digest: w.digest, delete: w.op === 'delete' };
  n.fifo.push(entry);
}

export function classify(state: RecordState, ev: ChangeEvent, carried: VersionVector | null, ctx: ClassifyContext): Decision {
  const { entity } = ctx;
  const node = ev.node;
  const n = nodeState(state, node);

  if (ev.op === 't') return { kind: 'ignored', reason: 'truncate' };
  if (n.position !== null && ctx.positionKey <= n.position) return { kind: 'duplicate' };
  n.position = ctx.positionKey;

  const isDelete = ev.op === 'd';
  const digest = isDelete ? null : rowDigest(ev.after!);

  // Echo: the version and the after-image digest match a pending entry; pop it and all
  // older. An entity without a version column can only be matched by its digest.
  const versioned = entity.versionColumn !== undefined;
  const fullBefore = isDelete && ev.before !== null && Object.keys(ev.before).length === entity.columns.size && carried !== null;
  for (let i = 0; i < n.fifo.length; i++) {
    const e = n.fifo[i]!;
    const match = isDelete
      ? e.delete && (!fullBefore || (e.expectedAbsent ? carried === null : sameVersion(e.expected, carried)))
      : !e.delete && e.digest === digest && (!versioned || sameVersion(e.pushed, carried));
    if (match) {
      n.fifo.splice(0, i + 1);
      n.seen = e.pushed;
      n.present = !e.delete;
      n.rowVersion = e.delete ? null : e.pushed;
      return { kind: 'echo', popped: i + 1 };
    }
  }

  // A version this node never held by our account: a worker whose state was lost (or a
  // zombie) wrote it. Not a genuine change: remember it, and put the node back to the
  // current state by compare-and-set on it. An insert counts too once the record has
  // state: after a crash, the replay can fold the write that made it into a later one
  // for the same node and key, so no echo entry waits for it. An insert of a record
  // without state (a new group's first sight of a row) stays a genuine change.
  if (!isDelete && (ev.op !== 'c' || state.version !== null) && carried !== null && !sameVersion(carried, n.rowVersion) && !sameVersion(carried, n.seen) && !n.fifo.some((e) => sameVersion(e.pushed, carried))) {
    n.present = true;
    n.rowVersion = carried;
    if (state.version === null) return { kind: 'ignored', reason: 'unknown version on a record without state' };
    const w = planWrite(ctx, state, node, state.tombstone ? null : state.value, state.version, state.tombstone);
    return { kind: 'repair', writes: [w] };
  }

  // A genuine change. Its base: the carried version where the image has one, else what
  // this node is known to have seen (inserts, key-only deletes, application-inserted rows).
  const base = ev.op === 'c' || (isDelete && !fullBefore) || carried === null ? n.seen : carried;
  const nodeIdx = ctx.nodeIndex.get(node);
  if (nodeIdx === undefined) throw new Error(`node ${node} has no index in sync_nodes`);
  const current = state.version ?? [];
  const E = withCounter(base ?? [], nodeIdx, counterOf(current, nodeIdx) + 1);
  // The node has seen its own change; its row keeps the version the application left.
  n.seen = E;
  n.present = !isDelete;
  n.rowVersion = isDelete ? null : carried;
  const incomingValue = isDelete ? null : ev.after;
  const incomingHlc = hlcOf(ev.sourceTsMs);

  const order = compare(E, current);
  if (order === 'dominates' || state.version === null) {
    state.version = E;
    state.hlc = hlcTick(state.hlc, ev.sourceTsMs);
    state.origin = node;
    state.tombstone = isDelete;
    state.value = incomingValue;
    const writes: PlannedWrite[] = [];
    for (const other of entity.targets) {
      if (other !== node) writes.push(planWrite(ctx, state, other, incomingValue, E));
    }
    return { kind: 'causal', version: E, writes };
  }

  // Concurrent: a conflict.
  const merged = merge(E, current);
  const local = { node: state.origin, version: state.version, value: state.value, hlc: state.hlc, deleted: state.tombstone };
  const incoming = { node, version: E, value: incomingValue, hlc: incomingHlc, deleted: isDelete };
  const sides = { entity: entity.name, key: ev.key!, local, incoming, strategy: entity.policy, merged };
  state.version = merged;
  state.hlc = hlcReceive(state.hlc, incomingHlc);

  if (entity.policy === 'manual') {
    // The conflict stays open: every node keeps the value it holds, and the record keeps
    // its value, until an operator resolves it (resolveOpen). Later concurrent changes
    // while it is open update its sides rather than open another.
    const updatesOpen = state.openConflict !== null;
    if (!updatesOpen) state.openConflict = PENDING_CONFLICT;
    const suggested = resolve(entity, local, incoming, ctx);
    const conflict: Conflict = { ...sides, winner: suggested, value: suggested === 'incoming' ? incomingValue : local.value, open: true, updatesOpen };
    return { kind: 'concurrent', version: merged, writes: [], conflict };
  }

  // Resolve by the entity's policy and write the winner, with the merged version, to every
  // node (the source too), as a full compare-and-set upsert.
  let winner: Conflict['winner'] = resolve(entity, local, incoming, ctx);
  let winValue = winner === 'incoming' ? incomingValue : state.value;
  let winDeleted = winner === 'incoming' ? isDelete : state.tombstone;
  if (entity.policy === 'merge' && !local.deleted && !isDelete && local.value && ev.before && ev.changed) {
    // Fields only the incoming side changed (against its before image, the common base)
    // are taken from it; fields both changed go to lww's winner.
    const value: Row = { ...local.value };
    for (const c of ev.changed) {
      const localChanged = !sameValue(local.value[c], ev.before[c]);
      if (!localChanged || winner === 'incoming') value[c] = incomingValue![c]!;
    }
    winner = 'merged';
    winValue = value;
    winDeleted = false;
  }
  state.origin = winner === 'incoming' ? node : state.origin;
  state.tombstone = winDeleted;
  state.value = winDeleted ? null : winValue;
  const writes = entity.targets.map((x) => planWrite(ctx, state, x, winDeleted ? null : winValue, merged, winDeleted));
  const conflict: Conflict = { ...sides, winner, value: state.value, open: false, updatesOpen: false };
  return { kind: 'concurrent', version: merged, writes, conflict };
}

/**
 * An operator's resolution of the record's open conflict (DESIGN §6, manual): the winner
 * is written to every node with the record's merged version, as a full compare-and-set
 * upsert (or delete), so every node's next genuine change dominates it. A command for a
 * conflict that is not the record's open one (already converged, a replay) is ignored.
 */
export function resolveOpen(state: RecordState, cmd: ResolveCommand, ctx: ClassifyContext): Decision {
  if (state.openConflict !== cmd.conflictId || state.version === null) return { kind: 'ignored', reason: 'conflict not open on this record' };
  const version = state.version;
  const deleted = cmd.value === null;
  state.openConflict = null;
  state.value = cmd.value;
  state.tombstone = deleted;
  state.origin = cmd.winnerNode ?? state.origin;
  state.hlc = hlcTick(state.hlc, cmd.atMs);
  const writes = ctx.entity.targets.map((x) => planWrite(ctx, state, x, cmd.value, version, deleted));
  return { kind: 'resolved', version, writes, command: cmd };
}

/** lww (default) and priority; delete against update follows deleteWins. */
function resolve(
  entity: EntityConfig,
  local: Conflict['local'],
  incoming: Conflict['incoming'],
  ctx: ClassifyContext,
): 'local' | 'incoming' {
  if (local.deleted !== incoming.deleted) {
    const deleteSide = local.deleted ? 'local' : 'incoming';
    return entity.deleteWins ? deleteSide : deleteSide === 'local' ? 'incoming' : 'local';
  }
  const prio = (n: string | null) => (n === null ? Number.MAX_SAFE_INTEGER : ctx.nodePriority.get(n) ?? Number.MAX_SAFE_INTEGER);
  const idx = (n: string | null) => (n === null ? Number.MAX_SAFE_INTEGER : ctx.nodeIndex.get(n) ?? Number.MAX_SAFE_INTEGER);
  const byNode = (): 'local' | 'incoming' => {
    if (prio(incoming.node) !== prio(local.node)) return prio(incoming.node) < prio(local.node) ? 'incoming' : 'local';
    return idx(incoming.node) < idx(local.node) ? 'incoming' : 'local';
  };
  if (entity.policy === 'priority') return byNode();
  if (incoming.hlc !== local.hlc) return incoming.hlc > local.hlc ? 'incoming' : 'local';
  return byNode();
}
