/**
 * `npm run load -- --gc`: the worker's garbage collection in the measured window, read from
 * V8's `--trace-gc` lines in the worker's log. A line reads
 *
 *   [pid:0x…]    22732 ms: Scavenge 130.1 (182.9) -> 118.8 (182.9) MB, 3.69 / 0.17 ms  (…) task;
 *
 * where the time is from the worker's start, the sizes are the heap in use (and committed)
 * before and after, and the first duration is the pause on the JavaScript thread.
 *
 * What a window allocated is estimated as the heap's growth between collections: each
 * collection's "before" less the previous one's "after". That counts every byte the
 * JavaScript heap took, young or old, and nothing outside it (Buffers' memory is external).
 */

export interface GcEvent {
  /** ms since the worker's V8 isolate started */
  atMs: number;
  kind: 'scavenge' | 'mark-compact' | 'other';
  beforeMb: number;
  afterMb: number;
  pauseMs: number;
}

const LINE = /\s(\d+) ms: ([A-Za-z-]+(?: \([a-z ]+\))?) ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \/ [\d.]+ ms/;

export function parseGcTrace(text: string): GcEvent[] {
  const out: GcEvent[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const name = m[2]!;
    out.push({
      atMs: Number(m[1]), kind: name === 'Scavenge' || name === 'Minor Mark-Sweep' ? 'scavenge' : name.startsWith('Mark-Compact') ? 'mark-compact' : 'other',
      beforeMb: Number(m[3]), afterMb: Number(m[4]), pauseMs: Number(m[5]),
    });
  }
  return out;
}

export interface GcSummary {
  scavenges: number;
  mark_compacts: number;
  /** JavaScript heap allocated per committed event, KB (see above for how it is estimated) */
  allocated_kb_per_event: number | null;
  /** the collections' pauses on the JavaScript thread per committed event, µs */
  pause_us_per_event: number | null;
}

/** The collections between `fromMs` and `toMs` (the worker's clock), per committed event. */
export function summarizeGc(events: GcEvent[], fromMs: number, toMs: number, committed: number): GcSummary {
  let scavenges = 0;
  let markCompacts = 0;
  let allocatedMb = 0;
  let pauseMs = 0;
  let prevAfter: number | null = null;
  for (const e of events) {
    if (e.atMs >= fromMs && e.atMs <= toMs) {
      if (prevAfter !== null) allocatedMb += Math.max(0, e.beforeMb - prevAfter);
      pauseMs += e.pauseMs;
      if (e.kind === 'scavenge') scavenges++;
      else if (e.kind === 'mark-compact') markCompacts++;
    }
    prevAfter = e.afterMb;
  }
  return {
    scavenges, mark_compacts: markCompacts,
    allocated_kb_per_event: committed > 0 ? Math.round((allocatedMb * 1024) / committed) : null,
    pause_us_per_event: committed > 0 ? Math.round((pauseMs * 1000) / committed) : null,
  };
}
