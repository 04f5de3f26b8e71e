import type pg from 'pg';
import { guardedPool } from '../pg-pool.ts';
import { Redis } from 'ioredis';
import path from 'node:path';
import { PROJECT_ROOT, type EnvConfig } from '../config/env.ts';
import type { Topology } from '../config/topology.ts';
import { DebeziumDecoder } from '../events/debezium.ts';
import { ChangeConsumer, tpKey, type TopicPartition } from '../kafka/consumer.ts';
import { ChangeProducer, ensureTopic, recordLimit } from '../kafka/producer.ts';
import { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { migrateControlSchema, registerNodes } from '../audit/control-schema.ts';
import { PostgresSink } from '../sinks/postgres-sink.ts';
import { PauseGate } from '../control/pause.ts';
import { AuditWriter } from '../audit/audit-writer.ts';
import { AuditService } from '../audit/audit-service.ts';
import { registerKey, signingKeyFor } from '../audit/signing.ts';
import { WitnessClient } from '../audit/witness.ts';
import { parseVerifierKey } from '../audit/note.ts';
import { ConflictService } from '../sync/conflict-service.ts';
import { apiRoutes } from '../http/api.ts';
import { selectCodec, type Selection } from '../clock/clock-codec.ts';
import { useCodec } from '../clock/active.ts';
import { MySqlSink } from '../sinks/mysql-sink.ts';
import { MongoSink } from '../sinks/mongo-sink.ts';
import type { Sink } from '../sinks/sink.ts';
import { SyncEngine } from '../sync/sync-engine.ts';
import { Applier } from './apply.ts';
import { StateStore } from '../sync/state-store.ts';
import { CheckpointStore, type Checkpoint } from './checkpoint-store.ts';
import { Lane, type LaneHost } from './lane.ts';
import { Semaphore } from './semaphore.ts';
import { Readiness } from './readiness.ts';
import { ConsumeLoop } from './consume-loop.ts';
import { retry } from '../retry.ts';
import { IngestStage } from './ingest-stage.ts';
import { SyncStage } from './sync-stage.ts';
import { Circuits } from './circuits.ts';
import { startHttpServer, json, type RunningServer } from '../http/server.ts';
import { ConfigError, errorMessage } from '../errors.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The reasons a dead letter can carry (README, "Dead letters"). */
const DEAD_LETTER_REASONS = ['WS_DECODE_MALFORMED', 'WS_DECODE_UNKNOWN_TOPIC', 'WS_DECODE_UNKNOWN_COLUMN', 'WS_DECODE_BAD_VALUE', 'WS_TARGET_REJECTED', 'WS_TOO_LARGE', 'WS_INTERNAL', 'WS_PARKED'];
/** librdkafka's logical offset for a partition's first message. */
const OFFSET_BEGINNING = -2;

export interface WorkerSettings {
  env: EnvConfig;
  topology: Topology;
  brokers: string;
  controlUrl: string;
  redisUrl: string | undefined;
}

interface Stage {
  host: LaneHost;
  consumer: ChangeConsumer;
  loop: ConsumeLoop;
  name: 'ingest' | 'sync';
}

/**
 * Wires the pipeline (DESIGN §2): an ingest consumer on the Debezium topics routes
 * decoded changes to the changes topic; a sync consumer on the changes topic classifies,
 * applies and commits. Both are members of the same consumer group, so replicas share
 * the partitions of both; every partition is one lane, processed in order.
 */
export class Worker {
  readonly metrics = new Metrics();

  private readonly settings: WorkerSettings;
  private readonly log: Logger;
  private readonly pool: pg.Pool;
  private readonly checkpoints: CheckpointStore;
  private readonly readiness = new Readiness();
  private readonly semaphore: Semaphore;
  private readonly sinks = new Map<string, Sink>();
  private readonly stages: Stage[] = [];
  private producer: ChangeProducer | undefined;
  private redis: Redis | undefined;
  private http: RunningServer | undefined;
  private preloaded = new Map<string, Checkpoint>();
  private lagTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly pause = new PauseGate();
  private conflicts: ConflictService | undefined;
  private api: RunningServer | undefined;
  private audit: AuditService | undefined;
  private codec: Selection | undefined;

  constructor(settings: WorkerSettings, log: Logger) {
    this.settings = settings;
    this.log = log;
    this.semaphore = new Semaphore(settings.env.queueConcurrency);
    this.pool = guardedPool({ connectionString: settings.controlUrl, max: Math.max(settings.env.queueConcurrency, settings.env.syncCycles) + 2, connectionTimeoutMillis: 5000 },
      (err) => log.warn({ err: err.message }, 'Control-database connection failed'));
    this.checkpoints = new CheckpointStore(this.pool, settings.env.groupId);
  }

  /** Starts everything; a SIGTERM meanwhile waits for it (stop), so start-up never races the teardown. */
  start(): Promise<void> {
    this.starting ??= this.startAll();
    return this.starting;
  }

  private starting: Promise<void> | undefined;

  private async startAll(): Promise<void> {
    const { env, topology, brokers } = this.settings;
    const httpOpts = { engine: env.httpEngine };
    this.http = await startHttpServer(env.httpHost, env.httpPort, [
      { method: 'GET', path: '/health', handler: () => json(200, { status: 'ok', uptimeSeconds: Math.round(process.uptime()) }) },
      { method: 'GET', path: '/ready', handler: () => this.ready() },
      { method: 'GET', path: '/metrics', handler: async () => ({ status: 200, body: await this.metrics.registry.metrics(), contentType: this.metrics.registry.contentType }) },
    ], this.log, httpOpts);
    this.log.info({ port: this.http.port, engine: this.http.engine }, 'Operating surface listening (/health, /ready, /metrics)');
    this.metrics.cpusGiven.set(env.cpus.count);
    // every series an alert watches exists from the start, at 0: Prometheus's increase() and
    // rate() see a first dead letter only as a step from an earlier sample
    for (const reason of DEAD_LETTER_REASONS) this.metrics.deadLetters.labels(reason).inc(0);
    for (const { entity, mapping } of topology.topics.values()) {
      this.metrics.errors.labels(mapping.node, entity.name).inc(0);
      this.metrics.events.labels(mapping.node, entity.name).inc(0);
    }
    this.log.info({ cpus: env.cpus.count, from: env.cpus.source, uvThreadpool: process.env.UV_THREADPOOL_SIZE ?? '4' }, 'CPUs given');

    this.codec = selectCodec();
    useCodec(this.codec.codec);
    for (const [op, codec] of Object.entries(this.codec.uses)) {
      this.metrics.clockCodec.labels(op, 'typescript').set(codec === 'typescript' ? 1 : 0);
      this.metrics.clockCodec.labels(op, 'native').set(codec === 'native' ? 1 : 0);
    }
    this.log.info({ uses: this.codec.uses, note: this.codec.note }, 'Clock codec selected (per operation, as npm run bench -- clock measured)');

    await this.retry('control database migration', () => migrateControlSchema(this.pool));
    const signingKey = signingKeyFor(env.auditKeyFile, path.join(PROJECT_ROOT, '.local/audit/signing-key.pem'), (msg) => this.log.warn(msg), env.auditNote);
    await this.retry('audit key registration', () => registerKey(this.pool, signingKey));
    const auditWriter = new AuditWriter(signingKey, { leaves: env.auditCheckpointLeaves, ms: env.auditCheckpointMs });
    this.log.info({ keyId: signingKey.keyId, everyLeaves: env.auditCheckpointLeaves, everyMs: env.auditCheckpointMs, topic: env.auditCheckpointTopic }, 'Audit checkpoints signed with Ed25519');
    const nodeIndex = await this.retry('node registration', () => registerNodes(this.pool, [...topology.nodes.keys()]));
    this.readiness.add('control-db', async () => { await this.pool.query('SELECT 1'); });
    const writers = Math.max(env.queueConcurrency, env.syncCycles) + 1;
    for (const node of topology.nodes.values()) {
      if (node.role === 'source') continue; // never written
      if (node.kind === 'postgres') this.sinks.set(node.name, new PostgresSink(node.name, node.url, writers));
      else if (node.kind === 'mariadb' || node.kind === 'mysql') this.sinks.set(node.name, new MySqlSink(node.name, node.url, writers));
      else this.sinks.set(node.name, new MongoSink(node.name, node.url, writers));
    }
    const circuits = new Circuits([...this.sinks.keys()], this.metrics, this.log);
    this.metrics.pending = () => this.stages.reduce((n, s) => n + s.loop.buffered, 0);
    this.metrics.pools = () => [
      { node: 'control', stats: { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount } },
      ...[...this.sinks].map(([node, sink]) => ({ node, stats: sink.poolStats() })),
    ];
    for (const [name, sink] of this.sinks) {
      this.readiness.add(`node:${name}`, async () => {
        circuits.check(name);
        await sink.ping();
      });
    }

    // The API comes up before consumption starts, and under EMERGENCY_STOP too (DESIGN §8):
    // an operator must be able to look and pause while nothing is consumed.
    if (env.apiToken) {
      this.api = await startHttpServer(env.httpHost, env.apiPort, apiRoutes({
        pool: this.pool, groupId: env.groupId, topology, token: env.apiToken, pause: this.pause,
        kick: () => void this.conflicts?.tick(), status: () => this.status(),
      }), this.log, { ...httpOpts, tls: env.apiTls });
      this.log.info({ port: this.api.port, tls: this.api.tls }, `API listening on ${this.api.tls ? 'HTTPS' : 'HTTP'} (/sync/*, bearer token required)`);
      if (env.apiTlsMissing) this.log.warn('API_TLS_CERT_FILE and API_TLS_KEY_FILE are set but neither file exists (worker-sync-tls not mounted): the API serves plain HTTP');
    } else {
      this.log.warn('API_TOKEN (or API_TOKEN_FILE) is not set: the API on port 3001 is off');
    }

    this.metrics.emergencyStop.set(env.emergencyStop ? 1 : 0);
    if (env.emergencyStop) {
      this.log.warn('EMERGENCY_STOP=true: consuming nothing; /health, /metrics and the API stay up');
      this.readiness.start();
      return;
    }

    await this.retry(`changes topic ${env.changesTopic}`, () => ensureTopic(brokers, env.changesTopic, env.changesPartitions, env.changesReplication, {
      'cleanup.policy': 'delete', 'max.message.bytes': String(env.kafkaMaxMessageBytes),
    }));
    await this.retry(`audit checkpoint topic ${env.auditCheckpointTopic}`, () => ensureTopic(brokers, env.auditCheckpointTopic, 1, env.changesReplication, { 'cleanup.policy': 'delete', 'retention.ms': '-1' }));
    this.preloaded = await this.retry('checkpoint preload', () => this.checkpoints.loadAll([env.changesTopic]));
    this.producer = new ChangeProducer(brokers, env.workerId, this.log, env.kafkaMaxMessageBytes, env.kafkaLingerMs);
    await this.retry('Kafka producer', () => this.producer!.connect());

    if (this.settings.redisUrl) {
      this.redis = new Redis(this.settings.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 3000, lazyConnect: false });
      this.redis.on('error', (err) => this.log.debug({ err: err.message }, 'Redis connection error'));
    }
    const store = new StateStore();
    const applier = new Applier(this.sinks, this.log, (node, ms, result) => {
      this.metrics.nodeWriteDuration.labels(node).observe(ms);
      if (!Array.isArray(result)) {
        this.metrics.nodeErrors.labels(node).inc();
        // A deadlock or lock timeout says nothing about the node's health: the batch is
        // retried. Nor does a row the node refuses: it is retried on halves, then rejected.
        if (result.kind === 'unavailable') circuits.failure(node, result.error);
        return;
      }
      circuits.success(node);
      this.metrics.nodeBatchSize.labels(node).observe(result.length);
      for (const o of result) this.metrics.nodeRows.labels(node, o).inc();
    });
    const engine = new SyncEngine(topology, (slots) => applier.apply(slots), nodeIndex, store, this.log);
    const ingest = new IngestStage({
      semaphore: this.semaphore, batchSize: env.batchSize, decoder: new DebeziumDecoder(topology), producer: this.producer,
      changesTopic: env.changesTopic, topology, metrics: this.metrics, log: this.log,
      pool: this.pool, groupId: env.groupId, maxRecordBytes: recordLimit(env.kafkaMaxMessageBytes),
    });
    this.conflicts = new ConflictService({
      pool: this.pool, groupId: env.groupId, topology, changesTopic: env.changesTopic, metrics: this.metrics, log: this.log, pause: this.pause,
      pollMs: env.controlPollMs, send: (messages) => this.producer!.send(messages),
    });
    await this.conflicts.tick(); // a paused deployment starts paused
    this.conflicts.start();
    const sync = new SyncStage(env.batchSize, { cycles: env.syncCycles, events: env.cycleMaxEvents, intervalMs: env.cycleIntervalMs }, {
      pool: this.pool, engine, applier, store, checkpoints: this.checkpoints, metrics: this.metrics, log: this.log,
      workerId: env.workerId, groupId: env.groupId, crashPoint: env.testCrashPoint, crashAfter: env.testCrashAfter, redis: this.redis,
      producer: this.producer, changesTopic: env.changesTopic, propagating: (e) => topology.entities.get(e)?.truncate === 'propagate', pause: this.pause,
      audit: auditWriter,
    });
    this.audit = new AuditService({
      pool: this.pool, writer: auditWriter, epochs: sync.epochs, groupId: env.groupId, topic: env.auditCheckpointTopic, everyMs: env.auditCheckpointMs,
      log: this.log, metrics: this.metrics, send: (messages) => this.producer!.send(messages),
      witness: env.auditWitnessUrl === undefined ? undefined : new WitnessClient({
        pool: this.pool, url: env.auditWitnessUrl, verifier: env.auditWitnessKey === undefined ? undefined : parseVerifierKey(env.auditWitnessKey),
        metrics: this.metrics, log: this.log, timeoutMs: 5000,
      }),
    });
    this.audit.start();
    this.stages.push(this.stage('ingest', ingest), this.stage('sync', sync));
    ingest.consumer = this.stages[0]!.consumer;
    ingest.loop = this.stages[0]!.loop;
    sync.consumer = this.stages[1]!.consumer;
    sync.loop = this.stages[1]!.loop;

    for (const s of this.stages) await this.retry(`Kafka ${s.name} consumer`, () => s.consumer.connect());
    this.readiness.add('kafka', async () => {
      if (!this.stages.every((s) => s.consumer.isConnected()) || !this.producer?.isConnected()) throw new Error('a Kafka client is disconnected');
    });
    this.readiness.start();
    this.stages[0]!.consumer.subscribe([...topology.topics.keys()]);
    this.stages[1]!.consumer.subscribe([env.changesTopic]);
    for (const s of this.stages) s.loop.start();
    this.log.info({ sources: [...topology.topics.keys()], changes: env.changesTopic, group: env.groupId, concurrency: env.queueConcurrency, syncCycles: env.syncCycles, resetCheckpoint: env.resetCheckpoint }, 'Consuming');
    this.lagTimer = setInterval(() => this.updateConsumerLag(), 5000);
    this.lagTimer.unref();
  }

  private stage(name: 'ingest' | 'sync', host: LaneHost): Stage {
    const env = this.settings.env;
    const lanes = new Map<string, Lane>();
    const consumer = new ChangeConsumer(
      { brokers: this.settings.brokers, groupId: env.groupId, clientId: `${env.workerId}-${name}`, consumeTimeoutMs: env.batchWaitMs, maxMessageBytes: env.kafkaMaxMessageBytes,
        fetchMinBytes: env.kafkaFetchMinBytes, fetchWaitMaxMs: env.kafkaFetchWaitMaxMs },
      { assigned: (parts) => this.onAssigned(name, host, lanes, parts), revoked: (parts) => this.onRevoked(name, lanes, parts) },
      this.log,
    );
    const loop = new ConsumeLoop(consumer, lanes, env.batchSize, env.maxBufferedEvents, this.log, () => {
      this.metrics.queueDepth.set(this.stages.reduce((n, s) => n + s.loop.buffered, 0));
      this.metrics.lanesActive.set(this.stages.reduce((n, s) => n + s.host.semaphore.active, 0));
    });
    return { host, consumer, loop, name };
  }

  /** GET /sync/status: lanes, lag, checkpoints, pause, codec. */
  private async status(): Promise<Record<string, unknown>> {
    const env = this.settings.env;
    const { rows: checkpoints } = await this.pool.query<{ topic: string; partition: number; next_offset: string; last_seq: string; updated_at: Date; updated_by: string | null }>(
      'SELECT topic, partition, next_offset, last_seq, updated_at, updated_by FROM sync_checkpoints WHERE consumer_group = $1 ORDER BY topic, partition', [env.groupId]);
    const sync = this.stages[1];
    const lanes = sync ? [...sync.loop.lanes.values()].map((l) => {
      const high = sync.consumer.highWatermark(l.topic, l.partition);
      return { topic: l.topic, partition: l.partition, queued: l.queued, nextOffset: l.checkpoint?.nextOffset ?? null, lag: high === undefined || high < 0 ? null : Math.max(0, high - (l.checkpoint?.nextOffset ?? 0)) };
    }) : [];
    return {
      group: env.groupId, worker: env.workerId, paused: this.pause.isPaused, emergencyStop: env.emergencyStop,
      codec: this.codec?.uses ?? null, queueDepth: this.stages.reduce((n, s) => n + s.loop.buffered, 0),
      lanes, lag: lanes.reduce((n, l) => n + (l.lag ?? 0), 0),
      checkpoints: checkpoints.map((c) => ({ topic: c.topic, partition: c.partition, nextOffset: Number(c.next_offset), lastSeq: Number(c.last_seq), updatedAt: c.updated_at, updatedBy: c.updated_by })),
    };
  }

  private ready() {
    const snap = this.readiness.snapshot();
    const body = {
      status: snap.ready ? 'ready' : 'not ready',
      emergencyStop: this.settings.env.emergencyStop,
      dependencies: snap.dependencies,
      failing: Object.entries(snap.dependencies).filter(([, s]) => !s.ok).map(([n]) => n),
    };
    return json(snap.ready ? 200 : 503, body);
  }

  private onAssigned(stage: string, host: LaneHost, lanes: Map<string, Lane>, parts: TopicPartition[]): Map<string, number> | undefined {
    this.metrics.rebalances.labels('assign').inc(parts.length);
    for (const p of parts) {
      const k = tpKey(p.topic, p.partition);
      lanes.get(k)?.revoke();
      lanes.set(k, new Lane(host, this.settings.env.groupId, p.topic, p.partition));
    }
    this.metrics.partitionsOwned.set(this.stages.reduce((n, s) => n + s.loop.lanes.size, 0));
    this.log.info({ stage, partitions: parts.map((p) => tpKey(p.topic, p.partition)) }, 'Partitions assigned');
    if (stage !== 'sync' || !this.settings.env.resetCheckpoint) return undefined;
    // A partition the control database has no checkpoint for was never committed as far
    // as it knows (sync_db restored from an older backup): start it from the beginning;
    // what was already applied is recognised by its source position.
    const offsets = new Map<string, number>();
    for (const p of parts) {
      const cp = this.preloaded.get(tpKey(p.topic, p.partition));
      offsets.set(tpKey(p.topic, p.partition), cp ? cp.nextOffset : OFFSET_BEGINNING);
    }
    this.log.warn({ offsets: Object.fromEntries(offsets) }, 'RESET_CHECKPOINT=true: seeking to the PostgreSQL checkpoint');
    return offsets;
  }

  private onRevoked(stage: string, lanes: Map<string, Lane>, parts: TopicPartition[]): void {
    this.metrics.rebalances.labels('revoke').inc(parts.length);
    for (const p of parts) {
      const k = tpKey(p.topic, p.partition);
      // its new owner reports its lag now: a stale series here would be counted twice
      if (stage === 'sync') this.metrics.consumerLag.remove(p.topic, String(p.partition));
      lanes.get(k)?.revoke();
      lanes.delete(k);
    }
    this.metrics.partitionsOwned.set(this.stages.reduce((n, s) => n + s.loop.lanes.size, 0));
    this.log.info({ stage, partitions: parts.map((p) => tpKey(p.topic, p.partition)) }, 'Partitions revoked');
  }

  private updateConsumerLag(): void {
    const sync = this.stages[1];
    if (!sync) return;
    for (const lane of sync.loop.lanes.values()) {
      const high = sync.consumer.highWatermark(lane.topic, lane.partition);
      if (high === undefined || high < 0) continue;
      this.metrics.consumerLag.labels(lane.topic, String(lane.partition)).set(Math.max(0, high - (lane.checkpoint?.nextOffset ?? 0)));
    }
  }

  private retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    // retrying a bad configuration cannot help
    return retry(what, fn, { log: this.log, fatal: (err) => this.stopping || err instanceof ConfigError });
  }

  /**
   * The process's fatal-error policy (an uncaught exception, an unhandled rejection): the
   * worker reports itself not ready at once; the caller exits non-zero. Nothing carries on
   * in a state nobody can reason about.
   */
  markFatal(detail: string): void {
    this.readiness.fail(detail);
  }

  /** SIGTERM: stop fetching, let in-flight and buffered batches commit, store offsets, leave. */
  async stop(graceMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // a signal during start-up: let it finish (a failing step gives up at once now), then tear down what it built
    await this.starting?.catch(() => undefined);
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.conflicts?.stop();
    this.pause.stop(); // batches held by a pause are released uncommitted
    // Ingest first, so everything it routed is in the changes topic; then sync.
    const drained = (async () => {
      for (const s of this.stages) await s.loop.drain();
    })();
    const timedOut = await Promise.race([drained.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) this.log.warn({ graceMs }, 'Grace period ended before every lane drained; the rest resumes from the checkpoint');
    for (const s of this.stages) s.consumer.commitStored();
    await this.audit?.stop().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'Final audit seal failed; the next owner signs the tail'));
    // One at a time: two librdkafka consumers leaving their group at once (cooperative-sticky)
    // was the suspect when a worker once died by signal right after its partitions were revoked.
    for (const s of this.stages) await s.consumer.disconnect();
    await this.producer?.disconnect();
    this.redis?.disconnect();
    await this.readiness.close();
    await Promise.all([...this.sinks.values()].map((s) => s.close().catch(() => undefined)));
    await this.http?.close();
    await this.api?.close();
    await this.pool.end().catch(() => undefined);
    this.log.info({ drained: !timedOut }, 'Stopped');
  }
}
