import { timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { Topology } from '../config/topology.ts';
import type { Row } from '../events/change-event.ts';
import { decimalFromText, toCanonical, ValueError, type Canonical } from '../events/values.ts';
import type { ColumnType } from '../config/column-types.ts';
import { writePaused, type PauseGate } from '../control/pause.ts';
import { getConflict, listConflicts, resolveConflict, resolveToSuggested, type StoredConflict } from '../control/conflicts.ts';
import { json, type HttpRequest, type HttpResponse, type Route } from './server.ts';

/**
 * The API on port 3001 (DESIGN §9). Every call needs `Authorization: Bearer <API_TOKEN>`;
 * a missing or wrong token gets 401. Input is checked before it reaches SQL: a bad body
 * or query gets 400 naming the field, an unknown conflict 404, a conflict already
 * resolved 409. Resolutions are stored on the conflict; the worker converges them
 * (ConflictService) and audits who resolved them.
 */
export interface ApiDeps {
  pool: pg.Pool;
  groupId: string;
  topology: Topology;
  token: string;
  pause: PauseGate;
  /** Runs a control pass now (pause flag, convergence). */
  kick: () => void;
  status: () => Promise<Record<string, unknown>>;
}

const bad = (field: string, message: string) => json(400, { error: `${field}: ${message}`, field });
const STATUSES = ['open', 'resolved', 'all'] as const;
const ID = /^[1-9]\d{0,17}$/;

function authorized(req: HttpRequest, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!.trim());
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/** The JSON object body (empty: {}) and who acts (`by`, else the X-Actor header, else "api"), or the 400 saying why not. */
function input(req: HttpRequest): { b: Record<string, unknown>; by: string; error?: undefined } | { error: HttpResponse } {
  let b: Record<string, unknown> = {};
  if (req.body.length > 0) {
    let v: unknown;
    try {
      v = JSON.parse(req.body.toString('utf8'));
    } catch {
      return { error: bad('body', 'is not valid JSON') };
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return { error: bad('body', 'must be a JSON object') };
    b = v as Record<string, unknown>;
  }
  const by = b.by ?? req.headers['x-actor'] ?? 'api';
  if (typeof by !== 'string' || by.length === 0 || by.length > 200) return { error: bad('by', 'must be a non-empty string of at most 200 characters') };
  return { b, by };
}

function present(c: StoredConflict) {
  const side = (node: string | null, value: Row | null, deleted: boolean, hlc: string | null, version: Buffer | null) =>
    ({ node, value, deleted, hlc, version: version?.toString('hex') ?? null });
  return {
    id: Number(c.id), entity: c.entity, key: JSON.parse(c.record_key) as unknown,
    status: c.resolved_at === null ? 'open' : c.converged_at === null ? 'resolved' : 'converged',
    strategy: c.strategy, suggested_winner: c.suggested_winner, winner_node: c.winner_node, winner_value: c.winner_value,
    local: side(c.local_node, c.local_value, c.local_deleted, c.local_hlc, c.local_version),
    incoming: side(c.incoming_node, c.incoming_value, c.incoming_deleted, c.incoming_hlc, c.incoming_version),
    merged_version: c.merged_version?.toString('hex') ?? null,
    detected_at: c.detected_at, resolved_at: c.resolved_at, resolution_strategy: c.resolution_strategy, resolved_by: c.resolved_by, converged_at: c.converged_at,
  };
}

/**
 * A value given through the API, in the canonical forms the README's type table lists
 * (decimals as text or numbers, bytes as base64), to its canonical form. Stricter than the
 * Debezium reading: a decimal is never taken for base64 bytes.
 */
function apiValue(raw: unknown, type: ColumnType, what: string): Canonical {
  if (raw === null) return null;
  if (type.kind === 'decimal') {
    if (typeof raw !== 'string' && typeof raw !== 'number') throw new ValueError(`${what}: expected a decimal as text or a number`);
    return decimalFromText(String(raw), type, what);
  }
  if (type.kind === 'bytes' && (typeof raw !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(raw))) throw new ValueError(`${what}: expected base64 text`);
  return toCanonical(raw, type, undefined, what);
}

export function apiRoutes(d: ApiDeps): Route[] {
  const guard = (h: (req: HttpRequest) => Promise<HttpResponse>) => async (req: HttpRequest): Promise<HttpResponse> =>
    (authorized(req, d.token) ? h(req) : json(401, { error: 'missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)' }));

  const list = async (req: HttpRequest) => {
    const status = req.query.get('status') ?? 'open';
    if (!(STATUSES as readonly string[]).includes(status)) return bad('status', `must be one of ${STATUSES.join(', ')}`);
    const entity = req.query.get('entity');
    if (entity !== null && !d.topology.entities.has(entity)) return bad('entity', `unknown entity "${entity}"`);
    const node = req.query.get('node');
    if (node !== null && !d.topology.nodes.has(node)) return bad('node', `unknown node "${node}"`);
    const limitRaw = req.query.get('limit') ?? '100';
    if (!/^\d{1,4}$/.test(limitRaw) || Number(limitRaw) < 1 || Number(limitRaw) > 500) return bad('limit', 'must be an integer from 1 to 500');
    const cursorRaw = req.query.get('cursor');
    let after = '0';
    if (cursorRaw !== null) {
      const decoded = Buffer.from(cursorRaw, 'base64url').toString('utf8');
      if (!/^id:[1-9]\d{0,17}$/.test(decoded)) return bad('cursor', 'is not a cursor this API returned');
      after = decoded.slice(3);
    }
    const limit = Number(limitRaw);
    const rows = await listConflicts(d.pool, d.groupId, { after, status, entity, node, limit });
    const page = rows.slice(0, limit);
    const next = rows.length > limit ? Buffer.from(`id:${page[page.length - 1]!.id}`).toString('base64url') : null;
    return json(200, { conflicts: page.map(present), next_cursor: next });
  };

  const one = async (req: HttpRequest) => {
    const id = req.params?.id ?? '';
    if (!ID.test(id)) return bad('id', 'must be a positive integer');
    const c = await getConflict(d.pool, d.groupId, id);
    return c ? json(200, present(c)) : json(404, { error: `no conflict ${id}` });
  };

  const resolveOne = async (req: HttpRequest) => {
    const id = req.params?.id ?? '';
    if (!ID.test(id)) return bad('id', 'must be a positive integer');
    const inp = input(req);
    if (inp.error) return inp.error;
    const { by } = inp;
    const { winner, value } = inp.b as { winner?: unknown; value?: unknown };
    if ((winner === undefined) === (value === undefined)) return bad('winner', 'give either winner (a node) or value (the record), not both and not neither');
    const c = await getConflict(d.pool, d.groupId, id);
    if (!c) return json(404, { error: `no conflict ${id}` });
    if (c.resolved_at !== null) return json(409, { error: `conflict ${id} is already resolved (${c.resolution_strategy} by ${c.resolved_by})` });
    let winnerNode: string | null = null;
    let winnerValue: Row | null = null;
    let deleted = false;
    if (winner !== undefined) {
      const nodes = [c.local_node, c.incoming_node].filter((n): n is string => n !== null);
      if (typeof winner !== 'string' || !nodes.includes(winner)) return bad('winner', `must be one of the conflict's nodes: ${nodes.join(', ')}`);
      winnerNode = winner;
    } else if (value === null) {
      deleted = true;
    } else {
      const entity = d.topology.entities.get(c.entity);
      if (!entity) return json(409, { error: `entity ${c.entity} is no longer configured` });
      if (typeof value !== 'object' || Array.isArray(value)) return bad('value', 'must be an object of the record\'s columns, or null to delete it');
      const key = JSON.parse(c.record_key) as unknown[];
      winnerValue = {};
      for (const col of Object.keys(value as object)) if (!entity.columns.has(col)) return bad(`value.${col}`, `is not a column of ${entity.name}`);
      for (const [col, type] of entity.columns) {
        const raw = (value as Record<string, unknown>)[col];
        try {
          winnerValue[col] = apiValue(raw ?? null, type, `value.${col}`);
        } catch (err) {
          if (err instanceof ValueError) return bad(`value.${col}`, err.message.replace(/^value\.\w+: /, ''));
          throw err;
        }
      }
      for (const [i, k] of entity.key.entries()) {
        if (JSON.stringify(winnerValue[k]) !== JSON.stringify(key[i])) return bad(`value.${k}`, `must be the record's key (${JSON.stringify(key[i])})`);
      }
    }
    const done = await resolveConflict(d.pool, d.groupId, id, { strategy: winnerNode ? 'api_winner' : 'api_value', by, winnerNode, winnerValue, deleted });
    if (!done) return json(409, { error: `conflict ${id} was resolved meanwhile` });
    d.kick();
    return json(202, { id: Number(id), status: 'resolved', converging: true, winner_node: winnerNode, resolved_by: by });
  };

  const resolveAll = async (req: HttpRequest) => {
    const inp = input(req);
    if (inp.error) return inp.error;
    const { by } = inp;
    const { entity, limit = 1000 } = inp.b as { entity?: unknown; limit?: unknown };
    if (entity !== undefined && (typeof entity !== 'string' || !d.topology.entities.has(entity))) return bad('entity', 'must be a configured entity');
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 100_000) return bad('limit', 'must be an integer from 1 to 100000');
    const ids = await resolveToSuggested(d.pool, d.groupId, (entity as string | undefined) ?? null, by, limit);
    if (ids.length > 0) d.kick();
    return json(200, { resolved: ids.length, ids, strategy: 'auto (each conflict\'s suggested winner, by lww)' });
  };

  const setPause = (paused: boolean) => async (req: HttpRequest) => {
    const inp = input(req);
    if (inp.error) return inp.error;
    const { by } = inp;
    await writePaused(d.pool, d.groupId, paused, by);
    d.pause.set(paused);
    d.kick();
    return json(200, { paused, by });
  };

  return [
    { method: 'GET', path: '/sync/conflicts', handler: guard(list) },
    { method: 'GET', path: '/sync/conflicts/:id', handler: guard(one) },
    { method: 'POST', path: '/sync/conflicts/:id/resolve', handler: guard(resolveOne) },
    { method: 'POST', path: '/sync/resolve-conflicts', handler: guard(resolveAll) },
    { method: 'GET', path: '/sync/status', handler: guard(async () => json(200, await d.status())) },
    { method: 'POST', path: '/sync/pause', handler: guard(setPause(true)) },
    { method: 'POST', path: '/sync/resume', handler: guard(setPause(false)) },
  ];
}
