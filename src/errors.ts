/**
 * One error hierarchy for the whole worker. Failures are classified once, where they
 * happen, so the runtime can choose between retry, circuit and dead letter by `code`
 * and `retryable` without parsing messages.
 */
export type ErrorCode =
  | 'WS_CONFIG_INVALID'
  | 'WS_DECODE_MALFORMED'
  | 'WS_DECODE_UNKNOWN_TOPIC'
  | 'WS_DECODE_UNKNOWN_COLUMN'
  | 'WS_DECODE_BAD_VALUE'
  | 'WS_CHECKPOINT_FENCED'
  | 'WS_CHECKPOINT_GAP'
  | 'WS_KAFKA'
  | 'WS_TOO_LARGE'
  | 'WS_TARGET_REJECTED'
  | 'WS_TARGET_UNAVAILABLE'
  | 'WS_TARGET_BUSY'
  | 'WS_TARGET_FAILED'
  | 'WS_CONTROL_DB'
  | 'WS_INTERNAL';

export class WorkerSyncError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WorkerSyncError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A configuration value that cannot be used; the message names the variable or key. */
export class ConfigError extends WorkerSyncError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('WS_CONFIG_INVALID', `${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** An event that can never be decoded as it is: it belongs in the dead letters. */
export class DecodeError extends WorkerSyncError {
  constructor(code: Extract<ErrorCode, `WS_DECODE_${string}`>, message: string, cause?: unknown) {
    super(code, message, { cause, retryable: false });
    this.name = 'DecodeError';
  }
}

/** Another owner advanced this partition's checkpoint: our batch must not commit. */
export class CheckpointFencedError extends WorkerSyncError {
  constructor(message: string) {
    super('WS_CHECKPOINT_FENCED', message, { retryable: false });
    this.name = 'CheckpointFencedError';
  }
}

/**
 * A batch that starts after the checkpoint's next offset (DESIGN §3, invariant 8): what
 * lies between was never committed, so committing this batch would skip it. The lane reads
 * the partition again from the checkpoint.
 */
export class CheckpointGapError extends WorkerSyncError {
  readonly nextOffset: number;
  readonly firstOffset: number;
  constructor(where: string, nextOffset: number, firstOffset: number) {
    super('WS_CHECKPOINT_GAP', `${where}: the batch starts at offset ${firstOffset}, but the checkpoint ends at ${nextOffset}; offsets ${nextOffset}-${firstOffset - 1} were never committed`, { retryable: false });
    this.name = 'CheckpointGapError';
    this.nextOffset = nextOffset;
    this.firstOffset = firstOffset;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * What a database or driver failure says about what to do next:
 * - `rows`: refused for what the rows hold (SQLSTATE class 22 or 23, a MongoDB write error
 *   on one document): retry on halves until the rows at fault stand alone (DESIGN §6);
 * - `unavailable`: the server is unreachable, shutting down, out of resources, or its
 *   schema does not match the topology: retry the batch in order, and open the node's
 *   circuit;
 * - `busy`: a deadlock, lock timeout or serialization failure: retry, the node is fine;
 * - `failed`: anything else. Nothing says it will pass on a retry: if it repeats on the
 *   same record, that record is dead-lettered (DESIGN §3, invariant 7).
 *
 * This is the one place that reads SQLSTATEs, errnos and driver error names.
 */
export type FailureKind = 'rows' | 'unavailable' | 'busy' | 'failed';

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'ENETDOWN', 'EHOSTDOWN']);
/** mysql2's own codes for a connection that is gone or never came. */
const MYSQL_LOST = new Set(['PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN', 'ER_QUERY_INTERRUPTED', 'CR_SERVER_GONE_ERROR', 'CR_SERVER_LOST', 'ER_CONNECTION_KILLED']);
/** MySQL/MariaDB errnos: deadlock, lock wait timeout. */
const MYSQL_BUSY = new Set([1213, 1205]);
/**
 * MySQL/MariaDB errnos that say the server cannot take writes now: read-only (a replica, or
 * a demoted primary after a failover: 1290, 1836, 1792) and statement timeouts (MySQL 3024,
 * MariaDB 1969).
 */
const MYSQL_UNAVAILABLE = new Set([1290, 1836, 1792, 3024, 1969]);
/** MongoDB server codes that say "try again": network, shutdown, step-down, not primary, time limits. */
const MONGO_RETRY = new Set([6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436]);
const MONGO_NET_NAMES = new Set(['MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError', 'MongoTopologyClosedError', 'MongoPoolClearedError', 'MongoNotConnectedError', 'MongoServerClosedError']);
/** node-postgres and pg-pool raise these without a code. */
const PG_LOST = /connection terminated|connection error|not queryable|timeout exceeded when trying to connect|client was closed|terminating connection|the database system is (starting up|shutting down)/i;

export function failureKind(err: unknown): FailureKind {
  if (err instanceof WorkerSyncError) return err instanceof TargetError ? err.kind : err.retryable ? 'unavailable' : 'failed';
  if (typeof err !== 'object' || err === null) return 'failed';
  const e = err as { code?: unknown; sqlState?: unknown; errno?: unknown; name?: unknown; message?: unknown; fatal?: unknown; hasErrorLabel?: (l: string) => boolean };
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code !== undefined && NET_CODES.has(code)) return 'unavailable';
  if (typeof e.name === 'string' && MONGO_NET_NAMES.has(e.name)) return 'unavailable';
  if (typeof e.hasErrorLabel === 'function' && (e.hasErrorLabel('RetryableWriteError') || e.hasErrorLabel('TransientTransactionError') || e.hasErrorLabel('ResetPool'))) return 'unavailable';
  if (typeof e.name === 'string' && e.name.startsWith('Mongo') && typeof e.code === 'number') {
    if (e.code === 112) return 'busy'; // WriteConflict
    if (MONGO_RETRY.has(e.code)) return 'unavailable';
  }
  if (typeof e.errno === 'number' && MYSQL_BUSY.has(e.errno)) return 'busy';
  if (typeof e.errno === 'number' && MYSQL_UNAVAILABLE.has(e.errno)) return 'unavailable';
  if (e.errno === 1153) return 'rows'; // ER_NET_PACKET_TOO_LARGE (sqlState 08S01): fewer rows per statement pass
  if (code !== undefined && MYSQL_LOST.has(code)) return 'unavailable';
  const state = typeof e.sqlState === 'string' ? e.sqlState : code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? code : '';
  if (state.startsWith('22') || state.startsWith('23')) return 'rows';
  if (state === '40001' || state === '40P01' || state === '55P03') return 'busy';
  // read-only transaction (a standby, or a demoted primary after a failover), a transaction
  // timeout, MariaDB's max_statement_time: the node cannot take this write now
  if (state === '25006' || state === '25P04' || state === '70100') return 'unavailable';
  // a protocol violation is the statement's shape (too many bind parameters), not the link's
  if (state === '08P01') return 'failed';
  // connection exception, insufficient resources, operator intervention (shutdown, cancel),
  // system and internal errors; and syntax or access rule (a table or column the topology
  // names is missing on the node): the node's state, not the rows'
  if (/^(08|53|57|58|XX|42|3D|28)/.test(state)) return 'unavailable';
  if (e.fatal === true) return 'unavailable'; // mysql2: the connection is unusable
  if (typeof e.message === 'string' && PG_LOST.test(e.message)) return 'unavailable';
  return 'failed';
}

/** Whether retrying the same work in order can succeed: a transient failure, not the input's. */
export function isTransient(err: unknown): boolean {
  const k = failureKind(err);
  return k === 'unavailable' || k === 'busy';
}

const TARGET_CODES: Record<FailureKind, ErrorCode> = {
  rows: 'WS_TARGET_REJECTED', unavailable: 'WS_TARGET_UNAVAILABLE', busy: 'WS_TARGET_BUSY', failed: 'WS_TARGET_FAILED',
};

/** A target node's failure, classified where it happened (the sink). */
export class TargetError extends WorkerSyncError {
  readonly node: string;
  readonly kind: FailureKind;

  constructor(node: string, kind: FailureKind, message: string, cause?: unknown) {
    super(TARGET_CODES[kind], `${node}: ${message}`, { cause, retryable: kind === 'unavailable' || kind === 'busy' });
    this.name = 'TargetError';
    this.node = node;
    this.kind = kind;
  }

  /** Wraps whatever a driver threw; a TargetError passes through. */
  static from(node: string, err: unknown): TargetError {
    if (err instanceof TargetError) return err;
    return new TargetError(node, failureKind(err), errorMessage(err), err);
  }
}
