import { describe, expect, it } from 'vitest';
import { parseTopology } from '../../src/config/topology.ts';
import { classify, recordOutcome, resolveOpen, type ClassifyContext, type Decision, type PlannedWrite } from '../../src/sync/classify.ts';
import { emptyState, type RecordState } from '../../src/sync/record-state.ts';
import { fromObject, type VersionVector } from '../../src/clock/version-vector.ts';
import type { ChangeEvent, Row } from '../../src/events/change-event.ts';

const topology = parseTopology({
  nodes: { pg: { kind: 'postgres', url: 'x', priority: 1 }, maria: { kind: 'mariadb', url: 'y', priority: 2 } },
  entities: {
    customers: { key: ['id'], columns: { id: 'bigint', name: 'text' }, nodes: { pg: 'public.customers', maria: 'app.customers' } },
    accounts: { key: ['id'], deleteWins: false, policy: 'priority', columns: { id: 'bigint', name: 'text' }, nodes: { pg: 'public.accounts', maria: 'app.accounts' } },
  },
}, 't');
const nodeIndex = new Map([['pg', 1], ['maria', 2]]);
const nodePriority = new Map([['pg', 1], ['maria', 2]]);
const v = fromObject;
let pos = 0;

function ctx(entity = 'customers'): ClassifyContext {
  return { entity: topology.entities.get(entity)!, nodeIndex, nodePriority, positionKey: String(++pos).padStart(10, '0') };
}

function ev(node: string, op: 'c' | 'u' | 'd', name: string | null, ts = 1000): ChangeEvent {
  const row: Row | null = name === null ? null : { id: 1, name };
  return {
    id: `${node}/${pos}`, entity: 'customers', node, op, key: { id: 1 }, keyText: '[1]',
    before: op === 'c' ? null : { id: 1, name: 'before' }, after: op === 'd' ? null : row,
    changed: null, baseVersion: null, sourceTsMs: ts, emittedTsMs: ts,
    position: { topic: 't', partition: 0, offset: pos, source: {} }, transactionId: null,
  };
}

/** Applies every planned write as a sink would report it, default 'applied'. */
function land(state: RecordState, d: Decision, outcome: 'applied' | 'already' | 'cas-skipped' = 'applied'): PlannedWrite[] {
  const writes = 'writes' in d ? d.writes : [];
  for (const w of writes) recordOutcome(state, w, outcome);
  return writes;
}

/** What the node emits for the worker's write: the write's version, and its row. */
function echoOf(w: PlannedWrite): [ChangeEvent, VersionVector | null] {
  const e = ev(w.node, w.op === 'delete' ? 'd' : 'u', w.row === null ? null : (w.row.name as string));
  return [e, w.op === 'delete' ? w.expected : w.version];
}

describe('classification (DESIGN §6)', () => {
  it('an insert is causal, its write expects absence, and its echo is recognised', () => {
    const s = emptyState();
    const d = classify(s, ev('pg', 'c', 'a'), null, ctx());
    expect(d).toMatchObject({ kind: 'causal', version: v({ 1: 1 }) });
    const [w] = land(s, d);
    expect(w).toMatchObject({ node: 'maria', op: 'upsert', expectedAbsent: true, expected: null });
    const [echo, carried] = echoOf(w!);
    expect(classify(s, { ...echo, op: 'c' }, carried, ctx())).toEqual({ kind: 'echo', popped: 1 });
    expect(s.nodes.maria!.fifo).toHaveLength(0);
    expect(s.nodes.maria!.seen).toEqual(v({ 1: 1 }));
  });

  it('an update at the other node after the echo is causal and writes back compare-and-set on NULL', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a'), null, ctx()));
    classify(s, ...withCtx(echoOf(w!)));
    const d = classify(s, ev('maria', 'u', 'b'), v({ 1: 1 }), ctx());
    expect(d).toMatchObject({ kind: 'causal', version: v({ 1: 1, 2: 1 }) });
    // pg's row was inserted by an application: present, version NULL
    expect((d as { writes: PlannedWrite[] }).writes[0]).toMatchObject({ node: 'pg', expected: null, expectedAbsent: false });
  });

  it('recognises a redelivered change by its source position', () => {
    const s = emptyState();
    const c = ctx();
    classify(s, ev('pg', 'c', 'a'), null, c);
    expect(classify(s, ev('pg', 'c', 'a'), null, { ...c })).toEqual({ kind: 'duplicate' });
  });

  it('detects concurrent updates and writes the lww winner with the merged version to every node', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a', 1000), null, ctx()));
    classify(s, ...withCtx(echoOf(w!)));
    // both databases change the row while the worker is paused; maria's is later
    const first = classify(s, ev('pg', 'u', 'from pg', 2000), null, ctx());
    expect(first.kind).toBe('causal');
    land(s, first, 'cas-skipped'); // maria moved on meanwhile
    const second = classify(s, ev('maria', 'u', 'from maria', 3000), v({ 1: 1 }), ctx());
    expect(second.kind).toBe('concurrent');
    const c = second as Extract<Decision, { kind: 'concurrent' }>;
    expect(c.conflict.winner).toBe('incoming');
    expect(c.version).toEqual(v({ 1: 2, 2: 1 }));
    expect(c.writes.map((x) => [x.node, x.row?.name, x.version])).toEqual([
      ['pg', 'from maria', v({ 1: 2, 2: 1 })],
      ['maria', 'from maria', v({ 1: 2, 2: 1 })],
    ]);
    // maria already holds the winning value: its write is still a full CAS upsert, whose echo matches by digest
    expect(c.writes[1]).toMatchObject({ expected: v({ 1: 1 }), expectedAbsent: false });
    land(s, second);
    for (const x of c.writes) expect(classify(s, ...withCtx(echoOf(x))).kind).toBe('echo');
    // a later edit at the node that held the winner is causal, not a second conflict
    expect(classify(s, ev('maria', 'u', 'again', 4000), c.version, ctx()).kind).toBe('causal');
  });

  it('breaks an lww tie by node priority', () => {
    const s = emptyState();
    land(s, classify(s, ev('maria', 'c', 'm', 5000), null, ctx()), 'cas-skipped');
    const d = classify(s, ev('pg', 'c', 'p', 5000), null, ctx());
    expect(d.kind).toBe('concurrent');
    expect((d as Extract<Decision, { kind: 'concurrent' }>).conflict.winner).toBe('incoming'); // pg has priority 1
  });

  it('a delete made by the worker echoes without a conflict, and a re-insert there propagates', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a'), null, ctx()));
    classify(s, ...withCtx(echoOf(w!)));
    const del = classify(s, ev('pg', 'd', null), null, ctx());
    expect(del.kind).toBe('causal');
    const [dw] = land(s, del);
    expect(dw).toMatchObject({ node: 'maria', op: 'delete', expected: v({ 1: 1 }) });
    expect(classify(s, ...withCtx(echoOf(dw!))).kind).toBe('echo');
    expect(s.nodes.maria).toMatchObject({ present: false });
    const again = classify(s, ev('maria', 'c', 'back'), null, ctx());
    expect(again.kind).toBe('causal');
    expect((again as { writes: PlannedWrite[] }).writes[0]).toMatchObject({ node: 'pg', op: 'upsert', expectedAbsent: true });
  });

  it('after a re-insert by an application, writes to that node expect its row with a NULL version', () => {
    // found by the 1,000-operation test: the base of the re-insert is the tombstone, but the
    // row the application inserted holds no version at all
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a'), null, ctx()));
    classify(s, ...withCtx(echoOf(w!)));
    const [dw] = land(s, classify(s, ev('pg', 'd', null), null, ctx()));
    classify(s, ...withCtx(echoOf(dw!)));
    const again = classify(s, ev('maria', 'c', 'b'), null, ctx());
    const [toPg] = land(s, again);
    classify(s, ...withCtx(echoOf(toPg!)));
    const upd = classify(s, ev('pg', 'u', 'c'), toPg!.version, ctx());
    expect(upd.kind).toBe('causal');
    expect((upd as { writes: PlannedWrite[] }).writes[0]).toMatchObject({ node: 'maria', expected: null, expectedAbsent: false });
    // an application edit at maria made before that write landed (still NULL) is concurrent
    land(s, upd);
    expect(classify(s, ev('maria', 'u', 'd'), null, ctx()).kind).toBe('concurrent');
  });

  it('an application update right after a worker write, still carrying the worker version, propagates', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a'), null, ctx()));
    const [echo, carried] = echoOf(w!);
    classify(s, echo, carried, ctx());
    const d = classify(s, ev('maria', 'u', 'app edit'), carried, ctx());
    expect(d.kind).toBe('causal');
  });

  it('a replay after lost state writes once and expects one echo', () => {
    const s = emptyState();
    const lost = structuredClone(s);
    const c1 = ctx();
    const first = classify(s, ev('pg', 'c', 'a'), null, c1);
    land(s, first); // written, then the process died before committing the state
    const replay = classify(lost, ev('pg', 'c', 'a'), null, { ...c1 });
    land(lost, replay, 'already');
    land(lost, replay, 'already');
    expect(lost.nodes.maria!.fifo).toHaveLength(1);
  });

  it('repairs a node written by a worker whose state was lost', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, ev('pg', 'c', 'a'), null, ctx()));
    classify(s, ...withCtx(echoOf(w!)));
    const d = classify(s, ev('maria', 'u', 'zombie'), v({ 1: 7 }), ctx());
    expect(d.kind).toBe('repair');
    expect((d as { writes: PlannedWrite[] }).writes[0]).toMatchObject({ node: 'maria', row: { id: 1, name: 'a' }, expected: v({ 1: 7 }) });
  });

  it('repairs an insert made before a crash by a write the replay folded into a later one', () => {
    // maria got 'a' at {pg:1}; the state was lost; the replay batch holds pg's insert and
    // its update, so only the update's write goes out, and maria's CAS on absence skips it
    const s = emptyState();
    classify(s, ev('pg', 'c', 'a'), null, ctx());
    const later = classify(s, ev('pg', 'u', 'b'), null, ctx());
    land(s, later, 'cas-skipped');
    const d = classify(s, ev('maria', 'c', 'a'), v({ 1: 1 }), ctx());
    expect(d.kind).toBe('repair');
    const [w] = land(s, d);
    expect(w).toMatchObject({ node: 'maria', row: { id: 1, name: 'b' }, version: v({ 1: 2 }), expected: v({ 1: 1 }) });
    expect(classify(s, ...withCtx(echoOf(w!)))).toEqual({ kind: 'echo', popped: 1 });
  });

  it('an insert carrying a version, of a record without state, is a genuine change', () => {
    const s = emptyState();
    expect(classify(s, ev('maria', 'c', 'a'), v({ 1: 3 }), ctx())).toMatchObject({ kind: 'causal' });
  });

  it('delete against update: deleteWins decides', () => {
    for (const [entity, expectDeleted] of [['customers', true], ['accounts', false]] as const) {
      const s = emptyState();
      const [w] = land(s, classify(s, { ...ev('pg', 'c', 'a'), entity }, null, ctx(entity)));
      classify(s, ...withCtx(echoOf(w!), entity));
      land(s, classify(s, { ...ev('pg', 'u', 'edit', 2000), entity }, null, ctx(entity)), 'cas-skipped');
      const d = classify(s, { ...ev('maria', 'd', null, 3000), entity }, null, ctx(entity));
      expect(d.kind).toBe('concurrent');
      expect(s.tombstone).toBe(expectDeleted);
      const ops = (d as { writes: PlannedWrite[] }).writes.map((x) => x.op);
      expect(ops).toEqual(expectDeleted ? ['delete', 'delete'] : ['upsert', 'upsert']);
    }
  });
});

function withCtx([e, carried]: [ChangeEvent, VersionVector | null], entity = 'customers'): [ChangeEvent, VersionVector | null, ClassifyContext] {
  return [{ ...e, entity }, carried, ctx(entity)];
}

describe('entities without a version column', () => {
  const t2 = parseTopology({
    nodes: { pg: { kind: 'postgres', url: 'x' }, maria: { kind: 'mariadb', url: 'y' } },
    entities: { orders: { key: ['id'], versionColumn: null, columns: { id: 'bigint', name: 'text' }, nodes: { pg: 'public.orders', maria: 'app.orders' } } },
  }, 't');
  const c2 = (): ClassifyContext => ({ entity: t2.entities.get('orders')!, nodeIndex, nodePriority, positionKey: String(++pos).padStart(10, '0') });
  const o = (node: string, op: 'c' | 'u' | 'd', name: string | null): ChangeEvent => ({ ...ev(node, op, name), entity: 'orders' });

  it('recognise echoes by digest alone, so nothing loops', () => {
    const s = emptyState();
    const [w] = land(s, classify(s, o('pg', 'c', 'a'), null, c2()));
    expect(w).toMatchObject({ node: 'maria', op: 'upsert' });
    // the row comes back from maria with no version at all
    expect(classify(s, o('maria', 'c', 'a'), null, c2()).kind).toBe('echo');
    const upd = classify(s, o('maria', 'u', 'b'), null, c2());
    expect(upd.kind).toBe('causal');
    const [back] = land(s, upd);
    expect(classify(s, o('pg', 'u', back!.row!.name as string), null, c2()).kind).toBe('echo');
  });
});

describe('policies merge and manual (DESIGN §6)', () => {
  const t3 = parseTopology({
    nodes: { pg: { kind: 'postgres', url: 'x', priority: 1 }, maria: { kind: 'mariadb', url: 'y', priority: 2 } },
    entities: {
      people: { key: ['id'], policy: 'merge', columns: { id: 'bigint', name: 'text', email: 'text', city: 'text' }, nodes: { pg: 'public.people', maria: 'app.people' } },
      notes: { key: ['id'], policy: 'manual', columns: { id: 'bigint', name: 'text' }, nodes: { pg: 'public.notes', maria: 'app.notes' } },
    },
  }, 't');
  const cx = (entity: string): ClassifyContext => ({ entity: t3.entities.get(entity)!, nodeIndex, nodePriority, positionKey: String(++pos).padStart(10, '0') });
  const change = (entity: string, node: string, op: 'c' | 'u' | 'd', before: Row | null, after: Row | null, ts: number): ChangeEvent => ({
    id: `${node}/${pos}`, entity, node, op, key: { id: 1 }, keyText: '[1]', before, after,
    changed: before && after ? Object.keys(after).filter((k) => before[k] !== after[k]) : null,
    baseVersion: null, sourceTsMs: ts, emittedTsMs: ts, position: { topic: 't', partition: 0, offset: pos, source: {} }, transactionId: null,
  });
  /** A record both nodes hold at version {pg:1}, as after an insert at pg and its echo at maria. */
  function synced(entity: string, row: Row): RecordState {
    const s = emptyState();
    const [w] = land(s, classify(s, change(entity, 'pg', 'c', null, row, 1000), null, cx(entity)));
    expect(classify(s, change(entity, 'maria', 'c', null, row, 1000), w!.version, cx(entity)).kind).toBe('echo');
    return s;
  }

  it('merge: disjoint changed fields combine; a field both changed goes to lww', () => {
    const base = { id: 1, name: 'Ann', email: 'a@x', city: 'Oslo' };
    const s = synced('people', base);
    const atPg = classify(s, change('people', 'pg', 'u', base, { ...base, name: 'Anna', city: 'Bergen' }, 2000), v({ 1: 1 }), cx('people'));
    expect(atPg.kind).toBe('causal');
    land(s, atPg, 'cas-skipped');
    // maria changed email (only it) and city (both); maria's change is later, so lww gives it city
    const d = classify(s, change('people', 'maria', 'u', base, { ...base, email: 'ann@y', city: 'Tromsø' }, 3000), v({ 1: 1 }), cx('people'));
    const c = (d as Extract<Decision, { kind: 'concurrent' }>).conflict;
    expect(c.winner).toBe('merged');
    expect(c.value).toEqual({ id: 1, name: 'Anna', email: 'ann@y', city: 'Tromsø' });
    expect((d as Extract<Decision, { kind: 'concurrent' }>).writes.map((w) => [w.node, w.row])).toEqual([['pg', c.value], ['maria', c.value]]);
    expect(s.value).toEqual(c.value);
  });

  it('manual: the conflict stays open, nothing is written, later changes update it, and a resolution converges every node', () => {
    const s = synced('notes', { id: 1, name: 'a' });
    land(s, classify(s, change('notes', 'pg', 'u', { id: 1, name: 'a' }, { id: 1, name: 'from pg' }, 2000), v({ 1: 1 }), cx('notes')), 'cas-skipped');
    const d = classify(s, change('notes', 'maria', 'u', { id: 1, name: 'a' }, { id: 1, name: 'from maria' }, 3000), v({ 1: 1 }), cx('notes'));
    expect(d.kind).toBe('concurrent');
    const c = (d as Extract<Decision, { kind: 'concurrent' }>).conflict;
    expect({ open: c.open, updatesOpen: c.updatesOpen, winner: c.winner, writes: (d as { writes: unknown[] }).writes }).toEqual({ open: true, updatesOpen: false, winner: 'incoming', writes: [] });
    expect(s.openConflict).toBe(-1); // numbered by the commit
    s.openConflict = 7;
    // a further edit at maria while open updates the conflict, still writes nothing
    const again = classify(s, change('notes', 'maria', 'u', { id: 1, name: 'from maria' }, { id: 1, name: 'maria 2' }, 4000), v({ 1: 1 }), cx('notes'));
    expect(again).toMatchObject({ kind: 'concurrent', writes: [], conflict: { open: true, updatesOpen: true } });
    // a resolution for another conflict is ignored; this one writes the winner with the merged version everywhere
    expect(resolveOpen(s, { conflictId: 8, value: { id: 1, name: 'x' }, winnerNode: 'pg', by: 'ops', strategy: 'api_winner', atMs: 5000 }, cx('notes')).kind).toBe('ignored');
    const r = resolveOpen(s, { conflictId: 7, value: { id: 1, name: 'from pg' }, winnerNode: 'pg', by: 'ops', strategy: 'api_winner', atMs: 5000 }, cx('notes'));
    expect(r.kind).toBe('resolved');
    const writes = land(s, r);
    expect(writes.map((w) => [w.node, w.op, w.row?.name, w.version])).toEqual([['pg', 'upsert', 'from pg', s.version], ['maria', 'upsert', 'from pg', s.version]]);
    expect(s.openConflict).toBeNull();
    for (const w of writes) expect(classify(s, change('notes', w.node, 'u', null, w.row, 6000), w.version, cx('notes')).kind).toBe('echo');
    // after convergence, an edit is causal again
    expect(classify(s, change('notes', 'maria', 'u', { id: 1, name: 'from pg' }, { id: 1, name: 'later' }, 7000), s.version, cx('notes')).kind).toBe('causal');
  });
});

describe('node roles: a source-only node and target-only nodes (the load topology)', () => {
  const t = parseTopology({
    nodes: { load: { kind: 'postgres', role: 'source' }, pg: { kind: 'postgres', url: 'x', role: 'target' }, maria: { kind: 'mariadb', url: 'y', role: 'target' } },
    entities: { items: { key: ['id'], columns: { id: 'bigint', name: 'text' }, nodes: { load: 'loadtest.items', pg: 'loadtest.items', maria: 'loadtest.items' } } },
  }, 't');
  const index = new Map([['load', 1], ['pg', 2], ['maria', 3]]);
  const c = (): ClassifyContext => ({ entity: t.entities.get('items')!, nodeIndex: index, nodePriority: new Map(), positionKey: String(++pos).padStart(10, '0') });
  const loadEv = (op: 'c' | 'u' | 'd', name: string | null) => ({ ...ev('load', op, name), entity: 'items' });

  it('reads only the source\'s topic, and writes only the targets', () => {
    expect([...t.topics.keys()]).toEqual(['load.loadtest.items']);
    expect(t.entities.get('items')!.targets).toEqual(['pg', 'maria']);
    const d = classify(emptyState(), loadEv('c', 'a'), null, c());
    expect(d.kind).toBe('causal');
    expect(('writes' in d ? d.writes : []).map((w) => w.node)).toEqual(['pg', 'maria']);
    expect(('writes' in d ? d.writes : []).map((w) => w.digest)).toEqual([null, null]); // no echo to match
  });

  it('expects no echo from a target-only node: a long run of changes stays causal and keeps no FIFO', () => {
    const s = emptyState();
    for (let i = 0; i < 200; i++) {
      const d = classify(s, loadEv(i === 0 ? 'c' : i === 199 ? 'd' : 'u', i === 199 ? null : `v${i}`), null, c());
      expect(d.kind).toBe('causal');
      for (const w of 'writes' in d ? d.writes : []) recordOutcome(s, w, 'applied', false);
    }
    expect(s.nodes.pg!.fifo).toHaveLength(0);
    expect(s.nodes.maria!.fifo).toHaveLength(0);
    expect(s.nodes.pg!.seen).toEqual(s.version);
    expect(s.nodes.pg!.present).toBe(false);
  });

  it('refuses a bad role and an entity mapped only to sources', () => {
    expect(() => parseTopology({ nodes: { a: { kind: 'postgres', url: 'x', role: 'sink' } }, entities: {} }, 't')).toThrow(/nodes\.a\.role: must be one of both, source, target/);
    expect(() => parseTopology({ nodes: { a: { kind: 'postgres', url: 'x' } }, entities: {} }, 't')).toThrow(/entities/);
    expect(() => parseTopology({
      nodes: { a: { kind: 'postgres', role: 'source' } },
      entities: { e: { key: ['id'], columns: { id: 'bigint' }, nodes: { a: 'x.e' } } },
    }, 't')).toThrow(/entities\.e\.nodes: maps only source nodes/);
    expect(() => parseTopology({ nodes: { a: { kind: 'postgres' } }, entities: {} }, 't')).toThrow(/nodes\.a\.url: is required/);
  });
});
