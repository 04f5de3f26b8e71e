import { describe, expect, it } from 'vitest';
import { ABANDONED, backoff, retry } from '../../src/retry.ts';
import type { Logger } from '../../src/log.ts';

/** A logger that keeps what it is given. */
function recorder() {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push({ level, obj, msg }); };
  return { lines, log: { warn: at('warn'), error: at('error') } as unknown as Logger };
}

describe('retry, the worker\'s one retry loop', () => {
  it('runs until the call succeeds, logging each failure with its attempt and context', async () => {
    const { lines, log } = recorder();
    let calls = 0;
    const v = await retry('lookup', async (attempt) => {
      expect(attempt).toBe(calls);
      if (++calls < 3) throw new Error(`down ${calls}`);
      return 'ok';
    }, { log, context: { lane: 'g:t/0' } });
    expect(v).toBe('ok');
    expect(calls).toBe(3);
    expect(lines).toEqual([
      { level: 'warn', obj: { lane: 'g:t/0', attempt: 0, err: 'down 1' }, msg: 'lookup failed; retrying' },
      { level: 'warn', obj: { lane: 'g:t/0', attempt: 1, err: 'down 2' }, msg: 'lookup failed; retrying' },
    ]);
  });

  it('throws a fatal error at once, and logs at the level and with the message it is given', async () => {
    const { lines, log } = recorder();
    let calls = 0;
    await expect(retry('migration', async () => {
      calls++;
      throw new Error(calls === 1 ? 'transient' : 'bad config');
    }, { log, level: 'error', message: 'Migration failed; retrying in order', fatal: (e) => (e as Error).message === 'bad config' })).rejects.toThrow('bad config');
    expect(calls).toBe(2);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['error', 'Migration failed; retrying in order']]);
  });

  it('stops with ABANDONED when abandon says so, before an attempt and after a backoff', async () => {
    const { log } = recorder();
    let calls = 0;
    expect(await retry('send', async () => { calls++; return 1; }, { log, abandon: () => true })).toBe(ABANDONED);
    expect(calls).toBe(0);
    let revoked = false;
    const r = await retry('send', async () => { calls++; revoked = true; throw new Error('broker down'); }, { log, abandon: () => revoked });
    expect(r).toBe(ABANDONED);
    expect(calls).toBe(1);
  });

  it('backs off exponentially with jitter, capped at 5 s', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const cap = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
      for (let i = 0; i < 50; i++) {
        const ms = backoff(attempt);
        expect(ms).toBeGreaterThanOrEqual(cap / 2);
        expect(ms).toBeLessThanOrEqual(cap);
      }
    }
  });
});
