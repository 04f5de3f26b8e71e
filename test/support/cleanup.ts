import type pg from 'pg';
import { deleteTopic } from '../../src/kafka/producer.ts';
import { stack } from './stack.ts';

/**
 * Removes a test group's signed audit logs (rows, checkpoints, frontiers), its checkpoints
 * and the Kafka topics it published checkpoints to (issue 12, defect 7). Suites that damage
 * a log on purpose, or sign with a key of their own, call it last: a user who runs
 * `npm run verify:signatures` over every group after `npm test` must read "intact".
 */
export async function forgetGroup(control: pg.Pool, group: string, topics: string[] = []): Promise<void> {
  const like = `${group.replace(/[\\%_]/g, (c) => `\\${c}`)}:%`;
  await control.query('DELETE FROM audit_log WHERE log_id LIKE $1', [like]);
  await control.query('DELETE FROM audit_checkpoints WHERE log_id LIKE $1', [like]);
  await control.query('DELETE FROM audit_logs WHERE log_id LIKE $1', [like]);
  await control.query('DELETE FROM sync_checkpoints WHERE consumer_group = $1', [group]);
  for (const t of topics) await deleteTopic(stack().kafka.bootstrap, t);
}
