/** A FIFO counting semaphore: QUEUE_CONCURRENCY lanes process at once, in arrival order. */
export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];
  private readonly size: number;

  constructor(size: number) {
    this.size = size;
    this.available = size;
  }

  get active(): number {
    return this.size - this.available;
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }
}
