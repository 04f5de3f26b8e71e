import { describe, expect, it } from 'vitest';
import { parseGcTrace, summarizeGc } from '../../load/gc-trace.ts';

/** V8's --trace-gc lines as a worker's log holds them (Node 20), between the worker's JSON log lines. */
const LOG = [
  '[7697:0x8f6bbd0]       32 ms: Scavenge 4.6 (4.7) -> 4.1 (5.7) MB, 0.70 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
  '{"level":"warn","msg":"not a gc line","ms: Scavenge":1}',
  '[7697:0x8f6bbd0]     1000 ms: Scavenge 20.0 (31.0) -> 12.0 (31.1) MB, 2.50 / 0.10 ms  (average mu = 1.000, current mu = 1.000) task; ',
  '[7697:0x8f6bbd0]     2000 ms: Mark-Compact 38.1 (58.6) -> 27.9 (61.6) MB, 105.71 / 6.15 ms  (+ 0.6 ms in 10 steps since start of marking, biggest step 0.1 ms, walltime since start of marking 166 ms) (average mu = 0.939, current mu = 0.939) finalize incremental marking via task; GC in old space requested',
  '[7697:0x8f6bbd0]     3000 ms: Mark-Compact (reduce) 40.0 (58.6) -> 30.0 (40.0) MB, 10.00 / 0.00 ms  (average mu = 0.939, current mu = 0.939) memory reducer',
  '[7697:0x8f6bbd0]     4000 ms: Scavenge 46.0 (50.0) -> 31.0 (50.0) MB, 1.00 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
].join('\n');

describe('the load harness reads the worker\'s --trace-gc lines', () => {
  it('parses each collection and nothing else', () => {
    const ev = parseGcTrace(LOG);
    expect(ev.map((e) => [e.atMs, e.kind, e.beforeMb, e.afterMb, e.pauseMs])).toEqual([
      [32, 'scavenge', 4.6, 4.1, 0.7],
      [1000, 'scavenge', 20, 12, 2.5],
      [2000, 'mark-compact', 38.1, 27.9, 105.71],
      [3000, 'mark-compact', 40, 30, 10],
      [4000, 'scavenge', 46, 31, 1],
    ]);
  });

  it('counts a window\'s collections and the heap grown between them, from the last collection before it', () => {
    // window 1500..4500 ms: 38.1 - 12.0, 40.0 - 27.9, 46.0 - 30.0 = 26.1 + 12.1 + 16.0 = 54.2 MB
    const s = summarizeGc(parseGcTrace(LOG), 1500, 4500, 1000);
    expect(s).toEqual({ scavenges: 1, mark_compacts: 2, allocated_kb_per_event: Math.round((54.2 * 1024) / 1000), pause_us_per_event: Math.round(116.71) });
    expect(summarizeGc(parseGcTrace(LOG), 0, 5000, 0)).toMatchObject({ allocated_kb_per_event: null, pause_us_per_event: null });
  });
});
