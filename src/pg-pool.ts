import pg from 'pg';

/**
 * A node-postgres pool that survives its server going away. pg-pool listens for errors on
 * idle clients only; a client that is checked out when PostgreSQL terminates its backend
 * (a restart, `pg_terminate_backend`) emits 'error' with no listener, and Node turns that
 * into an uncaught exception: a PostgreSQL restart under load killed the worker this way
 * (the chaos suite's postgres-restart scenario). Every client gets a listener for its whole
 * life; the query in flight still rejects, and the caller releases the client with its
 * error so the pool drops it.
 */
export function guardedPool(config: pg.PoolConfig, onError: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', onError); // an idle client's connection failed
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}
