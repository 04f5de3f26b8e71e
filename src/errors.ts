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
  | 'WS_KAFKA'
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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
