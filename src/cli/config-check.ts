import pg from 'pg';
import mysql from 'mysql2/promise';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { parseTopology, type EntityConfig, type EntityNodeMapping, type NodeConfig, type Topology } from '../config/topology.ts';
import type { ColumnType } from '../config/column-types.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import { redactUrl } from '../log.ts';
import type { Loaded } from './loaded.ts';
import { parseEnv } from '../config/env.ts';

const USAGE = `usage: worker-sync config check [--file F] [--connect] [--connect-url URL] [--json]

Checks a topology file (default WORKER_SYNC_CONFIG): that it parses, with the key at fault
named. With --connect it also checks it against the databases and Kafka Connect:
  - every mapped table and column exists, with a type compatible with the declared one;
  - the version column exists and holds bytes;
  - PostgreSQL tables a connector captures have REPLICA IDENTITY FULL; MariaDB/MySQL has
    binlog_format=ROW and binlog_row_image=FULL;
  - a connector with the node's topic.prefix includes the table and uses the JSON converter.
--connect-url is Kafka Connect's REST URL (default KAFKA_CONNECT_URL, else http://127.0.0.1:18083).
Run it after adding an entity (docs/ADDING-AN-ENTITY.md).

Exit codes: 0 every check passed, 1 a check failed, 2 the file does not parse or bad usage.
`;

interface Finding {
  check: string;
  ok: boolean;
  detail: string;
}

/** What each declared type may be stored as, by information_schema's data_type. */
const PG_TYPES: Record<string, string[]> = {
  smallint: ['smallint'], integer: ['integer', 'smallint'], bigint: ['bigint', 'integer', 'smallint'],
  double: ['double precision'], float: ['real', 'double precision'], decimal: ['numeric'],
  text: ['text', 'character varying', 'character'], uuid: ['uuid'], boolean: ['boolean'], json: ['json', 'jsonb'],
  timestamp: ['timestamp without time zone'], timestamptz: ['timestamp with time zone'], date: ['date'],
  time: ['time without time zone'], bytes: ['bytea'],
};
const MY_TYPES: Record<string, string[]> = {
  smallint: ['smallint'], integer: ['int', 'mediumint', 'smallint'], bigint: ['bigint', 'int'], double: ['double'], float: ['float', 'double'],
  decimal: ['decimal'], text: ['varchar', 'text', 'mediumtext', 'longtext', 'char', 'tinytext'], uuid: ['char', 'varchar', 'uuid'],
  boolean: ['tinyint', 'bit'], json: ['json', 'longtext'], timestamp: ['datetime'], timestamptz: ['timestamp', 'datetime'], date: ['date'],
  time: ['time'], bytes: ['varbinary', 'blob', 'mediumblob', 'longblob', 'binary'],
};

function typeOk(kind: 'pg' | 'my', declared: ColumnType, dataType: string, precision: number | null, scale: number | null): string | undefined {
  const allowed = (kind === 'pg' ? PG_TYPES : MY_TYPES)[declared.kind] ?? [];
  if (!allowed.includes(dataType)) return `is ${dataType}, declared ${declared.kind} (expects ${allowed.join(' or ')})`;
  if (declared.kind === 'decimal' && precision !== null && (precision !== declared.precision || scale !== declared.scale)) {
    return `is ${dataType}(${precision},${scale}), declared decimal(${declared.precision},${declared.scale})`;
  }
  return undefined;
}

async function checkPostgresNode(node: NodeConfig, entities: Array<[EntityConfig, EntityNodeMapping]>, out: Finding[]): Promise<void> {
  const client = new pg.Client({ connectionString: node.url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    for (const [entity, mapping] of entities) {
      const [schema, table] = mapping.table.split('.') as [string, string];
      const at = `${node.name}: ${mapping.table}`;
      const { rows } = await client.query<{ column_name: string; data_type: string; numeric_precision: number | null; numeric_scale: number | null }>(
        'SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2', [schema, table]);
      if (rows.length === 0) {
        out.push({ check: `${at} exists`, ok: false, detail: 'no such table (or no privilege to see it)' });
        continue;
      }
      const cols = new Map(rows.map((r) => [r.column_name, r]));
      checkColumns('pg', at, entity, mapping, (c) => cols.get(c) && { dataType: cols.get(c)!.data_type, precision: cols.get(c)!.numeric_precision, scale: cols.get(c)!.numeric_scale }, out);
      if (node.role !== 'target') {
        const ri = await client.query<{ relreplident: string }>(
          'SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2', [schema, table]);
        const full = ri.rows[0]?.relreplident === 'f';
        out.push({ check: `${at} REPLICA IDENTITY FULL`, ok: full, detail: full ? 'full before images' : `is "${ri.rows[0]?.relreplident}": run ALTER TABLE ${mapping.table} REPLICA IDENTITY FULL` });
      }
    }
  } finally {
    await client.end();
  }
}

async function checkMysqlNode(node: NodeConfig, entities: Array<[EntityConfig, EntityNodeMapping]>, out: Finding[]): Promise<void> {
  const conn = await mysql.createConnection({ uri: node.url, connectTimeout: 5000 });
  try {
    if (node.role !== 'target') {
      const [v] = await conn.query("SELECT @@binlog_format AS f, @@binlog_row_image AS i, @@log_bin AS b");
      const r = (v as Array<{ f: string; i: string; b: number }>)[0]!;
      const ok = Number(r.b) === 1 && r.f === 'ROW' && r.i === 'FULL';
      out.push({ check: `${node.name}: binlog`, ok, detail: `log_bin=${r.b}, binlog_format=${r.f}, binlog_row_image=${r.i}${ok ? '' : ' (needs log_bin, binlog_format=ROW, binlog_row_image=FULL)'}` });
    }
    for (const [entity, mapping] of entities) {
      const [db, table] = mapping.table.split('.') as [string, string];
      const at = `${node.name}: ${mapping.table}`;
      const [rows] = await conn.query('SELECT column_name AS c, data_type AS t, numeric_precision AS p, numeric_scale AS s FROM information_schema.columns WHERE table_schema = ? AND table_name = ?', [db, table]);
      const list = rows as Array<{ c: string; t: string; p: number | null; s: number | null }>;
      if (list.length === 0) {
        out.push({ check: `${at} exists`, ok: false, detail: 'no such table (or no privilege to see it)' });
        continue;
      }
      const cols = new Map(list.map((r) => [r.c, r]));
      checkColumns('my', at, entity, mapping, (c) => cols.get(c) && { dataType: cols.get(c)!.t.toLowerCase(), precision: cols.get(c)!.p === null ? null : Number(cols.get(c)!.p), scale: cols.get(c)!.s === null ? null : Number(cols.get(c)!.s) }, out);
    }
  } finally {
    await conn.end();
  }
}

function checkColumns(kind: 'pg' | 'my', at: string, entity: EntityConfig, mapping: EntityNodeMapping,
  col: (name: string) => { dataType: string; precision: number | null; scale: number | null } | undefined, out: Finding[]): void {
  const problems: string[] = [];
  for (const [c, type] of entity.columns) {
    const name = mapping.columns.get(c)!;
    const found = col(name);
    if (!found) problems.push(`column ${name} is missing`);
    else {
      const why = typeOk(kind, type, found.dataType, type.kind === 'decimal' ? found.precision : null, type.kind === 'decimal' ? found.scale : null);
      if (why) problems.push(`column ${name} ${why}`);
    }
  }
  out.push({ check: `${at} columns`, ok: problems.length === 0, detail: problems.length === 0 ? `${entity.columns.size} columns match entity ${entity.name}` : problems.join('; ') });
  if (entity.versionColumn) {
    const v = mapping.columns.get(entity.versionColumn) ?? entity.versionColumn;
    const found = col(v);
    const bytes = kind === 'pg' ? ['bytea'] : ['varbinary', 'blob', 'binary', 'mediumblob'];
    out.push({ check: `${at} version column ${v}`, ok: found !== undefined && bytes.includes(found.dataType), detail: found ? found.dataType : `missing: add ${v} ${kind === 'pg' ? 'bytea' : 'varbinary(255)'}` });
  }
}

async function checkConnectors(topology: Topology, url: string, out: Finding[]): Promise<void> {
  const res = await fetch(`${url}/connectors?expand=info&expand=status`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`Kafka Connect answered ${res.status}`);
  const all = await res.json() as Record<string, { info: { config: Record<string, string> }; status: { connector: { state: string } } }>;
  for (const node of topology.nodes.values()) {
    if (node.role === 'target') continue;
    const found = Object.entries(all).find(([, c]) => c.info.config['topic.prefix'] === node.topicPrefix);
    if (!found) {
      out.push({ check: `${node.name}: connector`, ok: false, detail: `no connector has topic.prefix=${node.topicPrefix}` });
      continue;
    }
    const [name, c] = found;
    const cfg = c.info.config;
    const converter = cfg['value.converter'] ?? '';
    out.push({ check: `${node.name}: connector ${name}`, ok: c.status.connector.state === 'RUNNING' && /JsonConverter$/.test(converter),
      detail: `${c.status.connector.state}, value.converter ${converter || 'the worker default'}, schemas ${cfg['value.converter.schemas.enable'] ?? 'default'}` });
    const include = (cfg['table.include.list'] ?? cfg['collection.include.list'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    for (const entity of topology.entities.values()) {
      const mapping = entity.nodes.get(node.name);
      if (!mapping) continue;
      const ok = include.length === 0 || include.some((p) => new RegExp(`^${p}$`).test(mapping.table));
      out.push({ check: `${node.name}: ${name} captures ${mapping.table}`, ok, detail: ok ? `topic ${mapping.topic}` : `add ${mapping.table} to its table.include.list (${include.join(',')})` });
    }
  }
}

export async function runConfigCheck(args: string[], loaded: () => Loaded): Promise<number> {
  if (args[0] !== 'check' || args.includes('--help')) {
    process.stdout.write(USAGE);
    return args.includes('--help') ? 0 : 2;
  }
  const flag = (f: string) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : undefined; };
  const json = args.includes('--json');
  const connect = args.includes('--connect');
  const out: Finding[] = [];
  let topology: Topology;
  try {
    const file = flag('--file');
    if (file) {
      let doc: unknown;
      try {
        doc = parseYaml(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new ConfigError('--file', `${file}: ${errorMessage(err)}`);
      }
      topology = parseTopology(doc, file, connect ? process.env : { resolveUrls: false });
    } else {
      // offline, the file's urlEnv variables need not be set: only WORKER_SYNC_CONFIG is read
      const configFile = parseEnv().configFile;
      topology = connect ? loaded().topology : parseTopology(parseYaml(readFileSync(configFile, 'utf8')), configFile, { resolveUrls: false });
    }
  } catch (err) {
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: errorMessage(err) })}\n`);
    else process.stderr.write(`worker-sync config check: ${errorMessage(err)}\n`);
    return 2;
  }
  out.push({ check: 'topology parses', ok: true, detail: `${topology.source}: ${topology.nodes.size} nodes, ${topology.entities.size} entities, ${topology.topics.size} topics` });
  if (connect) {
    for (const node of topology.nodes.values()) {
      if (node.url === '') continue; // a source without a database of its own (the load generator's)
      const entities = [...topology.entities.values()].flatMap((e) => (e.nodes.has(node.name) ? [[e, e.nodes.get(node.name)!] as [EntityConfig, EntityNodeMapping]] : []));
      try {
        if (node.kind === 'postgres') await checkPostgresNode(node, entities, out);
        else if (node.kind === 'mariadb' || node.kind === 'mysql') await checkMysqlNode(node, entities, out);
        else out.push({ check: `${node.name}: MongoDB`, ok: true, detail: 'not checked by this command' });
      } catch (err) {
        out.push({ check: `${node.name}: connect`, ok: false, detail: `${redactUrl(node.url)}: ${errorMessage(err)}` });
      }
    }
    const url = flag('--connect-url') ?? process.env.KAFKA_CONNECT_URL ?? 'http://127.0.0.1:18083';
    try {
      await checkConnectors(topology, url, out);
    } catch (err) {
      out.push({ check: 'Kafka Connect', ok: false, detail: `${url}: ${errorMessage(err)}` });
    }
  }
  const ok = out.every((f) => f.ok);
  if (json) process.stdout.write(`${JSON.stringify({ ok, checks: out })}\n`);
  else {
    for (const f of out) process.stdout.write(`${f.ok ? 'ok  ' : 'FAIL'}  ${f.check}: ${f.detail}\n`);
    process.stdout.write(ok ? 'config check: ok\n' : `config check: ${out.filter((f) => !f.ok).length} check(s) failed\n`);
  }
  return ok ? 0 : 1;
}
