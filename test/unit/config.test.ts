import { describe, expect, it } from 'vitest';
import { parseEnv } from '../../src/config/env.ts';
import { loadTopology, parseTopology } from '../../src/config/topology.ts';
import { ConfigError } from '../../src/errors.ts';
import path from 'node:path';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('environment', () => {
  it('has defaults for the local stack', () => {
    const env = parseEnv({});
    expect(env).toMatchObject({ groupId: 'worker-sync-group', queueConcurrency: 4, emergencyStop: false, resetCheckpoint: false, httpPort: 3003 });
  });

  it('names the bad variable', () => {
    expect(configError(() => parseEnv({ QUEUE_CONCURRENCY: '0' }))).toBe('QUEUE_CONCURRENCY: must be between 1 and 1024, got 0');
    expect(configError(() => parseEnv({ QUEUE_CONCURRENCY: '2.5' }))).toBe('QUEUE_CONCURRENCY: must be an integer, got "2.5"');
    expect(configError(() => parseEnv({ RESET_CHECKPOINT: 'si' }))).toBe('RESET_CHECKPOINT: must be true or false, got "si"');
    expect(configError(() => parseEnv({ HTTP_PORT: '70000' }))).toBe('HTTP_PORT: must be between 0 and 65535, got 70000');
    expect(configError(() => parseEnv({ LOG_LEVEL: 'loud' }))).toMatch(/^LOG_LEVEL: must be one of/);
    expect(configError(() => parseEnv({ WORKER_SYNC_TEST_CRASH_POINT: 'after-commit' }))).toMatch(/^WORKER_SYNC_TEST_CRASH_POINT: is a test-only setting/);
    expect(configError(() => parseEnv({ DATABASE_URL: 'x', DATABASE_URL_FILE: '/nope' }))).toBe('DATABASE_URL: set either DATABASE_URL or DATABASE_URL_FILE, not both');
    expect(configError(() => parseEnv({ DATABASE_URL_FILE: '/nonexistent/secret' }))).toMatch(/^DATABASE_URL_FILE: cannot read/);
  });

  it('reads the Kafka fetch and linger settings, latency first by default', () => {
    expect(parseEnv({})).toMatchObject({ kafkaFetchMinBytes: 1, kafkaFetchWaitMaxMs: 250, kafkaLingerMs: 2 });
    expect(parseEnv({ KAFKA_FETCH_MIN_BYTES: '65536', KAFKA_FETCH_WAIT_MAX_MS: '50', KAFKA_LINGER_MS: '0' })).toMatchObject({ kafkaFetchMinBytes: 65536, kafkaFetchWaitMaxMs: 50, kafkaLingerMs: 0 });
    expect(configError(() => parseEnv({ KAFKA_FETCH_MIN_BYTES: '0' }))).toBe('KAFKA_FETCH_MIN_BYTES: must be between 1 and 100000000, got 0');
    expect(configError(() => parseEnv({ KAFKA_FETCH_WAIT_MAX_MS: '50ms' }))).toBe('KAFKA_FETCH_WAIT_MAX_MS: must be an integer, got "50ms"');
  });

  it('runs a quarter as many sync cycles as ingest slots unless SYNC_CYCLES says', () => {
    expect(parseEnv({}).syncCycles).toBe(1);
    expect(parseEnv({ QUEUE_CONCURRENCY: '8' }).syncCycles).toBe(2);
    expect(parseEnv({ QUEUE_CONCURRENCY: '20' }).syncCycles).toBe(5);
    expect(parseEnv({ QUEUE_CONCURRENCY: '20', SYNC_CYCLES: '1' })).toMatchObject({ queueConcurrency: 20, syncCycles: 1 });
    expect(configError(() => parseEnv({ SYNC_CYCLES: '0' }))).toBe('SYNC_CYCLES: must be between 1 and 1024, got 0');
    expect(configError(() => parseEnv({ SYNC_CYCLES: 'two' }))).toBe('SYNC_CYCLES: must be an integer, got "two"');
  });

  it('starts sync cycles as soon as batches are cut unless CYCLE_INTERVAL_MS says', () => {
    expect(parseEnv({}).cycleIntervalMs).toBe(0);
    expect(parseEnv({ CYCLE_INTERVAL_MS: '100' }).cycleIntervalMs).toBe(100);
    expect(configError(() => parseEnv({ CYCLE_INTERVAL_MS: '-1' }))).toBe('CYCLE_INTERVAL_MS: must be between 0 and 10000, got -1');
  });

  it('reads true/false the usual ways', () => {
    expect(parseEnv({ EMERGENCY_STOP: 'TRUE', RESET_CHECKPOINT: '1' })).toMatchObject({ emergencyStop: true, resetCheckpoint: true });
  });
});

describe('topology', () => {
  const base = () => ({
    nodes: { pg: { kind: 'postgres', url: 'postgres://a@b/c' } },
    entities: { customers: { key: ['id'], columns: { id: 'bigint', name: 'text' }, nodes: { pg: 'public.customers' } } },
  });

  it('loads the demo topology', () => {
    const t = loadTopology(path.resolve('deploy/local/worker-sync.yaml'));
    expect([...t.topics.keys()].sort()).toEqual(['maria.app.customers', 'maria.app.orders', 'maria.app.type_probe', 'pg.public.customers', 'pg.public.orders', 'pg.public.type_probe']);
    expect(t.entities.get('customers')!.versionColumn).toBe('_sync_version');
    expect(t.entities.get('orders')!.versionColumn).toBeUndefined();
  });

  it('rejects identifiers that are not plain', () => {
    const doc = base();
    (doc.entities.customers.nodes as Record<string, string>).pg = 'public.customers"; drop table x; --';
    expect(configError(() => parseTopology(doc, 't'))).toMatch(/^entities\.customers\.nodes\.pg\.table: /);
    const doc2 = base();
    (doc2.entities.customers.columns as Record<string, string>)['bad name'] = 'text';
    expect(configError(() => parseTopology(doc2, 't'))).toMatch(/^entities\.customers\.columns\.bad name: /);
  });

  it('names unknown nodes, types, policies and key columns', () => {
    const d1 = base();
    (d1.entities.customers.nodes as Record<string, string>).mongo = 'db.customers';
    expect(configError(() => parseTopology(d1, 't'))).toBe('entities.customers.nodes.mongo: node "mongo" is not declared under nodes');
    const d2 = base();
    (d2.entities.customers.columns as Record<string, string>).name = 'varchar2';
    expect(configError(() => parseTopology(d2, 't'))).toBe('entities.customers.columns.name: unknown column type "varchar2"');
    const d3 = { ...base(), entities: { customers: { ...base().entities.customers, policy: 'coinflip' } } };
    expect(configError(() => parseTopology(d3, 't'))).toMatch(/^entities\.customers\.policy: must be one of lww/);
    for (const policy of ['lww', 'priority', 'merge', 'manual']) {
      expect(parseTopology({ ...base(), entities: { customers: { ...base().entities.customers, policy } } }, 't').entities.get('customers')!.policy).toBe(policy);
    }
    const d4 = { ...base(), entities: { customers: { ...base().entities.customers, key: ['uid'] } } };
    expect(configError(() => parseTopology(d4, 't'))).toBe('entities.customers.key: key column "uid" is not among the entity\'s columns');
    const d5 = { ...base(), nodes: { pg: { kind: 'oracle', url: 'x' } } };
    expect(configError(() => parseTopology(d5, 't'))).toMatch(/^nodes\.pg\.kind: must be one of/);
  });

  it('maps renamed columns both ways', () => {
    const doc = base();
    (doc.entities.customers.nodes as Record<string, unknown>).pg = { table: 'public.clients', columns: { name: 'full_name' } };
    const m = parseTopology(doc, 't').entities.get('customers')!.nodes.get('pg')!;
    expect(m.columns.get('name')).toBe('full_name');
    expect(m.columnsBack.get('full_name')).toBe('name');
    expect(m.topic).toBe('pg.public.clients');
  });
});

describe('failure kinds (errors.ts): classified once, where they happen', () => {
  it('tells rows, an unavailable node, a busy one and the rest apart', async () => {
    const { failureKind, isTransient, TargetError } = await import('../../src/errors.ts');
    const e = (props: Record<string, unknown>, message = 'x') => Object.assign(new Error(message), props);
    expect(failureKind(e({ code: '23505' }))).toBe('rows'); // PostgreSQL unique violation
    expect(failureKind(e({ code: '22003' }))).toBe('rows'); // numeric out of range
    expect(failureKind(e({ errno: 1062, sqlState: '23000', code: 'ER_DUP_ENTRY' }))).toBe('rows');
    expect(failureKind(e({ errno: 1153, sqlState: '08S01', code: 'ER_NET_PACKET_TOO_LARGE' }))).toBe('rows');
    expect(failureKind(e({ code: 'ECONNREFUSED' }))).toBe('unavailable');
    expect(failureKind(e({ code: '57P01' }))).toBe('unavailable'); // admin shutdown
    expect(failureKind(e({ code: '42P01' }))).toBe('unavailable'); // a table the topology names is missing
    expect(failureKind(e({ code: 'PROTOCOL_CONNECTION_LOST', fatal: true }))).toBe('unavailable');
    expect(failureKind(e({}, 'Connection terminated unexpectedly'))).toBe('unavailable');
    expect(failureKind(e({ name: 'MongoServerSelectionError' }))).toBe('unavailable');
    expect(failureKind(e({ name: 'MongoServerError', code: 10107 }))).toBe('unavailable'); // not writable primary
    // a failover: the node answers but takes no writes; and statement timeouts
    expect(failureKind(e({ code: '25006' }))).toBe('unavailable'); // read-only transaction (a standby)
    expect(failureKind(e({ errno: 1290, sqlState: 'HY000', code: 'ER_OPTION_PREVENTS_STATEMENT' }))).toBe('unavailable');
    expect(failureKind(e({ errno: 1969, sqlState: '70100', code: 'ER_STATEMENT_TIMEOUT' }))).toBe('unavailable');
    expect(failureKind(e({ code: '08P01' }))).toBe('failed'); // too many bind parameters: the statement's shape
    expect(failureKind(e({ errno: 1213, code: 'ER_LOCK_DEADLOCK' }))).toBe('busy');
    expect(failureKind(e({ code: '40P01' }))).toBe('busy');
    expect(failureKind(e({ name: 'MongoServerError', code: 112 }))).toBe('busy');
    // what nothing says will pass on a retry
    expect(failureKind(new RangeError('Maximum call stack size exceeded'))).toBe('failed');
    expect(failureKind(e({ name: 'MongoServerError', code: 52 }))).toBe('failed'); // a $-prefixed field name
    expect(failureKind(e({ name: 'BSONError' }, '"1234567890123456789012345678901234567" is not a valid Decimal128 string - inexact rounding'))).toBe('failed');
    expect(isTransient(new TypeError('undefined is not an object'))).toBe(false);
    expect(isTransient(e({ code: 'ETIMEDOUT' }))).toBe(true);
    const t = TargetError.from('maria', e({ errno: 1205 }));
    expect([t.code, t.kind, t.retryable, t.message]).toEqual(['WS_TARGET_BUSY', 'busy', true, 'maria: x']);
  });
});

describe('Kafka security and the API certificate, from files (issue 14)', () => {
  it('reads KAFKA_SECURITY_DIR as a mounted Secret, and refuses SASL without its credentials', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const os = await import('node:os');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-kafka-sec-'));
    expect(parseEnv({ KAFKA_SECURITY_DIR: dir }).kafkaSecurity).toEqual({}); // an empty (optional) Secret: plaintext
    writeFileSync(path.join(dir, 'security-protocol'), 'SASL_SSL\n');
    writeFileSync(path.join(dir, 'ca.crt'), 'pem');
    expect(() => parseEnv({ KAFKA_SECURITY_DIR: dir })).toThrow(/KAFKA_SASL_MECHANISM: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with sasl_ssl, got nothing/);
    writeFileSync(path.join(dir, 'sasl-mechanism'), 'SCRAM-SHA-512');
    writeFileSync(path.join(dir, 'sasl-username'), 'worker');
    expect(() => parseEnv({ KAFKA_SECURITY_DIR: dir })).toThrow(/KAFKA_SASL_PASSWORD: is required/);
    writeFileSync(path.join(dir, 'sasl-password'), 's3cret\n');
    expect(parseEnv({ KAFKA_SECURITY_DIR: dir }).kafkaSecurity).toEqual({
      'security.protocol': 'sasl_ssl', 'ssl.ca.location': path.join(dir, 'ca.crt'),
      'sasl.mechanisms': 'SCRAM-SHA-512', 'sasl.username': 'worker', 'sasl.password': 's3cret',
    });
    expect(() => parseEnv({ KAFKA_SECURITY_PROTOCOL: 'tls' })).toThrow(/KAFKA_SECURITY_PROTOCOL: must be one of/);
  });

  it('serves the API over TLS only when both files are there', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const os = await import('node:os');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-tls-'));
    const cert = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    expect(parseEnv({ API_TLS_CERT_FILE: cert, API_TLS_KEY_FILE: key })).toMatchObject({ apiTls: undefined, apiTlsMissing: true });
    writeFileSync(cert, 'x');
    expect(() => parseEnv({ API_TLS_CERT_FILE: cert, API_TLS_KEY_FILE: key })).toThrow(/API_TLS_KEY_FILE: .* does not exist, while .* does/);
    writeFileSync(key, 'y');
    expect(parseEnv({ API_TLS_CERT_FILE: cert, API_TLS_KEY_FILE: key }).apiTls).toEqual({ certFile: cert, keyFile: key });
    expect(() => parseEnv({ API_TLS_CERT_FILE: cert })).toThrow(/API_TLS_KEY_FILE: set it together/);
  });
});

describe('the CPUs a process is given (bin/cpus.js)', () => {
  it('reads the cgroup quota, rounds it up, and never exceeds the machine', async () => {
    const { cpusGiven } = await import('../../bin/cpus.js');
    const os = await import('node:os');
    const fake = (files: Record<string, string>) => (f: string) => { if (f in files) return files[f]!; throw new Error('ENOENT'); };
    expect(cpusGiven(fake({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toEqual({ cpus: Math.min(2, os.availableParallelism()), source: 'the cgroup CPU quota (1.5)' });
    expect(cpusGiven(fake({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })).cpus).toBe(os.availableParallelism());
    expect(cpusGiven(fake({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })).cpus).toBe(1);
    expect(cpusGiven(fake({ '/sys/fs/cgroup/cpu.max': '6400000 100000' })).cpus).toBe(os.availableParallelism());
  });
});
