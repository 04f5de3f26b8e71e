import { ConfigError, errorMessage } from '../errors.ts';
import { createLogger } from '../log.ts';
import { Worker } from '../runtime/worker.ts';
import { runHealth } from './health.ts';
import { runDemo } from './demo.ts';
import { runDlq } from './dlq.ts';
import { runAudit } from './audit.ts';
import { runConfigCheck } from './config-check.ts';
import { runCollect, runSupport } from './support.ts';
import { LOCAL_STACK, loadConfig } from './loaded.ts';

const HELP = `worker-sync: CDC audit-and-synchronization worker

Usage: worker-sync <command> [options]

Commands:
  run                 consume Debezium topics, audit and sync (npm start)
  health db|kafka|full  check connectivity (npm run health:db|health:kafka|health:full) [--json]
  dlq list|replay     dead letters: list them, or re-drive them in order once fixed (--help)
  audit verify|prove|public-key|rotate-key   the signed audit log (npm run verify:signatures) (--help)
  config check        check a topology file; --connect also against the databases and connectors (--help)
  collect logs        the recent worker logs on this machine or pod, secrets redacted (npm run collect:logs)
  support bundle      a tar.gz for support: version, configuration, /ready, /metrics, status, health, logs (npm run support:bundle)
  demo                bring the local stack up, start the worker, make changes, show the audit log
  help                this text

Environment (validated at start-up; a bad value exits 2 naming it):
  WORKER_SYNC_CONFIG  topology file, YAML or JSON (default deploy/local/worker-sync.yaml)
  KAFKA_BROKERS       bootstrap servers (default: topology kafka.bootstrap, else ${LOCAL_STACK.brokers})
  KAFKA_GROUP_ID      consumer group (default worker-sync-group)
  DATABASE_URL[_FILE] control database (sync_db) URL (default: topology control.url, else the local stack)
  REDIS_URL[_FILE]    Redis for the dead-letter mirror bull:sync:failed (default: topology redis.url)
  CHANGES_TOPIC       topic between ingest and sync (default <group>.changes); CHANGES_PARTITIONS (15), CHANGES_REPLICATION (1)
  QUEUE_CONCURRENCY   ingest batches and sync cycles processing at once (default 4)
  EMERGENCY_STOP      true: consume nothing, keep /health, /metrics and the API up
  RESET_CHECKPOINT    true: seek every owned partition to the PostgreSQL checkpoint
  HTTP_PORT           operating surface port (default 3003); API_PORT (3001), API_TOKEN[_FILE] turns the API on
  HTTP_ENGINE         uws or node (default: uWebSockets.js, falling back to node:http where it does not load)
  KAFKA_MAX_MESSAGE_BYTES  the largest changes record (default 1000000): producer, changes topic and fetch sizes
  KAFKA_FETCH_MIN_BYTES (1), KAFKA_FETCH_WAIT_MAX_MS (250), KAFKA_LINGER_MS (2)  larger fetches: less CPU an event, more latency
  BATCH_SIZE, BATCH_WAIT_MS, CYCLE_MAX_EVENTS, MAX_BUFFERED_EVENTS, SHUTDOWN_GRACE_MS, LOG_LEVEL, WORKER_ID

Exit codes: 0 ok, 1 runtime failure or unhealthy, 2 bad configuration or usage.
`;

async function run(): Promise<number> {
  const cfg = loadConfig();
  const log = createLogger(cfg.env.logLevel, 'worker-sync', cfg.env.logFile ? { path: cfg.env.logFile, maxBytes: 16 * 1024 * 1024 } : undefined);
  const worker = new Worker(cfg, log);
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) return;
    log.info({ signal }, 'Shutting down: draining in-flight batches');
    stopping = worker.stop(cfg.env.shutdownGraceMs).then(() => process.exit(0), (err) => {
      log.error({ err: errorMessage(err) }, 'Shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The fatal-error policy: an exception nothing caught, or a rejection nothing handled,
  // leaves the worker in a state no one can reason about. Log it, report not ready, and
  // exit 1 at once: the orchestrator restarts the process, which resumes from the
  // PostgreSQL checkpoints (nothing uncommitted is acknowledged).
  const fatal = (what: string, err: unknown) => {
    log.fatal({ err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined }, `${what}: exiting`);
    worker.markFatal(`${what}: ${errorMessage(err)}`);
    process.exitCode = 1;
    process.exit(1);
  };
  process.on('uncaughtException', (err) => fatal('Uncaught exception', err));
  process.on('unhandledRejection', (reason) => fatal('Unhandled rejection', reason));
  await worker.start().catch((err: unknown) => {
    if (!stopping) throw err; // a signal arrived during start-up: the stop handler exits
  });
  if (cfg.env.testFault === 'uncaught-exception') setTimeout(() => { throw new Error('test fault: an exception nobody catches'); }, 200);
  if (cfg.env.testFault === 'unhandled-rejection') setTimeout(() => void Promise.reject(new Error('test fault: a rejection nobody handles')), 200);
  return new Promise<number>(() => undefined); // runs until a signal
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return run();
    case 'health':
      return runHealth(rest, loadConfig());
    case 'demo':
      return runDemo(rest);
    case 'dlq':
      return runDlq(rest, loadConfig());
    case 'audit':
      return runAudit(rest, loadConfig());
    case 'config':
      return runConfigCheck(rest, loadConfig);
    case 'collect':
      return runCollect(rest, loadConfig);
    case 'support':
      return runSupport(rest, loadConfig);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`worker-sync: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

/** Exits once everything written to stdout and stderr is out: a pipe reader gets all of a long --json. */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`worker-sync: invalid configuration: ${err.message}\n`);
      exitAfterFlush(2);
      return;
    }
    process.stderr.write(`worker-sync: ${errorMessage(err)}\n`);
    exitAfterFlush(1);
  },
);
