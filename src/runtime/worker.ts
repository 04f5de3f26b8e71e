import pg from 'pg';
import type { EnvConfig } from '../config/env.ts';
import type { Topology } from '../config/topology.ts';
import { DebeziumDecoder } from '../events/debezium.ts';
import { ChangeConsumer, tpKey, type ConsumedMessage, type TopicPartition } from '../kafka/consumer.ts';
import { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { migrateControlSchema, registerNodes } from '../audit/control-schema.ts';
import { CheckpointStore, type Checkpoint } from './checkpoint-store.ts';
import { BatchProcessor, isDataError } from './batch-processor.ts';
import { Lane, type LaneHost } from './lane.ts';
import { Semaphore } from './semaphore.ts';
import { Readiness } from './readiness.ts';
import { startHttpServer, json, type RunningServer } from '../http/server.ts';
import { errorMessage } from '../errors.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const backoff = (attempt: number) => Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);

export interface WorkerSettings {
  env: EnvConfig;
  topology: Topology;
  brokers: string;
  controlUrl: string;
}

/**
 * The walking skeleton's runtime: consume the Debezium topics, one lane per partition,
 * each batch audited and checkpointed in one PostgreSQL transaction, offsets stored after.
 */
export class Worker implements LaneHost {
  readonly metrics = new Metrics();
  readonly semaphore: Semaphore;
  readonly batchSize: number;

  private readonly settings: WorkerSettings;
  private readonly log: Logger;
  private readonly pool: pg.Pool;
  private readonly checkpoints: CheckpointStore;
  private readonly processor: BatchProcessor;
  private readonly readiness = new Readiness();
  private readonly lanes = new Map<string, Lane>();
  private consumer: ChangeConsumer | undefined;
  private http: RunningServer | undefined;
  private buffered = 0;
  private drainWaiter: (() => void) | undefined;
  private stopping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private preloaded = new Map<string, Checkpoint>();
  private lagTimer: NodeJS.Timeout | undefined;

  constructor(settings: WorkerSettings, log: Logger) {
    this.settings = settings;
    this.log = log;
    this.semaphore = new Semaphore(settings.env.queueConcurrency);
    this.batchSize = settings.env.batchSize;
    this.pool = new pg.Pool({ connectionString: settings.controlUrl, max: settings.env.queueConcurrency + 2, connectionTimeoutMillis: 5000 });
    this.pool.on('error', (err) => log.warn({ err: err.message }, 'Idle control-database connection failed'));
    this.checkpoints = new CheckpointStore(this.pool, settings.env.groupId);
    const topology = settings.topology;
    this.processor = new BatchProcessor(this.pool, new DebeziumDecoder(topology), this.checkpoints, this.metrics, log, {
      workerId: settings.env.workerId,
      crashPoint: settings.env.testCrashPoint,
      topicInfo: (topic) => {
        const t = topology.topics.get(topic);
        return t ? { entity: t.entity.name, node: t.mapping.node } : undefined;
      },
    });
  }

  async start(): Promise<void> {
    const { env, topology } = this.settings;
    this.http = await startHttpServer(env.httpHost, env.httpPort, [
      { method: 'GET', path: '/health', handler: () => json(200, { status: 'ok', uptimeSeconds: Math.round(process.uptime()) }) },
      { method: 'GET', path: '/ready', handler: () => this.ready() },
      { method: 'GET', path: '/metrics', handler: async () => ({ status: 200, body: await this.metrics.registry.metrics(), contentType: this.metrics.registry.contentType }) },
    ], this.log);
    this.log.info({ port: this.http.port, engine: this.http.engine }, 'Operating surface listening (/health, /ready, /metrics)');

    await this.retry('control database migration', () => migrateControlSchema(this.pool));
    await registerNodes(this.pool, [...topology.nodes.keys()]);
    this.readiness.add('control-db', async () => { await this.pool.query('SELECT 1'); });
    for (const node of topology.nodes.values()) this.readiness.addNode(node);

    this.metrics.emergencyStop.set(env.emergencyStop ? 1 : 0);
    if (env.emergencyStop) {
      this.log.warn('EMERGENCY_STOP=true: consuming nothing; /health, /metrics and the API stay up');
      this.readiness.start();
      return;
    }
    const topics = [...topology.topics.keys()];
    this.preloaded = await this.checkpoints.loadAll(topics);
    this.consumer = new ChangeConsumer(
      { brokers: this.settings.brokers, groupId: env.groupId, clientId: env.workerId, consumeTimeoutMs: env.batchWaitMs },
      { assigned: (parts) => this.onAssigned(parts), revoked: (parts) => this.onRevoked(parts) },
      this.log,
    );
    await this.retry('Kafka connection', () => this.consumer!.connect());
    this.readiness.add('kafka', async () => {
      if (!this.consumer?.isConnected()) throw new Error('consumer disconnected');
    });
    this.readiness.start();
    this.consumer.subscribe(topics);
    this.log.info({ topics, group: env.groupId, concurrency: env.queueConcurrency, resetCheckpoint: env.resetCheckpoint }, 'Consuming');
    this.loopDone = this.consumeLoop();
    this.lagTimer = setInterval(() => this.updateConsumerLag(), 5000);
    this.lagTimer.unref();
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

  private onAssigned(parts: TopicPartition[]): Map<string, number> | undefined {
    this.metrics.rebalances.labels('assign').inc(parts.length);
    for (const p of parts) {
      const k = tpKey(p.topic, p.partition);
      this.lanes.get(k)?.revoke();
      this.lanes.set(k, new Lane(this, this.settings.env.groupId, p.topic, p.partition));
    }
    this.metrics.partitionsOwned.set(this.lanes.size);
    this.log.info({ partitions: parts.map((p) => tpKey(p.topic, p.partition)) }, 'Partitions assigned');
    if (!this.settings.env.resetCheckpoint) return undefined;
    const offsets = new Map<string, number>();
    for (const p of parts) {
      const cp = this.preloaded.get(tpKey(p.topic, p.partition));
      if (cp) offsets.set(tpKey(p.topic, p.partition), cp.nextOffset);
    }
    this.log.warn({ offsets: Object.fromEntries(offsets) }, 'RESET_CHECKPOINT=true: seeking to the PostgreSQL checkpoint');
    return offsets;
  }

  private onRevoked(parts: TopicPartition[]): void {
    this.metrics.rebalances.labels('revoke').inc(parts.length);
    for (const p of parts) {
      const k = tpKey(p.topic, p.partition);
      this.lanes.get(k)?.revoke();
      this.lanes.delete(k);
    }
    this.metrics.partitionsOwned.set(this.lanes.size);
    this.log.info({ partitions: parts.map((p) => tpKey(p.topic, p.partition)) }, 'Partitions revoked');
  }

  private async consumeLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      if (this.buffered >= this.settings.env.maxBufferedEvents) {
        await new Promise<void>((r) => { this.drainWaiter = r; });
        continue;
      }
      let messages: ConsumedMessage[];
      try {
        messages = await this.consumer!.consume(this.batchSize);
        failures = 0;
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'Consume failed; backing off');
        await sleep(backoff(failures++));
        continue;
      }
      if (messages.length === 0) continue;
      this.dispatch(messages);
    }
  }

  private dispatch(messages: ConsumedMessage[]): void {
    let run: ConsumedMessage[] = [];
    let runKey = '';
    const flush = () => {
      if (run.length === 0) return;
      const lane = this.lanes.get(runKey);
      this.buffered += run.length;
      this.metrics.queueDepth.set(this.buffered);
      if (lane) lane.enqueue(run);
      else this.released(run.length); // not ours (any more): the owner reads it from its checkpoint
      run = [];
    };
    for (const m of messages) {
      const k = tpKey(m.topic, m.partition);
      if (k !== runKey) {
        flush();
        runKey = k;
      }
      run.push(m);
    }
    flush();
  }

  // LaneHost

  async loadCheckpoint(topic: string, partition: number): Promise<Checkpoint | null> {
    return this.retry(`checkpoint load ${topic}/${partition}`, () => this.checkpoints.load(topic, partition));
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<void> {
    let outcome = this.processor.decode(lane, batch);
    for (let attempt = 0; ; attempt++) {
      if (lane.revoked) return;
      try {
        this.metrics.lanesActive.set(this.semaphore.active);
        await this.processor.commit(lane, batch, outcome);
        break;
      } catch (err) {
        if ((err as { code?: string }).code === 'WS_CHECKPOINT_FENCED') {
          this.log.warn({ lane: lane.logId, err: errorMessage(err) }, 'Checkpoint moved under us; reloading it');
          lane.checkpoint = await this.checkpoints.load(lane.topic, lane.partition).catch(() => lane.checkpoint);
          outcome = this.processor.decode(lane, batch);
          continue;
        }
        if (isDataError(err) && (await this.processor.isolateRejects(lane, outcome).catch(() => 0)) > 0) continue;
        this.metrics.commitFailures.inc();
        this.log.error({ lane: lane.logId, attempt, err: errorMessage(err) }, 'Batch commit failed; retrying in order');
        await sleep(backoff(attempt));
      }
    }
    this.processor.observe(outcome);
    const last = batch[batch.length - 1]!;
    this.consumer?.storeOffset(lane.topic, lane.partition, last.offset + 1);
  }

  released(count: number): void {
    this.buffered -= count;
    this.metrics.queueDepth.set(this.buffered);
    if (this.drainWaiter && this.buffered < this.settings.env.maxBufferedEvents / 2) {
      const w = this.drainWaiter;
      this.drainWaiter = undefined;
      w();
    }
  }

  laneFailed(lane: Lane, err: unknown): void {
    this.log.error({ lane: lane.logId, err: errorMessage(err) }, 'Lane failed');
  }

  private updateConsumerLag(): void {
    for (const lane of this.lanes.values()) {
      const high = this.consumer?.highWatermark(lane.topic, lane.partition);
      if (high === undefined || high < 0) continue;
      this.metrics.consumerLag.labels(lane.topic, String(lane.partition)).set(Math.max(0, high - (lane.checkpoint?.nextOffset ?? 0)));
    }
  }

  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.stopping) throw err;
        this.log.warn({ attempt, err: errorMessage(err) }, `${what} failed; retrying`);
        await sleep(backoff(attempt));
      }
    }
  }

  /** SIGTERM: stop fetching, let in-flight and buffered batches commit, store offsets, leave. */
  async stop(graceMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.drainWaiter?.();
    if (this.lagTimer) clearInterval(this.lagTimer);
    const drained = this.loopDone.then(() => Promise.all([...this.lanes.values()].map((l) => l.idle())));
    const timedOut = await Promise.race([drained.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) this.log.warn({ graceMs }, 'Grace period ended before every lane drained; the rest resumes from the checkpoint');
    this.consumer?.commitStored();
    await this.consumer?.disconnect();
    await this.readiness.close();
    await this.http?.close();
    await this.pool.end().catch(() => undefined);
    this.log.info({ drained: !timedOut }, 'Stopped');
  }
}
