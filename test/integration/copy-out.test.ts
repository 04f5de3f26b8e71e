import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { CopyOut, unframeCopyDataJs, type CopySink } from '../../src/audit/copy-out.ts';
import { hashTexts, LEAF_PLAN_RESET_SQL, LEAF_PLAN_SQL, leafCopySql, META_FIELD_NAMES, PAYLOAD_FIELD_NAMES, streamLeafChunks, streamLeafRows, timestamptzText } from '../../src/audit/leaf.ts';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { nativeHash } from '../../src/audit/native-hash.ts';
import { stack } from '../support/stack.ts';

/**
 * The verifier's COPY reader (src/audit/copy-out.ts) on the real control database: it takes
 * the connection's socket from node-postgres for the copy and hands it back after, so it must
 * give pg-copy-streams' bytes exactly, surface an error, and leave the connection usable.
 */
let client: pg.Client;

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 1 });
  await migrateControlSchema(pool);
  await pool.end();
  client = new pg.Client({ connectionString: stack().postgres.controlUrl });
  await client.connect();
  await client.query(`CREATE FUNCTION pg_temp.noisy(i int) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN IF i % 997 = 0 THEN RAISE NOTICE 'row %', i; END IF; RETURN i; END $$`);
});

afterAll(async () => {
  await client?.end();
});

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** A sink that keeps a copy of every write; `slow` holds the reading at every 50th (backpressure), `failAt` throws at that write. */
class Collect implements CopySink {
  parts: Buffer[] = [];
  ended = false;
  private scratch = Buffer.alloc(0);
  constructor(private readonly o: { slow?: boolean; failAt?: number } = {}) {}
  room(n: number) {
    if (this.scratch.length < n) this.scratch = Buffer.alloc(n);
    return { buf: this.scratch, at: 0 };
  }
  wrote(end: number): Promise<void> | void {
    this.parts.push(Buffer.from(this.scratch.subarray(0, end)));
    if (this.parts.length === this.o.failAt) throw new Error('the reader gives up');
    if (this.o.slow && this.parts.length % 50 === 0) return new Promise((r) => setTimeout(r, 5));
  }
  end() {
    this.ended = true;
  }
  bytes() {
    return Buffer.concat(this.parts);
  }
}

async function copy(sql: string, sink: CopySink, unframe?: typeof unframeCopyDataJs): Promise<void> {
  await client.query(new CopyOut(sql, sink, unframe)).done;
}

// rows of every size around a socket read, with NOTICEs from the server between them
const SQL = `COPY (SELECT pg_temp.noisy(i), repeat(md5(i::text), (i % 200) + 1), CASE WHEN i % 7 = 0 THEN NULL ELSE i::text END FROM generate_series(1, 30000) i) TO STDOUT (FORMAT binary)`;

describe('CopyOut', () => {
  for (const unframe of ['native', 'TypeScript'] as const) {
    it(`gives exactly the bytes pg-copy-streams gives, and leaves the connection usable (${unframe} unframing)`, async () => {
      const fn = unframe === 'native' ? nativeHash!.unframeCopyData : unframeCopyDataJs;
      const want = await collect(client.query(pgCopy.to(SQL)));
      const sink = new Collect({ slow: true });
      await copy(SQL, sink, fn);
      expect(sink.ended).toBe(true);
      expect(sink.parts.length).toBeGreaterThan(50);
      expect(want.length).toBeGreaterThan(1_000_000);
      expect(sink.bytes().equals(want)).toBe(true);
      expect((await client.query('SELECT 41 + 1 AS n')).rows[0].n).toBe(42);
    });
  }

  it('fails with the server\'s error, before the copy and in the middle of it, and the connection goes on', async () => {
    await expect(copy('COPY (SELECT * FROM no_such_table) TO STDOUT', new Collect())).rejects.toThrow(/no_such_table/);
    expect((await client.query('SELECT 1 AS n')).rows[0].n).toBe(1);
    const midway = `COPY (SELECT CASE WHEN i < 20000 THEN i ELSE 1 / (i - i) END FROM generate_series(1, 30000) i) TO STDOUT`;
    await expect(copy(midway, new Collect())).rejects.toThrow(/division by zero/);
    expect((await client.query('SELECT 2 AS n')).rows[0].n).toBe(2);
  });

  it('reads the rest of a copy whose reader gave up, and fails with the reader\'s error; the connection goes on', async () => {
    const sink = new Collect({ failAt: 3 });
    await expect(copy(SQL, sink)).rejects.toThrow(/the reader gives up/);
    expect(sink.parts.length).toBe(3);
    expect((await client.query('SELECT 3 AS n')).rows[0].n).toBe(3);
    const ending = new Collect();
    ending.end = () => {
      throw new Error('cut short');
    };
    await expect(copy(SQL, ending)).rejects.toThrow(/cut short/);
    expect((await client.query('SELECT 4 AS n')).rows[0].n).toBe(4);
  });

  it('unframes natively exactly as in TypeScript, wherever a read ends', () => {
    const msgs: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const payload = randomBytes(i * 13 % 700);
      const head = Buffer.alloc(5);
      head[0] = 0x64;
      head.writeUInt32BE(payload.length + 4, 1);
      msgs.push(head, payload);
    }
    msgs.push(Buffer.from([0x63, 0, 0, 0, 4])); // CopyDone
    const stream = Buffer.concat(msgs);
    for (let cut = 0; cut <= stream.length; cut += 211) {
      const buf = stream.subarray(0, cut);
      const a = Buffer.alloc(buf.length);
      const b = Buffer.alloc(buf.length);
      const sa = new Int32Array(2);
      const sb = new Int32Array(2);
      nativeHash!.unframeCopyData(buf, 0, a, 0, sa);
      unframeCopyDataJs(buf, 0, b, 0, sb);
      expect([...sa]).toEqual([...sb]);
      expect(a.subarray(0, sa[1]).equals(b.subarray(0, sb[1]))).toBe(true);
    }
    expect(() => nativeHash!.unframeCopyData(stream, 0, Buffer.alloc(10), 0, new Int32Array(2))).toThrow(RangeError);
  });
});

describe('the verifier\'s read of a log', () => {
  it('walks the primary key in seq order, with no sort and no parallel workers, and leaves the session\'s settings as they were', async () => {
    const select = leafCopySql(client, 'some-group:t/0', 1, Infinity).replace(/^COPY \(/, '').replace(/\) TO STDOUT \(FORMAT binary\)$/, '');
    await client.query(LEAF_PLAN_SQL);
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${select}`);
    await client.query(LEAF_PLAN_RESET_SQL);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/^Index Scan using audit_log_pkey on audit_log/);
    expect(plan).not.toMatch(/Sort|Gather|Seq Scan/);
    await streamLeafRows(client, 'some-group:t/0', 1, Infinity, () => undefined);
    const settings = await client.query<{ name: string; setting: string; source: string }>(
      `SELECT name, setting, source FROM pg_settings WHERE name IN ('enable_seqscan', 'enable_bitmapscan', 'enable_sort', 'max_parallel_workers_per_gather')`);
    expect(settings.rows.filter((r) => r.source === 'session')).toEqual([]);
  });
});

describe('the verifier\'s conversions of binary columns give PostgreSQL\'s own texts (leaf format 2 is defined by them)', () => {
  /**
   * Instants over PostgreSQL's whole timestamptz range, and its edges. The range holds
   * 109,203,162 days (date '294276-12-31' - date '4713-11-24 BC' + 1): a whole day a draw,
   * then a time in it, never past the last instant.
   */
  const instants = `SELECT timestamptz '4713-11-24 00:00:00+00 BC' + floor(random() * 109203162) * interval '1 day' + random() * interval '86399.999999 s' AS t FROM generate_series(1, 5000)
    UNION ALL SELECT timestamptz '1970-01-01 00:00:00+00' + (random() * 40000 - 20000) * interval '1 day' + (random() * 86400000000)::bigint * interval '1 microsecond' FROM generate_series(1, 5000)
    UNION ALL SELECT v::timestamptz FROM unnest(ARRAY['4713-11-24 00:00:00+00 BC', '0001-12-31 23:59:59.999999+00 BC', '0001-01-01 00:00:00+00', '1999-12-31 23:59:59.999999+00',
      '2000-01-01 00:00:00+00', '2000-01-01 00:00:00.000001+00', '2000-02-29 12:00:00.1+00', '1900-02-28 23:59:59.99+00', '2026-11-30 12:34:56.123456+00',
      '9999-12-31 23:59:59.999999+00', '10000-01-01 00:00:00+00', '294276-12-31 23:59:59.999999+00', 'infinity', '-infinity']) v`;

  it('timestamptzText: the text of every instant, from its microseconds', async () => {
    await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'");
    const { rows } = await client.query<{ us: string; text: string }>(
      `SELECT CASE WHEN isfinite(t) THEN (extract(epoch FROM t - timestamptz '2000-01-01 00:00:00+00') * 1000000)::numeric(30, 0)::text WHEN t > 'epoch' THEN '9223372036854775807' ELSE '-9223372036854775808' END AS us,
         t::text AS text FROM (${instants}) x`);
    expect(rows.length).toBe(10_014);
    const wrong = rows.filter((r) => timestamptzText(BigInt(r.us)) !== r.text).slice(0, 5).map((r) => `${r.us}: ${timestamptzText(BigInt(r.us))} != ${r.text}`);
    expect(wrong).toEqual([]);
  });

  it('the native scan recomputes the leaf of rows whose timestamps, version and hlc span their ranges, and names a row whose timestamp moved by 1 µs', async () => {
    const logId = `conv-${randomBytes(4).toString('hex')}:t/0`;
    await client.query(`INSERT INTO audit_log (log_id, seq, kind, event_id, source_ts, version, hlc, executed_at, before, after)
      SELECT $1, row_number() OVER (), 'change', 'e' || row_number() OVER (), t,
        CASE WHEN random() < 0.1 THEN NULL WHEN random() < 0.1 THEN ''::bytea ELSE decode(md5(random()::text), 'hex') END,
        CASE WHEN random() < 0.1 THEN NULL ELSE ((random() - 0.5) * 9.2e18)::bigint END,
        CASE WHEN random() < 0.5 THEN t ELSE now() END, '{"a": 1}', json_build_object('t', t::text)
      FROM (${instants}) x`, [logId]);
    try {
      // the leaf from the texts PostgreSQL gives the columns: the definition the writer hashes by
      await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'");
      const { rows } = await client.query<Record<string, string | null>>(`SELECT log_id, seq::text AS seq, kind, event_id, entity, record_key::text, op, source_node, source_position::text,
        source_ts::text, changed_columns::text, encode(version, 'hex') AS version, hlc::text, actor, executed_at::text, before::text, after::text, writes::text FROM audit_log WHERE log_id = $1`, [logId]);
      const seqs: string[] = [];
      const leaves: Buffer[] = [];
      const payloads: Buffer[] = [];
      for (const r of rows) {
        const { payload, leaf } = hashTexts(META_FIELD_NAMES.map((f) => r[f]!), PAYLOAD_FIELD_NAMES.map((f) => r[f]!));
        seqs.push(r.seq!);
        leaves.push(leaf);
        payloads.push(payload);
      }
      await client.query('UPDATE audit_log a SET leaf_hash = u.l, payload_hash = u.p FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) u(s, l, p) WHERE a.log_id = $1 AND a.seq = u.s',
        [logId, seqs, leaves, payloads]);
      const flagged = async () => {
        const out: number[] = [];
        let count = 0;
        await streamLeafChunks(client, logId, 1, Infinity, (c) => {
          for (let i = 0; i < c.count; i++) if (c.flags[i] !== 0) out.push(c.seqs[i]!);
          count += c.count;
        });
        return { count, flagged: out };
      };
      expect(nativeHash).toBeDefined();
      expect(await flagged()).toEqual({ count: 10_014, flagged: [] });
      await client.query(`UPDATE audit_log SET source_ts = source_ts + interval '1 microsecond' WHERE log_id = $1 AND seq = 4321`, [logId]);
      expect(await flagged()).toEqual({ count: 10_014, flagged: [4321] });
      // the rows come 64 KB at a time, not a socket read at a time (~8 KB here), and the copy
      // settles only once the consumer's promise for its last rows has
      let chunks = 0;
      let seen = 0;
      let settled = true;
      await streamLeafChunks(client, logId, 1, Infinity, (c) => {
        chunks++;
        seen += c.count;
        settled = false;
        return new Promise<void>((resolve) => setTimeout(() => { settled = true; resolve(); }, 5));
      });
      expect({ seen, settled }).toEqual({ seen: 10_014, settled: true });
      expect(chunks).toBeLessThan(10_014 / 100);
    } finally {
      await client.query('DELETE FROM audit_log WHERE log_id = $1', [logId]);
    }
  });
});
