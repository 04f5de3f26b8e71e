import { errorMessage } from './errors.ts';
import type { Logger } from './log.ts';

/** Exponential backoff with jitter: 50-100 ms after the first failure, doubling, at most 2.5-5 s. */
export const backoff = (attempt: number): number => Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What `retry` returns when `abandon` said to stop before an attempt. */
export const ABANDONED: unique symbol = Symbol('abandoned');

export interface RetryOptions {
  log: Logger;
  /** The log message of a failed attempt; default `<what> failed; retrying`. */
  message?: string;
  level?: 'warn' | 'error';
  /** Logged with every failed attempt, beside `attempt` and `err`. */
  context?: Record<string, unknown>;
  /** Checked before every attempt and after every backoff: true stops the retries (`ABANDONED`). */
  abandon?: () => boolean;
  /** An error retrying cannot help: thrown at once. */
  fatal?: (err: unknown) => boolean;
}

/**
 * The worker's one retry loop: runs `fn` until it succeeds, logging each failure and
 * backing off (`backoff`) between attempts. Retries are unbounded, because what fails here
 * is a server the worker cannot do without, and giving up would lose the batch in hand.
 * `abandon` ends them when the work is no longer this worker's (a revoked lane, a stop).
 */
export async function retry<T>(what: string, fn: (attempt: number) => Promise<T>, o: RetryOptions & { abandon: () => boolean }): Promise<T | typeof ABANDONED>;
export async function retry<T>(what: string, fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T>;
export async function retry<T>(what: string, fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T | typeof ABANDONED> {
  for (let attempt = 0; ; attempt++) {
    if (o.abandon?.()) return ABANDONED;
    try {
      return await fn(attempt);
    } catch (err) {
      if (o.fatal?.(err)) throw err;
      o.log[o.level ?? 'warn']({ ...o.context, attempt, err: errorMessage(err) }, o.message ?? `${what} failed; retrying`);
      await sleep(backoff(attempt));
    }
  }
}
