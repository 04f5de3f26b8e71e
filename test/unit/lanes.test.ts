import { describe, expect, it } from 'vitest';
import { Lane, type BatchOutcome, type LaneHost } from '../../src/runtime/lane.ts';
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
      return 'done';
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

describe('a batch the host did not commit (issue 12, defect 1)', () => {
  /** A host whose gate a test opens and closes, like POST /sync/pause and /sync/resume. */
  function pausable(batchSize: number) {
    let paused = false;
    let pauseInFlight = false;
    let stopping = false;
    let waiters: Array<(open: boolean) => void> = [];
    const committed: number[] = [];
    let released = 0;
    const outcomes: BatchOutcome[] = [];
    const h: LaneHost = {
      semaphore: new Semaphore(1),
      batchSize,
      loadCheckpoint: async () => null,
      gate: () => (!paused ? Promise.resolve(true) : stopping ? Promise.resolve(false) : new Promise((r) => waiters.push(r))),
      async processBatch(_lane, batch) {
        await new Promise((r) => setTimeout(r, 1));
        if (pauseInFlight) { paused = true; pauseInFlight = false; }
        // the pause arrived after the lane passed its gate: commit nothing
        const outcome: BatchOutcome = paused ? 'held' : 'done';
        if (outcome === 'done') committed.push(...batch.map((m) => m.offset));
        outcomes.push(outcome);
        return outcome;
      },
      released: (n) => { released += n; },
      laneFailed: (_lane, err) => { throw err; },
    };
    const open = (v: boolean) => { const w = waiters; waiters = []; for (const r of w) r(v); };
    return {
      h, committed, outcomes, released: () => released,
      pause: () => { paused = true; },
      pauseDuringNextBatch: () => { pauseInFlight = true; },
      resume: () => { paused = false; open(true); },
      stop: () => { stopping = true; open(false); },
    };
  }

  it('keeps a held batch queued and cuts it again on resume, in order', async () => {
    const p = pausable(10);
    const lane = new Lane(p.h, 'g', 'p', 0);
    p.pauseDuringNextBatch(); // lands after the lane passed its gate
    lane.enqueue(msgs('p', 0, 25));
    await new Promise((r) => setTimeout(r, 20));
    expect(p.outcomes).toContain('held');
    expect(lane.queued).toBe(25);
    lane.enqueue(msgs('p', 25, 5));
    p.resume();
    await lane.idle();
    expect(p.committed).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(p.released()).toBe(30);
  });

  it('stops with a held batch still queued when the worker stops while paused', async () => {
    const p = pausable(10);
    const lane = new Lane(p.h, 'g', 'p', 0);
    p.pause();
    lane.enqueue(msgs('p', 0, 12));
    await new Promise((r) => setTimeout(r, 10));
    p.stop();
    await lane.idle(); // resolves: nothing in flight, and the lane holds its messages uncommitted
    expect(p.committed).toEqual([]);
    expect(lane.queued).toBe(12);
    expect(p.released()).toBe(0);
  });

  it('drops what it buffered when the host reads the partition again from its checkpoint', async () => {
    let first = true;
    let released = 0;
    const seen: number[][] = [];
    const h: LaneHost = {
      semaphore: new Semaphore(1), batchSize: 100, loadCheckpoint: async () => ({ nextOffset: 0, logId: 'g:r/0', lastSeq: 0 }),
      async processBatch(_lane, batch) {
        seen.push(batch.map((m) => m.offset));
        if (first) { first = false; return 'reread'; }
        return 'done';
      },
      released: (n) => { released += n; }, laneFailed: (_l, err) => { throw err; },
    };
    const lane = new Lane(h, 'g', 'r', 0);
    lane.enqueue(msgs('r', 5, 10)); // starts past the checkpoint (offset 0)
    await lane.idle();
    expect(lane.queued).toBe(0);
    expect(released).toBe(10);
    lane.enqueue(msgs('r', 0, 15)); // what the seek fetches again
    await lane.idle();
    expect(seen).toEqual([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], Array.from({ length: 15 }, (_, i) => i)]);
    expect(released).toBe(25);
  });
});
