import type { ConsumedMessage } from '../kafka/consumer.ts';
import type { Checkpoint } from './checkpoint-store.ts';
import type { Semaphore } from './semaphore.ts';

/**
 * What became of a batch a lane handed to its host:
 * - `done`: committed (or found already committed, or dead-lettered): it leaves the queue;
 * - `held`: nothing was committed (a pause, a stop): it stays queued, and the lane waits at
 *   its gate before cutting it again;
 * - `reread`: the partition's checkpoint ends before the batch starts (DESIGN §3, invariant
 *   8). The host has sought the partition back to the checkpoint; the lane drops what it
 *   buffered, which is fetched again in order.
 */
export type BatchOutcome = 'done' | 'held' | 'reread';

export interface LaneHost {
  readonly semaphore: Semaphore;
  readonly batchSize: number;
  /** Loads the partition's committed checkpoint (once per ownership). */
  loadCheckpoint(topic: string, partition: number): Promise<Checkpoint | null>;
  /** Decodes, audits and commits one batch; retries internally until it commits, is held, or the lane is revoked. */
  processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<BatchOutcome>;
  /** Messages left the buffer (committed or dropped). */
  released(count: number): void;
  /**
   * Resolves true when the lane may take its next batch (a pause holds it here, before the
   * batch is cut), false when it must stop with what it holds uncommitted (the worker stops
   * while paused).
   */
  gate?(): Promise<boolean>;
  laneFailed(lane: Lane, err: unknown): void;
}

/**
 * One partition, processed in order by one lane (DESIGN §2). A lane takes a slot of the
 * shared semaphore per batch, so QUEUE_CONCURRENCY bounds how many batches run at once
 * and waiting lanes are served in turn. A batch leaves the queue only once its host says
 * it is done with it: a batch that was held is cut again, never dropped.
 */
export class Lane {
  readonly topic: string;
  readonly partition: number;
  readonly logId: string;
  checkpoint: Checkpoint | null = null;
  revoked = false;
  /** Re-reads from the checkpoint since the last batch that committed (the host backs off on repeats). */
  rereads = 0;

  private readonly host: LaneHost;
  private queue: ConsumedMessage[] = [];
  private head = 0;
  private running = false;
  /** The gate said stop: the lane keeps what it holds and runs no more. */
  private stopped = false;
  private readonly ready: Promise<void>;
  private idleWaiters: Array<() => void> = [];

  constructor(host: LaneHost, logPrefix: string, topic: string, partition: number) {
    this.host = host;
    this.topic = topic;
    this.partition = partition;
    // One audit log per consumed partition and consumer group: its only writer is the
    // partition's owner in that group (DESIGN §7).
    this.logId = `${logPrefix}:${topic}/${partition}`;
    this.ready = host.loadCheckpoint(topic, partition).then((cp) => {
      this.checkpoint = cp;
    });
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  enqueue(messages: ConsumedMessage[]): void {
    if (this.revoked) {
      this.host.released(messages.length);
      return;
    }
    for (const m of messages) this.queue.push(m);
    this.schedule();
  }

  /** The partition was taken away: drop what is buffered; an in-flight commit is fenced by the checkpoint. */
  revoke(): void {
    this.revoked = true;
    this.dropQueued();
    if (!this.running) this.notifyIdle();
  }

  /** Resolves when nothing is queued or in flight, or when the lane stopped holding what it has. */
  idle(): Promise<void> {
    if (!this.running && (this.queued === 0 || this.stopped || this.revoked)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private dropQueued(): void {
    const dropped = this.queued;
    this.queue = [];
    this.head = 0;
    if (dropped > 0) this.host.released(dropped);
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private schedule(): void {
    if (this.running || this.queued === 0 || this.revoked || this.stopped) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      await this.ready;
      while (this.queued > 0 && !this.revoked) {
        if (this.host.gate && !(await this.host.gate())) {
          this.stopped = true;
          break;
        }
        if (this.revoked) break;
        await this.host.semaphore.acquire();
        try {
          if (this.revoked) break;
          const end = Math.min(this.queue.length, this.head + this.host.batchSize);
          const batch = this.queue.slice(this.head, end);
          const outcome = await this.host.processBatch(this, batch);
          if (this.revoked) break;
          if (outcome === 'done') {
            this.head = end;
            if (this.head > 4096 && this.head * 2 > this.queue.length) {
              this.queue = this.queue.slice(this.head);
              this.head = 0;
            }
            this.host.released(batch.length);
          } else if (outcome === 'reread') {
            this.dropQueued();
          }
          // held: the batch stays at the head of the queue; the gate decides when it is cut again
        } finally {
          this.host.semaphore.release();
        }
      }
    } catch (err) {
      this.host.laneFailed(this, err);
    } finally {
      this.running = false;
      if (this.queued > 0 && !this.revoked && !this.stopped) this.schedule();
      else this.notifyIdle();
    }
  }
}
