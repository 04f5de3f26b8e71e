import { describe, expect, it } from 'vitest';
import { StateCache } from '../../src/sync/state-cache.ts';
import { emptyState, type RecordState } from '../../src/sync/record-state.ts';

/** The lane's committed record states (src/sync/state-cache.ts): taken out by a batch, put back by its commit, bounded. */
function states(entity: string, keys: string[]): Map<string, Map<string, RecordState>> {
  return new Map([[entity, new Map(keys.map((k) => [k, emptyState()]))]]);
}

describe('StateCache', () => {
  it('hands a state out once: a batch in flight holds it, its commit puts it back', () => {
    const held = { n: 0, hits: 0, misses: 0 };
    const c = new StateCache(10, { records: (d) => (held.n += d), lookups: (h, m) => { held.hits += h; held.misses += m; } });
    const committed = states('customers', ['[1]', '[2]']);
    c.put(committed);
    expect(held.n).toBe(2);
    const first = c.take('customers', ['[1]', '[3]']);
    expect([...first.hits.keys()]).toEqual(['[1]']);
    expect(first.hits.get('[1]')).toBe(committed.get('customers')!.get('[1]'));
    expect(first.misses).toEqual(['[3]']);
    expect(c.take('customers', ['[1]']).misses).toEqual(['[1]']); // in flight: not there
    expect(c.take('orders', ['[2]']).misses).toEqual(['[2]']); // keys are per entity
    expect(held).toEqual({ n: 1, hits: 1, misses: 3 });
    c.put(new Map([['customers', first.hits]]));
    expect(c.size).toBe(2);
    expect(held.n).toBe(2);
  });

  it('drops the least recently committed past its capacity, and nothing at all with capacity 0', () => {
    const c = new StateCache(3);
    c.put(states('e', ['a', 'b', 'c']));
    c.put(states('e', ['a'])); // a is the newest now
    c.put(states('e', ['d']));
    expect(c.size).toBe(3);
    expect(c.take('e', ['a', 'b', 'c', 'd']).misses).toEqual(['b']);
    const off = new StateCache(0);
    off.put(states('e', ['a']));
    expect(off.size).toBe(0);
  });

  it('once closed (its lane revoked), holds nothing and takes nothing back', () => {
    let n = 0;
    const c = new StateCache(10, { records: (d) => (n += d), lookups: () => undefined });
    c.put(states('e', ['a', 'b']));
    c.close();
    c.put(states('e', ['c'])); // a batch still in flight commits after the revoke
    expect(c.size).toBe(0);
    expect(n).toBe(0);
  });
});
