import { pgCustomerEnvelope } from '../support/envelopes.ts';

/**
 * Fuzzed messages for a real connector topic (issue 12, chaos scenario 7). Each kind is
 * one way a connector, a broker or a hand-written producer can put bad bytes in front of
 * the worker. Every message gets a key of its own, so what becomes of it can be found by
 * its offset: applied (an audit row), dead-lettered (with a reason), or a tombstone.
 */
export interface Fuzzed {
  kind: string;
  topic: string;
  key: string | null;
  value: Buffer | null;
}

type Obj = Record<string, unknown>;

/** A deterministic generator, so a failing run can be repeated (`--seed`). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/** A schemas-off MariaDB envelope of the same change, as the MariaDB connector writes it. */
function mariaEnvelope(op: string, id: number, after: unknown, before: unknown = null): { key: string; value: string } {
  const source = { version: '3.5.0.Final', connector: 'mariadb', name: 'maria', ts_ms: Date.now(), db: 'app', table: 'customers', server_id: 1, file: 'mysql-bin.000009', pos: 4 + id % 1_000_000, row: 0, gtid: null };
  return { key: JSON.stringify({ id }), value: JSON.stringify({ before, after, source, op, ts_ms: Date.now(), transaction: null }) };
}

const mariaRow = (id: number, extra: Obj = {}) => ({ id, name: `fuzz ${id}`, email: null, balance: '1.50', tags: '{}', updated_at: 1796042101654321, _sync_version: null, ...extra });

function pgWith(id: number, edit: (payload: Obj, schema: Obj) => void): { key: string; value: string } {
  const e = pgCustomerEnvelope('c', id, { name: `fuzz ${id}` });
  const doc = JSON.parse(e.value) as { schema: Obj; payload: Obj };
  edit(doc.payload, doc.schema);
  return { key: e.key, value: JSON.stringify(doc) };
}

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

export function fuzzMessages(count: number, base: number, seed: number): Fuzzed[] {
  const rand = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const out: Fuzzed[] = [];
  const pg = 'pg.public.customers';
  const my = 'maria.app.customers';
  const kinds: Array<[string, number, (id: number) => Fuzzed]> = [
    ['valid', 8, (id) => {
      const e = rand() < 0.5 ? pgCustomerEnvelope('c', id) : mariaEnvelope('c', id, mariaRow(id));
      return { kind: 'valid', topic: e.value.includes('"schema"') ? pg : my, key: e.key, value: Buffer.from(e.value) };
    }],
    ['byte flip', 20, (id) => {
      const e = rand() < 0.5 ? pgCustomerEnvelope('c', id) : mariaEnvelope('c', id, mariaRow(id));
      const b = Buffer.from(e.value);
      for (let i = 1 + Math.floor(rand() * 3); i > 0; i--) {
        const at = Math.floor(rand() * b.length);
        b[at] = b[at]! ^ (1 << Math.floor(rand() * 8));
      }
      return { kind: 'byte flip', topic: e.value.includes('"schema"') ? pg : my, key: e.key, value: b };
    }],
    ['truncation', 15, (id) => {
      const e = rand() < 0.5 ? pgCustomerEnvelope('c', id) : mariaEnvelope('c', id, mariaRow(id));
      const b = Buffer.from(e.value);
      return { kind: 'truncation', topic: e.value.includes('"schema"') ? pg : my, key: e.key, value: b.subarray(0, 1 + Math.floor(rand() * (b.length - 1))) };
    }],
    ['900 KB field', 0.2, (id) => {
      const big = 'z'.repeat(900_000);
      // an insert fits the changes topic (a target may refuse it); an update carries it twice and does not
      const e = rand() < 0.5 ? mariaEnvelope('c', id, mariaRow(id, { name: big })) : mariaEnvelope('u', id, mariaRow(id, { name: big }), mariaRow(id, { name: big }));
      return { kind: '900 KB field', topic: my, key: e.key, value: Buffer.from(e.value) };
    }],
    ['JSON 5,000 deep', 4, (id) => {
      const e = rand() < 0.5 ? mariaEnvelope('c', id, mariaRow(id, { tags: deep(5000) })) : { key: JSON.stringify({ id }), value: mariaEnvelope('c', id, mariaRow(id)).value.replace('"name":', `"name":${deep(5000)},"x":`) };
      return { kind: 'JSON 5,000 deep', topic: my, key: e.key, value: Buffer.from(e.value) };
    }],
    ['decimal bomb', 8, (id) => {
      const r = rand();
      if (r < 0.4) {
        const e = mariaEnvelope('c', id, mariaRow(id, { balance: pick(['1.e10000000', '1e-100000000', '9'.repeat(5000), '-1E+999999999', '0.000000000000000000001']) }));
        return { kind: 'decimal bomb', topic: my, key: e.key, value: Buffer.from(e.value) };
      }
      const e = pgWith(id, (p, schema) => {
        const fields = (schema.fields as Array<{ field: string; fields?: Array<{ field: string; parameters?: Record<string, string> }> }>);
        for (const f of fields) for (const c of f.fields ?? []) if (c.field === 'balance') c.parameters = { scale: pick(['100000000', '-100000000', '1e9', 'x']) };
        (p.after as Obj).balance = pick(['AQ==', 'f////w==', Buffer.alloc(600, 0x7f).toString('base64')]);
      });
      return { kind: 'decimal bomb', topic: pg, key: e.key, value: Buffer.from(e.value) };
    }],
    ['integer beyond int64', 5, (id) => {
      const e = mariaEnvelope('c', id, mariaRow(id));
      const huge = pick(['9223372036854775808', '-9223372036854775809', '99999999999999999999999999', '1e400']);
      return { kind: 'integer beyond int64', topic: my, key: JSON.stringify({ id }), value: Buffer.from(e.value.replace(`"id":${id},`, `"id":${huge},`)) };
    }],
    ['unknown op or image', 8, (id) => {
      const e = mariaEnvelope(pick(['x', 'z', 'C', '']), id, mariaRow(id));
      const doc = JSON.parse(e.value) as Obj;
      if (rand() < 0.5) {
        doc.op = 'c';
        doc.after = pick(['a string', [1, 2, 3], 42, true]);
      } else if (rand() < 0.3) doc.op = pick([1, null, { c: 1 }]);
      return { kind: 'unknown op or image', topic: my, key: e.key, value: Buffer.from(JSON.stringify(doc)) };
    }],
    ['$ and dotted keys', 6, (id) => {
      const e = mariaEnvelope('c', id, mariaRow(id, { tags: JSON.stringify({ $where: 'sleep(1)', 'a.b': { 'c.d': 1, $gt: 2 }, $: [] }) }));
      return { kind: '$ and dotted keys', topic: my, key: e.key, value: Buffer.from(e.value) };
    }],
    ['NUL or bad timestamp', 8, (id) => {
      const edit = pick<Obj>([
        { name: 'nul\u0000inside' }, { tags: JSON.stringify({ s: 'nul\u0000' }) }, { email: '\u0000' },
        { updated_at: 'not a time' }, { updated_at: -99_999_999_999_999 }, { updated_at: 1e300 }, { updated_at: '2026-13-45T99:99:99' },
        { updated_at: 253_402_300_800_000_000 }, { updated_at: 1.5 },
      ]);
      const e = mariaEnvelope('c', id, mariaRow(id, edit));
      return { kind: 'NUL or bad timestamp', topic: my, key: e.key, value: Buffer.from(e.value) };
    }],
    ['zero-length value', 8, (id) => ({ kind: 'zero-length value', topic: rand() < 0.5 ? pg : my, key: JSON.stringify({ id }), value: rand() < 0.5 ? Buffer.alloc(0) : null })],
  ];
  const total = kinds.reduce((n, [, w]) => n + w, 0);
  for (let i = 0; i < count; i++) {
    let r = rand() * total;
    const kind = kinds.find(([, w]) => (r -= w) < 0) ?? kinds[0]!;
    out.push(kind[2](base + i));
  }
  return out;
}
