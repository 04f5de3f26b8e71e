import { describe, expect, it } from 'vitest';
import { Lane, type LaneHost } from '../../src/runtime/lane.ts';
import { Semaphore } from '../../src/runtime/semaphore.ts';
import type { ConsumedMessage } from '../../src/kafka/consumer.ts';

const msgs = (topic: string, from: number, n: number): ConsumedMessage[] =>
  Array.from({ length: n }, (_, i) => ({ topic, partition: 0, offset: from + i, key: null, value: null, timestamp: undefined }));

function host(concurrency: number, batchSize: number) {
  let active = 0;
  let maxActive = 0;
  let released = 0;
  const seen = new Map<string, number[]>();
  const h: LaneHost & { stats: () => { maxActive: number; released: number; seen: Map<string, number[]> } } = {
    semaphore: new Semaphore(concurrency),
    batchSize,
    loadCheckpoint: async () => null,
    async processBatch(lane, batch) {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, 2));
      const list = seen.get(lane.topic) ?? [];
      list.push(...batch.map((m) => m.offset));
      seen.set(lane.topic, list);
      active--;
    },
    released: (n) => { released += n; },
    laneFailed: (_lane, err) => { throw err; },
    stats: () => ({ maxActive, released, seen }),
  };
  return h;
}

describe('lanes and QUEUE_CONCURRENCY', () => {
  it('never runs more batches at once than the semaphore allows, and keeps each partition in order', async () => {
    const h = host(3, 10);
    const lanes = Array.from({ length: 8 }, (_, i) => new Lane(h, 'g', `t${i}`, 0));
    for (let round = 0; round < 5; round++) {
      for (const lane of lanes) lane.enqueue(msgs(lane.topic, round * 25, 25));
    }
    await Promise.all(lanes.map((l) => l.idle()));
    const { maxActive, released, seen } = h.stats();
    expect(maxActive).toBe(3);
    expect(released).toBe(8 * 125);
    for (const lane of lanes) expect(seen.get(lane.topic)).toEqual(Array.from({ length: 125 }, (_, i) => i));
  });

  it('runs one lane at a time with a concurrency of 1', async () => {
    const h = host(1, 7);
    const lanes = [new Lane(h, 'g', 'a', 0), new Lane(h, 'g', 'b', 0)];
    lanes[0]!.enqueue(msgs('a', 0, 30));
    lanes[1]!.enqueue(msgs('b', 0, 30));
    await Promise.all(lanes.map((l) => l.idle()));
    expect(h.stats().maxActive).toBe(1);
  });

  it('drops what is buffered when its partition is revoked', async () => {
    const h = host(1, 5);
    const blocker = new Lane(h, 'g', 'x', 0);
    const lane = new Lane(h, 'g', 'y', 0);
    blocker.enqueue(msgs('x', 0, 50));
    lane.enqueue(msgs('y', 0, 50));
    lane.revoke();
    lane.enqueue(msgs('y', 50, 5));
    await Promise.all([blocker.idle(), lane.idle()]);
    expect(h.stats().seen.get('y') ?? []).toEqual([]);
    expect(h.stats().released).toBe(105);
    expect(lane.logId).toBe('g:y/0');
  });
});
