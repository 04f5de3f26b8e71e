import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.ts';
import { parseColumnType, type ColumnType } from './column-types.ts';

/**
 * The sync topology (DESIGN §4): which databases take part, which records are synced,
 * and how each record maps onto each database. Everything that later becomes an SQL
 * identifier is checked here, once, against a strict pattern.
 */
export type NodeKind = 'postgres' | 'mariadb' | 'mysql' | 'mongodb';

export interface NodeConfig {
  name: string;
  kind: NodeKind;
  url: string;
  /** Debezium `topic.prefix` of this node's connector. */
  topicPrefix: string;
  priority: number;
  /**
   * both (default): captured by Debezium and written by the worker; source: its changes
   * arrive on its topics but the worker never writes it (no url needed; a load
   * generator's synthetic node); target: written, not captured, so no echo comes back.
   */
  role: NodeRole;
}

export type NodeRole = 'both' | 'source' | 'target';
const ROLES: NodeRole[] = ['both', 'source', 'target'];

export interface EntityNodeMapping {
  node: string;
  /** `schema.table` (PostgreSQL), `db.table` (MariaDB/MySQL) or `db.collection` (MongoDB). */
  table: string;
  /** Debezium topic carrying this table's changes. */
  topic: string;
  /** entity column -> column name at this node. */
  columns: Map<string, string>;
  /** column name at this node -> entity column. */
  columnsBack: Map<string, string>;
}

export interface EntityConfig {
  name: string;
  key: string[];
  columns: Map<string, ColumnType>;
  versionColumn: string | undefined;
  policy: 'lww' | 'priority' | 'merge' | 'manual';
  deleteWins: boolean;
  truncate: 'propagate' | 'ignore';
  nodes: Map<string, EntityNodeMapping>;
  /** The nodes the worker writes (every mapped node but source-only ones). */
  targets: string[];
  /** Target-only nodes: not captured, so their writes come back as no echo. */
  echoless: Set<string>;
}

export interface Topology {
  source: string;
  kafka: { bootstrap: string | undefined };
  control: { url: string | undefined };
  redis: { url: string | undefined };
  nodes: Map<string, NodeConfig>;
  entities: Map<string, EntityConfig>;
  /** topic -> the entity and node whose changes it carries. */
  topics: Map<string, { entity: EntityConfig; mapping: EntityNodeMapping }>;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const NODE_KINDS: NodeKind[] = ['postgres', 'mariadb', 'mysql', 'mongodb'];
const POLICIES = ['lww', 'priority', 'merge', 'manual'] as const;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, at: string): Obj {
  if (!isObj(v)) throw new ConfigError(at, 'must be a mapping');
  return v;
}

function text(v: unknown, at: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(at, 'must be a non-empty string');
  return v.trim();
}

export function checkIdentifier(name: string, at: string): string {
  if (!IDENT.test(name)) throw new ConfigError(at, `"${name}" is not a plain identifier (letters, digits, _; max 63)`);
  return name;
}

function resolveUrl(raw: Obj, at: string, env: Record<string, string | undefined>, resolve: boolean): string | undefined {
  if (raw.url !== undefined) return text(raw.url, `${at}.url`);
  if (!resolve && raw.urlEnv !== undefined) return `<$${text(raw.urlEnv, `${at}.urlEnv`)}>`;
  if (!resolve && raw.urlFile !== undefined) return `<${text(raw.urlFile, `${at}.urlFile`)}>`;
  if (raw.urlEnv !== undefined) {
    const name = text(raw.urlEnv, `${at}.urlEnv`);
    const v = env[name];
    if (!v) throw new ConfigError(`${at}.urlEnv`, `environment variable ${name} is not set`);
    return v;
  }
  if (raw.urlFile !== undefined) {
    const file = text(raw.urlFile, `${at}.urlFile`);
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`${at}.urlFile`, `cannot read ${file}: ${(err as Error).message}`);
    }
  }
  return undefined;
}

export function loadTopology(file: string, env: Record<string, string | undefined> = process.env): Topology {
  let text_: string;
  try {
    text_ = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('WORKER_SYNC_CONFIG', `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text_) : parseYaml(text_);
  } catch (err) {
    throw new ConfigError('WORKER_SYNC_CONFIG', `${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  return parseTopology(doc, file, env);
}

/**
 * `resolveUrls: false` checks a topology without the environment it will run in (a
 * ConfigMap in CI, `config check` on a laptop): urlEnv and urlFile are taken as given.
 */
export function parseTopology(doc: unknown, source: string, env: Record<string, string | undefined> | { resolveUrls: false } = process.env): Topology {
  const resolve = !('resolveUrls' in env && env.resolveUrls === false);
  const vars = (resolve ? env : {}) as Record<string, string | undefined>;
  const root = obj(doc, 'topology');
  const nodes = new Map<string, NodeConfig>();
  const rawNodes = obj(root.nodes, 'nodes');
  for (const [name, rawNode] of Object.entries(rawNodes)) {
    const at = `nodes.${name}`;
    checkIdentifier(name, at);
    const n = obj(rawNode, at);
    const kind = text(n.kind, `${at}.kind`) as NodeKind;
    if (!NODE_KINDS.includes(kind)) throw new ConfigError(`${at}.kind`, `must be one of ${NODE_KINDS.join(', ')}, got "${kind}"`);
    const role = (n.role ?? 'both') as NodeRole;
    if (!ROLES.includes(role)) throw new ConfigError(`${at}.role`, `must be one of ${ROLES.join(', ')}, got "${String(role)}"`);
    const url = resolveUrl(n, at, vars, resolve) ?? (role === 'source' ? '' : undefined);
    if (url === undefined) throw new ConfigError(`${at}.url`, 'is required (or urlEnv / urlFile)');
    const priority = n.priority === undefined ? 100 : Number(n.priority);
    if (!Number.isInteger(priority)) throw new ConfigError(`${at}.priority`, 'must be an integer');
    nodes.set(name, { name, kind, url, topicPrefix: text(n.topicPrefix ?? name, `${at}.topicPrefix`), priority, role });
  }
  if (nodes.size === 0) throw new ConfigError('nodes', 'at least one node is required');

  const entities = new Map<string, EntityConfig>();
  const topics = new Map<string, { entity: EntityConfig; mapping: EntityNodeMapping }>();
  for (const [name, rawEntity] of Object.entries(obj(root.entities, 'entities'))) {
    const at = `entities.${name}`;
    checkIdentifier(name, at);
    const e = obj(rawEntity, at);
    const columns = new Map<string, ColumnType>();
    for (const [col, type] of Object.entries(obj(e.columns, `${at}.columns`))) {
      checkIdentifier(col, `${at}.columns.${col}`);
      columns.set(col, parseColumnType(text(type, `${at}.columns.${col}`), `${at}.columns.${col}`));
    }
    const rawKey = e.key;
    const key = (Array.isArray(rawKey) ? rawKey : [rawKey]).map((k, i) => text(k, `${at}.key[${i}]`));
    for (const k of key) {
      if (!columns.has(k)) throw new ConfigError(`${at}.key`, `key column "${k}" is not among the entity's columns`);
    }
    const versionColumn = e.versionColumn === null || e.versionColumn === false
      ? undefined
      : checkIdentifier(e.versionColumn === undefined ? '_sync_version' : text(e.versionColumn, `${at}.versionColumn`), `${at}.versionColumn`);
    const policy = (e.policy ?? 'lww') as EntityConfig['policy'];
    if (!POLICIES.includes(policy)) throw new ConfigError(`${at}.policy`, `must be one of ${POLICIES.join(', ')}, got "${String(policy)}"`);
    const truncate = (e.truncate ?? 'ignore') as EntityConfig['truncate'];
    if (truncate !== 'propagate' && truncate !== 'ignore') throw new ConfigError(`${at}.truncate`, 'must be propagate or ignore');
    const entity: EntityConfig = {
      name, key, columns, versionColumn, policy, truncate,
      deleteWins: e.deleteWins === undefined ? true : Boolean(e.deleteWins),
      nodes: new Map(),
      targets: [],
      echoless: new Set(),
    };
    for (const [nodeName, rawMap] of Object.entries(obj(e.nodes, `${at}.nodes`))) {
      const mat = `${at}.nodes.${nodeName}`;
      const node = nodes.get(nodeName);
      if (!node) throw new ConfigError(mat, `node "${nodeName}" is not declared under nodes`);
      const m = typeof rawMap === 'string' ? { table: rawMap } : obj(rawMap, mat);
      const table = text(m.table, `${mat}.table`);
      const parts = table.split('.');
      if (parts.length !== 2) throw new ConfigError(`${mat}.table`, `must be "schema.table" or "database.table", got "${table}"`);
      parts.forEach((p) => checkIdentifier(p, `${mat}.table`));
      const colMap = new Map<string, string>();
      const back = new Map<string, string>();
      const rename = m.columns === undefined ? {} : obj(m.columns, `${mat}.columns`);
      if (node.kind === 'mongodb') {
        // A document's identity is its _id: the entity's key lives there.
        if (key.length !== 1) throw new ConfigError(`${at}.key`, `node ${nodeName} is MongoDB: the key must be one column, stored as _id`);
        if (rename[key[0]!] !== undefined && rename[key[0]!] !== '_id') throw new ConfigError(`${mat}.columns.${key[0]}`, 'a MongoDB node keeps the key in _id');
      }
      for (const col of columns.keys()) {
        const mongoId = node.kind === 'mongodb' && col === key[0];
        const there = mongoId ? '_id' : rename[col] === undefined ? col : checkIdentifier(text(rename[col], `${mat}.columns.${col}`), `${mat}.columns.${col}`);
        colMap.set(col, there);
        back.set(there, col);
      }
      for (const col of Object.keys(rename)) {
        if (!columns.has(col)) throw new ConfigError(`${mat}.columns.${col}`, 'is not an entity column');
      }
      const topic = m.topic === undefined ? `${node.topicPrefix}.${table}` : text(m.topic, `${mat}.topic`);
      const mapping: EntityNodeMapping = { node: nodeName, table, topic, columns: colMap, columnsBack: back };
      entity.nodes.set(nodeName, mapping);
      if (node.role !== 'source') entity.targets.push(nodeName);
      if (node.role === 'target') {
        entity.echoless.add(nodeName);
        continue; // not captured: no topic to read
      }
      if (topics.has(topic)) throw new ConfigError(`${mat}.topic`, `topic ${topic} is mapped twice`);
      topics.set(topic, { entity, mapping });
    }
    if (entity.nodes.size === 0) throw new ConfigError(`${at}.nodes`, 'at least one node mapping is required');
    if (entity.targets.length === 0) throw new ConfigError(`${at}.nodes`, 'maps only source nodes: nothing to write');
    entities.set(name, entity);
  }
  if (entities.size === 0) throw new ConfigError('entities', 'at least one entity is required');

  const kafka = root.kafka === undefined ? {} : obj(root.kafka, 'kafka');
  const control = root.control === undefined ? {} : obj(root.control, 'control');
  const redis = root.redis === undefined ? {} : obj(root.redis, 'redis');
  return {
    source,
    kafka: { bootstrap: kafka.bootstrap === undefined ? undefined : text(kafka.bootstrap, 'kafka.bootstrap') },
    control: { url: resolveUrl(control, 'control', vars, resolve) },
    redis: { url: resolveUrl(redis, 'redis', vars, resolve) },
    nodes,
    entities,
    topics,
  };
}
