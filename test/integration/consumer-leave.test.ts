import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ChangeConsumer, tpKey, type TopicPartition } from '../../src/kafka/consumer.ts';
import { deleteTopic, ensureTopic } from '../../src/kafka/producer.ts';
import { stack, waitFor } from '../support/stack.ts';

/**
 * Leaving the group on disconnect, on the real broker: every partition is revoked, and
 * every assignment on its way delivered, before librdkafka's close() runs, because a
 * rebalance callback served during close races node-rdkafka's teardown of the handle
 * (a worker stopped by SIGTERM died by signal instead of exiting 0).
 */
const topic = `it-leave-${Date.now().toString(36)}`;
const brokers = () => stack().kafka.bootstrap;

beforeAll(async () => {
  await ensureTopic(brokers(), topic, 4, 1);
});

afterAll(async () => {
  await deleteTopic(brokers(), topic).catch(() => undefined);
});

interface Member {
  consumer: ChangeConsumer;
  owned: Set<string>;
  lines: Array<{ level: number; msg: string }>;
  polling: boolean;
  poller: Promise<void>;
}

function member(group: string, name: string): Member {
  const lines: Member['lines'] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s)); } });
  const owned = new Set<string>();
  const consumer = new ChangeConsumer({ brokers: brokers(), groupId: group, clientId: name, consumeTimeoutMs: 100 }, {
    assigned(parts: TopicPartition[]) { for (const p of parts) owned.add(tpKey(p.topic, p.partition)); return undefined; },
    revoked(parts: TopicPartition[]) { for (const p of parts) owned.delete(tpKey(p.topic, p.partition)); },
  }, log);
  return { consumer, owned, lines, polling: false, poller: Promise.resolve() };
}

async function join(m: Member): Promise<void> {
  await m.consumer.connect();
  m.consumer.subscribe([topic]);
  m.polling = true;
  m.poller = (async () => {
    while (m.polling) await m.consumer.consume(100);
  })();
}

/** Stops the member's own polling (as the worker's drain does), then disconnects. */
async function leave(m: Member): Promise<void> {
  m.polling = false;
  await m.poller;
  await m.consumer.disconnect();
}

const complaints = (m: Member) => m.lines.filter((l) => l.level >= 40).map((l) => l.msg);

describe('ChangeConsumer.disconnect', () => {
  it('gives every partition back before it closes, with another member taking them over', async () => {
    const group = `${topic}-a`;
    const a = member(group, 'a');
    const b = member(group, 'b');
    await join(a);
    await waitFor('a owns all 4 partitions', async () => a.owned.size === 4, 60_000);
    await join(b);
    await waitFor('the partitions shared out', async () => a.owned.size > 0 && b.owned.size > 0 && a.owned.size + b.owned.size === 4, 60_000);
    await leave(a);
    expect(a.owned.size).toBe(0);
    expect(complaints(a)).toEqual([]);
    await waitFor('b owns all 4 partitions', async () => b.owned.size === 4, 60_000);
    await leave(b);
    expect(b.owned.size).toBe(0);
    expect(complaints(b)).toEqual([]);
  });

  it('leaves cleanly while its first assignment is still on its way', async () => {
    const a = member(`${topic}-b`, 'a');
    await join(a);
    await leave(a); // at once: the group is still forming
    expect(a.owned.size).toBe(0);
    expect(complaints(a)).toEqual([]);
    expect(a.consumer.isConnected()).toBe(false);
  });
});
