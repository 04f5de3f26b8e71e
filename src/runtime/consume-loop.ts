import type { ChangeConsumer, ConsumedMessage } from '../kafka/consumer.ts';
import { tpKey } from '../kafka/consumer.ts';
import type { Logger } from '../log.ts';
import { ABANDONED, retry } from '../retry.ts';
import type { Lane } from './lane.ts';

/**
 * Fetches batches from one consumer and hands each partition's run of messages to its
 * lane. Fetching pauses while more than `maxBuffered` messages wait uncommitted, so a
 * slow target turns into consumer lag, not memory.
 */
export class ConsumeLoop {
  readonly lanes: Map<string, Lane>;
  buffered = 0;

  private readonly consumer: ChangeConsumer;
  private readonly batchSize: number;
  private readonly maxBuffered: number;
  private readonly log: Logger;
  private readonly onDepth: () => void;
  private drainWaiter: (() => void) | undefined;
  private stopping = false;
  private done: Promise<void> = Promise.resolve();

  constructor(consumer: ChangeConsumer, lanes: Map<string, Lane>, batchSize: number, maxBuffered: number, log: Logger, onDepth: () => void) {
    this.consumer = consumer;
    this.lanes = lanes;
    this.batchSize = batchSize;
    this.maxBuffered = maxBuffered;
    this.log = log;
    this.onDepth = onDepth;
  }

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      if (this.buffered >= this.maxBuffered) {
        await new Promise<void>((r) => { this.drainWaiter = r; });
        continue;
      }
      const messages = await retry('consume', () => this.consumer.consume(this.batchSize), { log: this.log, message: 'Consume failed; backing off', abandon: () => this.stopping });
      if (messages === ABANDONED) break;
      if (messages.length > 0) this.dispatch(messages);
    }
  }

  private dispatch(messages: ConsumedMessage[]): void {
    let run: ConsumedMessage[] = [];
    let runKey = '';
    const flush = () => {
      if (run.length === 0) return;
      const lane = this.lanes.get(runKey);
      this.buffered += run.length;
      if (lane) lane.enqueue(run);
      else this.released(run.length); // not ours any more: its owner reads it from the checkpoint
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
    this.onDepth();
  }

  released(count: number): void {
    this.buffered -= count;
    this.onDepth();
    if (this.drainWaiter && this.buffered < this.maxBuffered / 2) {
      const w = this.drainWaiter;
      this.drainWaiter = undefined;
      w();
    }
  }

  /** Stops fetching; resolves when every lane has committed what it holds. */
  async drain(): Promise<void> {
    this.stopping = true;
    this.drainWaiter?.();
    await this.done;
    await Promise.all([...this.lanes.values()].map((l) => l.idle()));
  }
}
