import { describe, expect, it } from 'vitest';
import { decodeState, encodeState, StateEncoder } from '../../src/sync/state-codec.ts';
import type { NodeState } from '../../src/sync/record-state.ts';

/** The compact binary record state of `sync_metadata.state` (issue 13). */
const node = (over: Partial<NodeState> = {}): NodeState => ({ seen: null, present: false, rowVersion: null, fifo: [], position: null, ...over });

const cases: Array<[string, Parameters<typeof encodeState>[0], Record<string, NodeState>]> = [
  ['a new record: no value, no nodes', null, {}],
  ['a deleted record seen everywhere', null, { pg: node({ seen: [[1, 3], [2, 1]] }), maria: node({ seen: [[1, 3], [2, 1]], position: '0000:0001' }) }],
  ['an empty vector is not a missing one', { id: 1 }, { pg: node({ seen: [], rowVersion: [], present: true }) }],
  ['counters and indexes up to 2^53 - 1', { id: 2 }, { pg: node({ seen: [[0, 1], [127, 128], [16_383, 2 ** 32], [65_535, Number.MAX_SAFE_INTEGER]] }) }],
  ['every kind of pending echo', { id: 3, name: 'Zoë ✓', nested: { a: [1, 'x', null, true] } }, {
    maria: node({
      present: true, rowVersion: [[1, 4]], position: 'binlog.000003:1234:5',
      fifo: [
        { expected: [[1, 3]], expectedAbsent: false, pushed: [[1, 4]], digest: '0123456789abcdef0123456789abcdef', delete: false },
        { expected: null, expectedAbsent: true, pushed: [[1, 5]], digest: null, delete: true },
        { expected: null, expectedAbsent: false, pushed: [], digest: 'ü', delete: false },
      ],
    }),
    'a node with a long name ∑': node({ position: 'p'.repeat(300) }),
  }],
];

describe('the record state codec', () => {
  for (const [name, value, nodes] of cases) {
    it(`round-trips ${name}`, () => {
      const b = encodeState(value, nodes);
      expect(b[0]).toBe(1);
      expect(decodeState(b)).toEqual({ value, nodes });
    });
  }

  it('hands back one view per state from one batch, growing past its first allocation', () => {
    const e = new StateEncoder(1);
    const values = Array.from({ length: 200 }, (_, i) => ({ id: i, text: 'x'.repeat(i * 7) }));
    for (const v of values) e.add(v, { pg: node({ seen: [[1, v.id + 1]] }) });
    const out = e.end();
    expect(out).toHaveLength(200);
    out.forEach((b, i) => expect(decodeState(b)).toEqual({ value: values[i], nodes: { pg: node({ seen: [[1, i + 1]] }) } }));
  });

  it('is smaller than the JSON it replaces', () => {
    const nodes = { pg: node({ seen: [[1, 7]], rowVersion: [[1, 7]], present: true }), load: node({ seen: [[1, 7]], position: '00001796231370003040:00001796231370003040' }), maria: node({ seen: [[1, 7]] }) };
    expect(encodeState(null, nodes).length).toBeLessThan(JSON.stringify(nodes).length / 3);
  });

  it('names what is wrong with a damaged state', () => {
    const good = encodeState({ id: 1 }, { pg: node({ seen: [[1, 2]] }) });
    expect(() => decodeState(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(() => decodeState(Buffer.concat([good, Buffer.from([0])]))).toThrow(/trailing bytes/);
    expect(() => decodeState(Buffer.from([2, 0, 0]))).toThrow(/unknown format 2/);
    expect(() => decodeState(Buffer.from([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]))).toThrow(/varint too long/);
    expect(() => encodeState(null, { pg: node({ seen: [[1, 2 ** 53]] }) })).toThrow(/not an unsigned integer/);
  });
});
