#!/usr/bin/env node
// JSON helper for deploy/local/stack.sh (plain node, no dependencies).
//
//   render-connector <file>              print the connector config with port overrides applied
//   config-equal <desiredJson> <current> exit 0 when both configs are equal (ignoring "name")
//   connector-state                      read GET /connectors/<n>/status on stdin, print one
//                                        word (RUNNING, FAILED, PAUSED, ...) and, on FAILED,
//                                        the Connect traces on the following lines
//   status-json                          build the `status --json` object from STACK_* env vars
import fs from 'node:fs';

const [cmd, ...args] = process.argv.slice(2);

function readStdin() {
  try {
    return fs.readFileSync(0, 'utf8');
  } catch {
    return '';
  }
}

function parseOr(text, fallback) {
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

// Summarise one connector status document into a single state word.
function summarise(status) {
  if (!status || !status.connector) return { state: 'MISSING', traces: [] };
  const traces = [];
  if (status.connector.trace) traces.push(`connector: ${status.connector.trace}`);
  const tasks = Array.isArray(status.tasks) ? status.tasks : [];
  for (const t of tasks) if (t.trace) traces.push(`task ${t.id}: ${t.trace}`);
  const states = [status.connector.state, ...tasks.map((t) => t.state)];
  let state;
  if (states.includes('FAILED')) state = 'FAILED';
  else if (status.connector.state !== 'RUNNING') state = status.connector.state;
  else if (tasks.length === 0) state = 'NO_TASKS';
  else state = tasks.find((t) => t.state !== 'RUNNING')?.state ?? 'RUNNING';
  return { state, traces };
}

switch (cmd) {
  case 'render-connector': {
    const cfg = JSON.parse(fs.readFileSync(args[0], 'utf8'));
    const overrides = {
      'database.port': process.env.STACK_OVR_DB_PORT,
      'schema.history.internal.kafka.bootstrap.servers': process.env.STACK_OVR_BOOTSTRAP,
    };
    for (const [k, v] of Object.entries(overrides)) if (v && k in cfg) cfg[k] = v;
    process.stdout.write(JSON.stringify(cfg));
    break;
  }
  case 'config-equal': {
    const want = parseOr(args[0], {});
    const have = parseOr(args[1] ?? '', null);
    if (!have || typeof have !== 'object') process.exit(1);
    delete want.name;
    delete have.name;
    const keys = new Set([...Object.keys(want), ...Object.keys(have)]);
    for (const k of keys) if (String(want[k]) !== String(have[k])) process.exit(1);
    process.exit(0);
    break;
  }
  case 'connector-state': {
    const { state, traces } = summarise(parseOr(readStdin(), null));
    process.stdout.write(`${state}\n${traces.join('\n')}${traces.length ? '\n' : ''}`);
    break;
  }
  case 'status-json': {
    const e = process.env;
    const up = (name) => e[`STACK_${name}_UP`] === '1';
    const connectors = {};
    for (const name of (e.STACK_CONNECTOR_NAMES || '').split(' ').filter(Boolean)) {
      const key = `STACK_CONNECTOR_${name.replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`;
      connectors[name] = e[key] || 'UNKNOWN';
    }
    const h = e.STACK_HOST;
    const out = {
      kafka: { up: up('KAFKA'), bootstrap: `${h}:${e.STACK_KAFKA_PORT}` },
      connect: { up: up('CONNECT'), url: `http://${h}:${e.STACK_CONNECT_PORT}`, connectors },
      postgres: {
        up: up('POSTGRES'),
        url: `postgres://app:app@${h}:${e.STACK_PG_PORT}/app`,
        controlUrl: `postgres://sync_user:sync_pass@${h}:${e.STACK_PG_PORT}/sync_db`,
      },
      mariadb: { up: up('MARIADB'), url: `mysql://app:app@${h}:${e.STACK_MARIADB_PORT}/app` },
      prometheus: { up: up('PROMETHEUS'), url: `http://${h}:${e.STACK_PROMETHEUS_PORT}`, targets: e.STACK_PROMETHEUS_TARGETS },
      redis: { up: up('REDIS'), url: `redis://${h}:${e.STACK_REDIS_PORT}` },
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    break;
  }
  default:
    process.stderr.write(`stack-json: unknown command ${cmd}\n`);
    process.exit(2);
}
