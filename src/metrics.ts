import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric the worker exports (DESIGN §9). Names come from the runbook.
 * `sync_events_total` and `sync_errors_total` carry the same labels so the runbook's
 * `rate(sync_errors_total[5m]) / rate(sync_events_total[5m])` divides series by series.
 */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000];

export class Metrics {
  readonly registry = new Registry();

  readonly events = new Counter({
    name: 'sync_events_total',
    help: 'Source change events committed by the worker (audited), by source node and entity',
    labelNames: ['source_node', 'entity'] as const,
    registers: [this.registry],
  });

  readonly errors = new Counter({
    name: 'sync_errors_total',
    help: 'Events that failed (dead-lettered or undecodable), by source node and entity',
    labelNames: ['source_node', 'entity'] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: 'sync_latency_ms',
    help: 'End-to-end latency in milliseconds, from Debezium emitting the event (envelope ts_ms) to the worker committing it',
    labelNames: ['source_node'] as const,
    buckets: LATENCY_BUCKETS_MS,
    registers: [this.registry],
  });

  /** The source commit time (ms) of the newest event committed, per source node (set by the sync stage). */
  readonly newestSourceTs = new Map<string, number>();
  /** Events fetched and not yet committed (set by the worker): with none, the worker is caught up. */
  pending: () => number = () => 0;

  /**
   * Computed at each scrape, not at each commit: a worker that stalls shows its lag growing,
   * and one that has caught up (nothing fetched waits) shows 0, instead of the lag of its
   * last batch frozen until the next.
   */
  readonly lag = new Gauge({
    name: 'sync_lag_ms',
    help: 'Milliseconds from the source commit (source.ts_ms) of the newest committed event to now while events wait uncommitted, by source node; 0 when caught up',
    labelNames: ['source_node'] as const,
    registers: [this.registry],
    collect: () => {
      const now = Date.now();
      const waiting = this.pending() > 0;
      for (const [node, ts] of this.newestSourceTs) this.lag.labels(node).set(waiting ? Math.max(0, now - ts) : 0);
    },
  });

  readonly queueDepth = new Gauge({
    name: 'queue_depth',
    help: 'Events received from Kafka and not yet committed',
    registers: [this.registry],
  });

  readonly tombstones = new Counter({
    name: 'sync_tombstones_total',
    help: 'Tombstones (null values after deletes) recognised and skipped',
    registers: [this.registry],
  });

  readonly routed = new Counter({
    name: 'sync_routed_total',
    help: 'Decoded source changes routed to the changes topic',
    registers: [this.registry],
  });

  readonly truncates = new Counter({
    name: 'sync_truncates_total',
    help: 'Truncates received, by source node, entity and policy (propagate: fanned out as per-record deletes; ignore: audited only)',
    labelNames: ['node', 'entity', 'policy'] as const,
    registers: [this.registry],
  });

  readonly echoes = new Counter({
    name: 'sync_echoes_total',
    help: 'Events recognised as echoes of the worker\'s own writes, by node',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  readonly repairs = new Counter({
    name: 'sync_repairs_total',
    help: 'Nodes rewritten after a write by a worker whose state was lost, by node',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  readonly conflicts = new Counter({
    name: 'sync_conflicts_total',
    help: 'Conflicts detected, by entity, strategy and outcome (auto: settled by the policy; open: left for an operator, manual)',
    labelNames: ['entity', 'strategy', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly conflictResolutions = new Counter({
    name: 'sync_conflict_resolutions_total',
    help: 'Open conflicts an operator resolved and the worker converged, by entity and resolution strategy',
    labelNames: ['entity', 'strategy'] as const,
    registers: [this.registry],
  });

  readonly conflictsOpen = new Gauge({
    name: 'sync_conflicts_open',
    help: 'Conflicts of this deployment waiting for an operator (resolved_at IS NULL)',
    registers: [this.registry],
  });

  /**
   * From this worker's own counters at each scrape (sync_conflicts_total over
   * sync_events_total, over the last 5 minutes): no query counts audit_log on a timer.
   */
  private readonly conflictWindow = new WindowRatio(5 * 60_000);

  readonly conflictRate = new Gauge({
    name: 'conflict_rate',
    help: 'Conflicts per synced change of this worker over the last 5 minutes (since start, when younger), from its counters (the runbook alerts above 0.05)',
    registers: [this.registry],
    collect: async () => {
      const total = (c: Counter) => c.get().then((m) => m.values.reduce((n, v) => n + v.value, 0));
      this.conflictRate.set(this.conflictWindow.sample(Date.now(), await total(this.conflicts), await total(this.events)));
    },
  });

  readonly autoResolvedRatio = new Gauge({
    name: 'sync_conflicts_auto_resolved_ratio',
    help: 'Share of the last 24 hours\' conflicts settled automatically (the runbook\'s SLO: above 0.99)',
    registers: [this.registry],
  });

  readonly auditCheckpoints = new Counter({
    name: 'sync_audit_checkpoints_total',
    help: 'Signed audit checkpoints made by sealing an idle or finished log',
    registers: [this.registry],
  });

  readonly auditSealsBusy = new Counter({
    name: 'sync_audit_seals_busy_total',
    help: 'Timer seals left out because a commit held the log (that commit signs it when due)',
    registers: [this.registry],
  });

  readonly auditPublished = new Counter({
    name: 'sync_audit_checkpoints_published_total',
    help: 'Audit checkpoints published to the checkpoints topic',
    registers: [this.registry],
  });

  readonly witnessCosigned = new Counter({
    name: 'sync_audit_witness_cosignatures_total',
    help: 'Audit checkpoints the witness (AUDIT_WITNESS_URL) cosigned',
    registers: [this.registry],
  });

  readonly witnessFailures = new Counter({
    name: 'sync_audit_witness_failures_total',
    help: 'add-checkpoint requests that got no cosignature, by reason (conflict: the witness holds another size; unreachable; http_<status>; bad_cosignature; proof)',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  readonly witnessBehind = new Gauge({
    name: 'sync_audit_witness_behind_logs',
    help: 'Owned audit logs whose newest checkpoint the witness has not cosigned, after the last attempt',
    registers: [this.registry],
  });

  readonly witnessLastCosigned = new Gauge({
    name: 'sync_audit_witness_last_cosigned_timestamp_seconds',
    help: 'When the witness last cosigned a checkpoint (Unix seconds; 0: not since start)',
    registers: [this.registry],
  });

  readonly paused = new Gauge({
    name: 'sync_paused',
    help: '1 while POST /sync/pause holds the sync stage',
    registers: [this.registry],
  });

  readonly clockCodec = new Gauge({
    name: 'sync_clock_codec',
    help: 'Which version vector codec serves each operation (1 for the one in use)',
    labelNames: ['op', 'codec'] as const,
    registers: [this.registry],
  });

  readonly nodeWriteDuration = new Histogram({
    name: 'sync_node_write_duration_ms',
    help: 'Duration of one sink batch (one transaction) per target node, in milliseconds',
    labelNames: ['node'] as const,
    buckets: LATENCY_BUCKETS_MS,
    registers: [this.registry],
  });

  readonly nodeBatchSize = new Histogram({
    name: 'sync_node_batch_size',
    help: 'Rows per sink batch per target node',
    labelNames: ['node'] as const,
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
    registers: [this.registry],
  });

  readonly nodeRows = new Counter({
    name: 'sync_node_rows_total',
    help: 'Rows per target node, by outcome (applied, already, cas-skipped, rejected: refused three times and dead-lettered)',
    labelNames: ['node', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly nodeErrors = new Counter({
    name: 'sync_node_errors_total',
    help: 'Failed sink batches per target node',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  readonly circuitOpen = new Gauge({
    name: 'sync_circuit_open',
    help: '1 while the circuit of a target node is open (its writes failing)',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  readonly circuitOpens = new Counter({
    name: 'sync_circuit_opens_total',
    help: 'Times the circuit of a target node opened',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  readonly redisErrors = new Counter({
    name: 'sync_redis_errors_total',
    help: 'Failed writes to Redis (the dead-letter mirror); PostgreSQL keeps the truth',
    registers: [this.registry],
  });

  readonly duplicates = new Counter({
    name: 'sync_duplicates_total',
    help: 'Redeliveries recognised and skipped: kind=checkpoint, at or below the committed checkpoint (a Kafka redelivery); kind=position, a source change already applied (a re-routed or replayed event)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'sync_dead_letters_total',
    help: 'Events stored in sync_dead_letters, by reason code',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: 'sync_batch_size',
    help: 'Events per committed lane batch',
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
    registers: [this.registry],
  });

  readonly cycleBatches = new Histogram({
    name: 'sync_cycle_partitions',
    help: 'Partitions whose batches one sync cycle committed together (group commit, DESIGN §2)',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });

  readonly cycleEvents = new Histogram({
    name: 'sync_cycle_events',
    help: 'Events one sync cycle took: the batches its partitions cut meanwhile, up to CYCLE_MAX_EVENTS (CYCLE_INTERVAL_MS makes them larger)',
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers: [this.registry],
  });

  readonly cyclesInFlight = new Gauge({
    name: 'sync_cycles_in_flight',
    help: 'Sync cycles classifying, writing or committing right now (at most SYNC_CYCLES)',
    registers: [this.registry],
  });

  readonly cycleAlone = new Counter({
    name: 'sync_cycle_alone_total',
    help: 'Partition batches a sync cycle handed back to be processed alone: reason=fenced (its epoch or checkpoint moved) or failed (the cycle failed; the batch is retried, and a record at fault isolated, on its own)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly commitDuration = new Histogram({
    name: 'sync_commit_duration_ms',
    help: 'Duration of the checkpoint transaction (audit COPY + checkpoint) in milliseconds',
    buckets: LATENCY_BUCKETS_MS,
    registers: [this.registry],
  });

  readonly commitFailures = new Counter({
    name: 'sync_commit_failures_total',
    help: 'Checkpoint transactions that failed and were retried',
    registers: [this.registry],
  });

  readonly checkpointGaps = new Counter({
    name: 'sync_checkpoint_gaps_total',
    help: 'Batches that started past their partition checkpoint and were read again from it (never committed past a gap)',
    registers: [this.registry],
  });

  readonly lanesActive = new Gauge({
    name: 'sync_lanes_active',
    help: 'Lanes processing a batch right now: ingest lanes (at most QUEUE_CONCURRENCY at once) and sync lanes (each with its batch in a cycle)',
    registers: [this.registry],
  });

  readonly partitionsOwned = new Gauge({
    name: 'sync_partitions_owned',
    help: 'Partitions currently assigned to this worker',
    registers: [this.registry],
  });

  readonly consumerLag = new Gauge({
    name: 'sync_consumer_lag_messages',
    help: 'Messages between the committed checkpoint and the partition high watermark',
    labelNames: ['topic', 'partition'] as const,
    registers: [this.registry],
  });

  readonly rebalances = new Counter({
    name: 'sync_rebalances_total',
    help: 'Partition assignments and revocations',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Set by the worker: the pools to read at each scrape (node name, or "control" for sync_db). */
  pools: () => Array<{ node: string; stats: { total: number; idle: number; waiting: number } | undefined }> = () => [];

  readonly poolConnections = new Gauge({
    name: 'sync_node_pool_connections',
    help: 'Connections of each database pool at scrape time, by state (open, idle, waiting callers); node "control" is sync_db',
    labelNames: ['node', 'state'] as const,
    registers: [this.registry],
    collect: () => {
      for (const { node, stats } of this.pools()) {
        if (!stats) continue;
        this.poolConnections.labels(node, 'open').set(stats.total);
        this.poolConnections.labels(node, 'idle').set(stats.idle);
        this.poolConnections.labels(node, 'waiting').set(stats.waiting);
      }
    },
  });

  readonly cpusGiven = new Gauge({
    name: 'sync_cpus_given',
    help: 'CPUs this process is given (its cgroup CPU quota, else the machine\'s), which size its thread pool',
    registers: [this.registry],
  });

  readonly emergencyStop = new Gauge({
    name: 'sync_emergency_stop',
    help: '1 while EMERGENCY_STOP holds consumption',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // the witness's refusals exist before the first one, so an alert's increase() sees it
    for (const reason of ['conflict', 'unreachable', 'bad_cosignature', 'proof']) this.witnessFailures.labels(reason).inc(0);
  }
}

/**
 * Δnumerator ÷ Δdenominator over the last `spanMs`, from cumulative totals sampled when
 * asked (each scrape): the oldest sample kept is the last one at or before the window's
 * start, so the ratio covers the whole span once the process is older than it.
 */
export class WindowRatio {
  private readonly samples: Array<{ t: number; num: number; den: number }>;
  private readonly spanMs: number;

  constructor(spanMs: number, now = Date.now()) {
    this.spanMs = spanMs;
    this.samples = [{ t: now, num: 0, den: 0 }];
  }

  sample(t: number, num: number, den: number): number {
    this.samples.push({ t, num, den });
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.spanMs) this.samples.shift();
    const base = this.samples[0]!;
    const dDen = den - base.den;
    return dDen <= 0 ? 0 : (num - base.num) / dDen;
  }
}
