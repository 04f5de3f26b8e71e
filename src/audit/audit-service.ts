import type pg from 'pg';
import type { OutMessage } from '../kafka/producer.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { errorMessage } from '../errors.ts';
import type { AuditWriter } from './audit-writer.ts';
import type { CheckpointRow } from './signing.ts';
import { groupLogRegex } from './admin-log.ts';
import type { WitnessClient } from './witness.ts';

/** A published checkpoint as it travels on the checkpoints topic (and as the verifier reads it). */
export interface PublishedCheckpoint {
  log_id: string;
  tree_size: number;
  root: string;
  prev_hash: string | null;
  signed_at: string;
  key_id: string;
  signature: string;
  checkpoint_hash: string;
  /** The same checkpoint as a C2SP signed note (absent on checkpoints signed before notes). */
  note?: string;
}

/**
 * Background work of the signed audit log (DESIGN §7): signs a checkpoint for each owned
 * log whose tail waited AUDIT_CHECKPOINT_MS unsigned (an idle log is sealed too), and
 * publishes new checkpoints to the checkpoints topic (retention.ms=-1), marking them
 * published. On shutdown every owned log is sealed and published.
 */
export class AuditService {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly o: {
    pool: pg.Pool; writer: AuditWriter; epochs: Map<string, number>; groupId: string; topic: string; everyMs: number; log: Logger; metrics: Metrics;
    send: (messages: OutMessage[]) => Promise<void>;
    /** AUDIT_WITNESS_URL: the owned logs' newest checkpoints go to it after publishing. */
    witness?: WitnessClient;
  };

  constructor(o: AuditService['o']) {
    this.o = o;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.o.everyMs / 2)));
    this.timer.unref();
  }

  async tick(force = false): Promise<void> {
    if (this.running && !force) return;
    this.running = true;
    try {
      // one query finds the owned logs with an unsigned tail old enough; only those are sealed
      const { rows } = await this.o.pool.query<{ log_id: string }>(
        `SELECT log_id FROM audit_logs WHERE log_id = ANY($1) AND tree_size > checkpoint_size
           AND ($2 OR checkpoint_at IS NULL OR checkpoint_at < now() - make_interval(secs => $3))`,
        [[...this.o.epochs.keys()], force, this.o.everyMs / 1000],
      );
      for (const { log_id: logId } of rows) {
        const epoch = this.o.epochs.get(logId);
        if (epoch === undefined) continue;
        const sealed = await this.o.writer.seal(this.o.pool, logId, epoch, !force);
        if (sealed === 'busy') this.o.metrics.auditSealsBusy.inc();
        else if (sealed) this.o.metrics.auditCheckpoints.inc();
      }
      await this.publish();
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'Audit sealing or publishing failed; retrying');
    } finally {
      this.running = false;
    }
    if (!force) void this.witness();
  }

  private witnessing = false;

  /** On its own: a slow or absent witness delays neither sealing nor publishing (nor shutdown, which skips it). */
  private async witness(): Promise<void> {
    if (!this.o.witness || this.witnessing) return;
    this.witnessing = true;
    try {
      await this.o.witness.run([...this.o.epochs.keys()]);
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'Audit witnessing failed; retrying');
    } finally {
      this.witnessing = false;
    }
  }

  private async publish(): Promise<void> {
    const { rows } = await this.o.pool.query<CheckpointRow>(
      `SELECT log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash, note FROM audit_checkpoints
       WHERE published_at IS NULL AND log_id ~ $1 ORDER BY log_id, tree_size LIMIT 1000`,
      [groupLogRegex(this.o.groupId)],
    );
    if (rows.length === 0) return;
    await this.o.send(rows.map((r) => {
      const c: PublishedCheckpoint = {
        log_id: r.log_id, tree_size: Number(r.tree_size), root: r.root.toString('hex'), prev_hash: r.prev_hash?.toString('hex') ?? null,
        signed_at: r.signed_at.toISOString(), key_id: r.key_id, signature: r.signature.toString('hex'), checkpoint_hash: r.checkpoint_hash.toString('hex'),
        ...(r.note ? { note: r.note } : {}),
      };
      return { topic: this.o.topic, key: r.log_id, value: Buffer.from(JSON.stringify(c)) };
    }));
    await this.o.pool.query(
      `UPDATE audit_checkpoints c SET published_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(l, s) WHERE c.log_id = u.l AND c.tree_size = u.s`,
      [rows.map((r) => r.log_id), rows.map((r) => r.tree_size)],
    );
    this.o.metrics.auditPublished.inc(rows.length);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.tick(true);
  }
}
