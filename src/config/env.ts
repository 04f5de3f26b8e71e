import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { badKeyName, DEFAULT_ORIGIN_PREFIX, hasControl, keyNameOf, parseVerifierKey } from '../audit/note.ts';

/** The repository root, so defaults work from any working directory. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Everything the process reads from its environment, parsed and checked once. */
export interface EnvConfig {
  configFile: string;
  kafkaBrokers: string | undefined;
  groupId: string;
  controlUrl: string | undefined;
  redisUrl: string | undefined;
  queueConcurrency: number;
  emergencyStop: boolean;
  resetCheckpoint: boolean;
  httpHost: string;
  httpPort: number;
  /** HTTP_ENGINE: uWebSockets.js, node:http, or (unset) uWebSockets.js falling back to node:http. */
  httpEngine: 'auto' | 'uws' | 'node';
  /** API_TLS_CERT_FILE and API_TLS_KEY_FILE, when both files are there (a mounted worker-sync-tls): the API serves HTTPS. */
  apiTls: { certFile: string; keyFile: string } | undefined;
  /** Both variables set, neither file there: the Secret is not mounted, and the API serves plain HTTP (said at start-up). */
  apiTlsMissing: boolean;
  /** librdkafka's security settings (security.protocol, ssl.*, sasl.*), from KAFKA_SECURITY_DIR and KAFKA_* variables. */
  kafkaSecurity: Record<string, string>;
  /** The API (port 3001); it runs only when a token is configured. */
  apiPort: number;
  apiToken: string | undefined;
  /** How often the worker looks for resolved conflicts to converge and for pause/resume (ms). */
  controlPollMs: number;
  /** The Ed25519 key that signs audit checkpoints (PKCS#8 PEM); unset: a development key under .local. */
  auditKeyFile: string | undefined;
  auditCheckpointLeaves: number;
  auditCheckpointMs: number;
  /** Where checkpoints are published (retention.ms=-1), so a truncated table is caught. */
  auditCheckpointTopic: string;
  /** How C2SP checkpoint notes are named: origin `${originPrefix}${log id}`, signed under `keyName`. */
  auditNote: { originPrefix: string; keyName: string };
  /** A C2SP tlog-witness's submission prefix: every signed checkpoint is sent there to be cosigned. */
  auditWitnessUrl: string | undefined;
  /** The witness's verifier key (`<name>+<id>+<base64>`): cosignatures are checked against it before they are kept. */
  auditWitnessKey: string | undefined;
  batchSize: number;
  /** Most events one sync cycle commits, across its partitions' batches (CYCLE_MAX_EVENTS). */
  cycleMaxEvents: number;
  /** Sync cycles classifying, writing and committing at once (`SYNC_CYCLES`). */
  syncCycles: number;
  /** The least time between the starts of two sync cycles (`CYCLE_INTERVAL_MS`). */
  cycleIntervalMs: number;
  batchWaitMs: number;
  maxBufferedEvents: number;
  shutdownGraceMs: number;
  /** The changes topic between ingest and sync (default `<group>.changes`). */
  changesTopic: string;
  changesPartitions: number;
  changesReplication: number;
  /**
   * KAFKA_MAX_MESSAGE_BYTES: the largest Kafka message the worker produces or fetches. It
   * sets the producer's message.max.bytes, the changes topic's max.message.bytes (when the
   * worker creates it) and the consumers' fetch sizes together. A change whose record would
   * not fit becomes a WS_TOO_LARGE dead letter.
   */
  kafkaMaxMessageBytes: number;
  /**
   * KAFKA_FETCH_MIN_BYTES, KAFKA_FETCH_WAIT_MAX_MS: both consumers' fetch.min.bytes and
   * fetch.wait.max.ms. Latency first by default (a fetch returns with any data); larger
   * fetches trade up to the wait per hop for less CPU per event (bench/RESULTS.md).
   */
  kafkaFetchMinBytes: number;
  kafkaFetchWaitMaxMs: number;
  /** KAFKA_LINGER_MS: the router producer's linger.ms. */
  kafkaLingerMs: number;
  logLevel: string;
  /** LOG_FILE: where `run` also keeps its log (rotated at 16 MiB), for collect logs and the support bundle; "off": stdout only. */
  logFile: string | undefined;
  workerId: string;
  /** The CPUs the process is given and how that was found, as bin/worker-sync.js read them (WORKER_SYNC_CPUS). */
  cpus: { count: number; source: string };
  /** Test-only: a fault raised once the worker runs, to prove the process's fatal-error policy. */
  testFault: TestFault | undefined;
  /** Test-only crash points; honoured only when WORKER_SYNC_TEST_HOOKS=1. */
  testCrashPoint: CrashPoint | undefined;
  /** Test-only: the crash point arms once this many new changes were applied (stray or replayed events do not trip it). */
  testCrashAfter: number;
}

export const CRASH_POINTS = ['after-target-write', 'after-audit-copy', 'after-commit'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];
export const TEST_FAULTS = ['uncaught-exception', 'unhandled-rejection'] as const;
export type TestFault = (typeof TEST_FAULTS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

/** AUDIT_ORIGIN_PREFIX and AUDIT_NOTE_KEY_NAME (default: the prefix without its trailing slash). */
function noteIdentity(env: Env): { originPrefix: string; keyName: string } {
  const originPrefix = str(env, 'AUDIT_ORIGIN_PREFIX') ?? DEFAULT_ORIGIN_PREFIX;
  if (hasControl(originPrefix)) throw new ConfigError('AUDIT_ORIGIN_PREFIX', 'must not hold control characters');
  const keyName = str(env, 'AUDIT_NOTE_KEY_NAME') ?? keyNameOf(originPrefix);
  const bad = badKeyName(keyName);
  if (bad) throw new ConfigError(str(env, 'AUDIT_NOTE_KEY_NAME') ? 'AUDIT_NOTE_KEY_NAME' : 'AUDIT_ORIGIN_PREFIX', `cannot name a signed-note key "${keyName}": ${bad}`);
  return { originPrefix, keyName };
}

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** `NAME` or `NAME_FILE` (a file holding the secret, as Kubernetes mounts them). */
export function secret(env: Env, name: string): string | undefined {
  const direct = str(env, name);
  const file = str(env, `${name}_FILE`);
  if (direct !== undefined && file !== undefined) {
    throw new ConfigError(name, `set either ${name} or ${name}_FILE, not both`);
  }
  if (file === undefined) return direct;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`${name}_FILE`, `cannot read ${file}: ${(err as Error).message}`);
  }
}

function int(env: Env, name: string, dflt: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return dflt;
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(name, `must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string): boolean {
  const raw = str(env, name);
  if (raw === undefined) return false;
  const v = raw.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], dflt: T | undefined): T | undefined {
  const raw = str(env, name);
  if (raw === undefined) return dflt;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function apiTls(env: Env): { apiTls: EnvConfig['apiTls']; apiTlsMissing: boolean } {
  const certFile = str(env, 'API_TLS_CERT_FILE');
  const keyFile = str(env, 'API_TLS_KEY_FILE');
  if (certFile === undefined && keyFile === undefined) return { apiTls: undefined, apiTlsMissing: false };
  if (certFile === undefined || keyFile === undefined) throw new ConfigError(certFile === undefined ? 'API_TLS_CERT_FILE' : 'API_TLS_KEY_FILE', 'set it together with the other: a certificate and its key');
  const [c, k] = [existsSync(certFile), existsSync(keyFile)];
  if (!c && !k) return { apiTls: undefined, apiTlsMissing: true };
  if (!c || !k) throw new ConfigError(c ? 'API_TLS_KEY_FILE' : 'API_TLS_CERT_FILE', `${c ? keyFile : certFile} does not exist, while ${c ? certFile : keyFile} does`);
  return { apiTls: { certFile, keyFile }, apiTlsMissing: false };
}

const PROTOCOLS = ['plaintext', 'ssl', 'sasl_plaintext', 'sasl_ssl'] as const;
const MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;

/**
 * Kafka's TLS and SASL settings. Each comes from its variable, else from a file of
 * KAFKA_SECURITY_DIR (a mounted Secret: security-protocol, ca.crt, tls.crt, tls.key,
 * sasl-mechanism, sasl-username, sasl-password). No directory, no variables: plaintext.
 */
function kafkaSecurity(env: Env): Record<string, string> {
  const dir = str(env, 'KAFKA_SECURITY_DIR');
  const file = (name: string) => (dir !== undefined && existsSync(path.join(dir, name)) ? path.join(dir, name) : undefined);
  const text = (name: string) => { const f = file(name); return f === undefined ? undefined : readFileSync(f, 'utf8').trim(); };
  const protocol = (str(env, 'KAFKA_SECURITY_PROTOCOL') ?? text('security-protocol') ?? 'plaintext').toLowerCase();
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) throw new ConfigError('KAFKA_SECURITY_PROTOCOL', `must be one of ${PROTOCOLS.join(', ')}, got "${protocol}"`);
  const props: Record<string, string> = {};
  if (protocol === 'plaintext') return props;
  props['security.protocol'] = protocol;
  if (protocol.endsWith('ssl')) {
    const ca = str(env, 'KAFKA_SSL_CA_FILE') ?? file('ca.crt');
    const cert = str(env, 'KAFKA_SSL_CERT_FILE') ?? file('tls.crt');
    const key = str(env, 'KAFKA_SSL_KEY_FILE') ?? file('tls.key');
    for (const [name, f] of [['KAFKA_SSL_CA_FILE', ca], ['KAFKA_SSL_CERT_FILE', cert], ['KAFKA_SSL_KEY_FILE', key]] as const) {
      if (f !== undefined && !existsSync(f)) throw new ConfigError(name, `${f} does not exist`);
    }
    if (ca !== undefined) props['ssl.ca.location'] = ca;
    if (cert !== undefined) props['ssl.certificate.location'] = cert;
    if (key !== undefined) props['ssl.key.location'] = key;
  }
  if (protocol.startsWith('sasl')) {
    const mechanism = str(env, 'KAFKA_SASL_MECHANISM') ?? text('sasl-mechanism');
    const username = str(env, 'KAFKA_SASL_USERNAME') ?? text('sasl-username');
    const password = secret(env, 'KAFKA_SASL_PASSWORD') ?? text('sasl-password');
    if (mechanism === undefined || !(MECHANISMS as readonly string[]).includes(mechanism)) throw new ConfigError('KAFKA_SASL_MECHANISM', `must be one of ${MECHANISMS.join(', ')} with ${protocol}, got ${mechanism === undefined ? 'nothing' : `"${mechanism}"`}`);
    if (username === undefined) throw new ConfigError('KAFKA_SASL_USERNAME', `is required with ${protocol}`);
    if (password === undefined) throw new ConfigError('KAFKA_SASL_PASSWORD', `is required with ${protocol} (or KAFKA_SASL_PASSWORD_FILE, or sasl-password in KAFKA_SECURITY_DIR)`);
    props['sasl.mechanisms'] = mechanism;
    props['sasl.username'] = username;
    props['sasl.password'] = password;
  }
  return props;
}

export function parseEnv(env: Env = process.env): EnvConfig {
  const port = (name: string, dflt: number) => int(env, name, dflt, 0, 65535);
  const testHooks = bool(env, 'WORKER_SYNC_TEST_HOOKS');
  const crash = oneOf(env, 'WORKER_SYNC_TEST_CRASH_POINT', CRASH_POINTS, undefined);
  if (crash !== undefined && !testHooks) {
    throw new ConfigError('WORKER_SYNC_TEST_CRASH_POINT', 'is a test-only setting and needs WORKER_SYNC_TEST_HOOKS=1');
  }
  const fault = oneOf(env, 'WORKER_SYNC_TEST_FAULT', TEST_FAULTS, undefined);
  if (fault !== undefined && !testHooks) {
    throw new ConfigError('WORKER_SYNC_TEST_FAULT', 'is a test-only setting and needs WORKER_SYNC_TEST_HOOKS=1');
  }
  return {
    configFile: path.resolve(str(env, 'WORKER_SYNC_CONFIG') ?? path.join(PROJECT_ROOT, 'deploy/local/worker-sync.yaml')),
    kafkaBrokers: str(env, 'KAFKA_BROKERS'),
    groupId: str(env, 'KAFKA_GROUP_ID') ?? 'worker-sync-group',
    controlUrl: secret(env, 'DATABASE_URL'),
    redisUrl: secret(env, 'REDIS_URL'),
    queueConcurrency: int(env, 'QUEUE_CONCURRENCY', 4, 1, 1024),
    emergencyStop: bool(env, 'EMERGENCY_STOP'),
    resetCheckpoint: bool(env, 'RESET_CHECKPOINT'),
    httpHost: str(env, 'HTTP_HOST') ?? '0.0.0.0',
    httpPort: port('HTTP_PORT', 3003),
    httpEngine: oneOf(env, 'HTTP_ENGINE', ['uws', 'node'] as const, undefined) ?? 'auto',
    ...apiTls(env),
    kafkaSecurity: kafkaSecurity(env),
    apiPort: port('API_PORT', 3001),
    apiToken: secret(env, 'API_TOKEN'),
    controlPollMs: int(env, 'CONTROL_POLL_MS', 1000, 50, 60_000),
    auditKeyFile: str(env, 'AUDIT_SIGNING_KEY_FILE'),
    auditCheckpointLeaves: int(env, 'AUDIT_CHECKPOINT_LEAVES', 1000, 1, 10_000_000),
    auditCheckpointMs: int(env, 'AUDIT_CHECKPOINT_MS', 5000, 10, 3_600_000),
    auditCheckpointTopic: str(env, 'AUDIT_CHECKPOINT_TOPIC') ?? 'worker-sync.audit-checkpoints',
    auditNote: noteIdentity(env),
    auditWitnessUrl: (() => {
      const v = str(env, 'AUDIT_WITNESS_URL');
      if (v !== undefined && !/^https?:\/\/[^\s]+$/.test(v)) throw new ConfigError('AUDIT_WITNESS_URL', `must be an http(s) URL, got "${v}"`);
      return v?.replace(/\/+$/, '');
    })(),
    auditWitnessKey: (() => {
      const v = str(env, 'AUDIT_WITNESS_PUBLIC_KEY');
      if (v === undefined) return undefined;
      try {
        parseVerifierKey(v);
      } catch (err) {
        throw new ConfigError('AUDIT_WITNESS_PUBLIC_KEY', (err as Error).message);
      }
      return v;
    })(),
    batchSize: int(env, 'BATCH_SIZE', 1000, 1, 100_000),
    cycleMaxEvents: int(env, 'CYCLE_MAX_EVENTS', 5000, 1, 1_000_000),
    // One cycle in flight makes the next one take everything cut meanwhile, so cycles grow
    // with the load and their fixed cost is paid less often; a quarter of the ingest slots
    // keeps the runbook's QUEUE_CONCURRENCY patch raising it too (bench/RESULTS.md, issue 13)
    syncCycles: int(env, 'SYNC_CYCLES', Math.ceil(int(env, 'QUEUE_CONCURRENCY', 4, 1, 1024) / 4), 1, 1024),
    // off by default: it spares the databases' CPU, not the worker's, for up to that much latency
    cycleIntervalMs: int(env, 'CYCLE_INTERVAL_MS', 0, 0, 10_000),
    batchWaitMs: int(env, 'BATCH_WAIT_MS', 250, 1, 10_000),
    maxBufferedEvents: int(env, 'MAX_BUFFERED_EVENTS', 20_000, 100, 10_000_000),
    shutdownGraceMs: int(env, 'SHUTDOWN_GRACE_MS', 25_000, 100, 600_000),
    changesTopic: str(env, 'CHANGES_TOPIC') ?? `${str(env, 'KAFKA_GROUP_ID') ?? 'worker-sync-group'}.changes`,
    changesPartitions: int(env, 'CHANGES_PARTITIONS', 15, 1, 10_000),
    changesReplication: int(env, 'CHANGES_REPLICATION', 1, 1, 10),
    kafkaMaxMessageBytes: int(env, 'KAFKA_MAX_MESSAGE_BYTES', 1_000_000, 10_000, 1_000_000_000),
    kafkaFetchMinBytes: int(env, 'KAFKA_FETCH_MIN_BYTES', 1, 1, 100_000_000),
    kafkaFetchWaitMaxMs: int(env, 'KAFKA_FETCH_WAIT_MAX_MS', 250, 1, 30_000),
    kafkaLingerMs: int(env, 'KAFKA_LINGER_MS', 2, 0, 900_000),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info') ?? 'info',
    workerId: str(env, 'WORKER_ID') ?? str(env, 'HOSTNAME') ?? `worker-${process.pid}`,
    logFile: (() => {
      const v = str(env, 'LOG_FILE');
      if (v === 'off') return undefined;
      // one file per worker: named by WORKER_ID (a pod's name), else by the host, not the pid, so
      // that `kubectl exec … npm run collect:logs` finds the worker's own
      return path.resolve(v ?? path.join(os.tmpdir(), 'worker-sync', `${(str(env, 'WORKER_ID') ?? os.hostname()).replace(/[^A-Za-z0-9._-]/g, '_')}.log`));
    })(),
    cpus: (() => {
      const m = /^(\d+) (.*)$/.exec(str(env, 'WORKER_SYNC_CPUS') ?? '');
      return m ? { count: Number(m[1]), source: m[2]! } : { count: os.availableParallelism(), source: 'the machine' };
    })(),
    testCrashPoint: crash,
    testFault: fault,
    testCrashAfter: testHooks ? int(env, 'WORKER_SYNC_TEST_CRASH_AFTER', 0, 0, 1_000_000_000) : 0,
  };
}
