import type pg from 'pg';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { errorMessage } from '../errors.ts';
import { consistencyProof, frontierRanges, treeRoot, type RangeHash } from './merkle.ts';
import { checkSignature, parseNote, type Verifier } from './note.ts';

/**
 * The log's side of c2sp.org/tlog-witness: each owned log's newest signed checkpoint is
 * sent to the witness by `add-checkpoint`, with the size the witness cosigned last and
 * the consistency proof from it. The cosignature lines it returns are kept beside the
 * checkpoint (checked against AUDIT_WITNESS_PUBLIC_KEY when given), for verify and the
 * compliance report.
 *
 * It runs on the audit service's timer, after publishing, one request per log at a time.
 * A witness that refuses (409: it holds another size, which is taken as the next old
 * size) or is unreachable is counted and logged, and never holds up the pipeline.
 */
export class WitnessClient {
  private readonly o: { pool: pg.Pool; url: string; verifier: Verifier | undefined; metrics: Metrics; log: Logger; timeoutMs: number };

  /** The witness as logged and stored: origin and path, never a query string (it could carry a token). */
  private readonly shown: string;

  constructor(o: WitnessClient['o']) {
    this.o = o;
    const u = new URL(o.url);
    this.shown = `${u.origin}${u.pathname}`;
  }

  /** Sends what is due for `logIds` (the owned logs). */
  async run(logIds: string[]): Promise<void> {
    const { rows } = await this.o.pool.query<{ log_id: string; tree_size: string; note: string; witnessed: string | null }>(
      `SELECT l.log_id, c.tree_size, c.note, w.tree_size AS witnessed
         FROM audit_logs l
         JOIN audit_checkpoints c ON c.log_id = l.log_id AND c.tree_size = l.checkpoint_size
         LEFT JOIN audit_witness w ON w.log_id = l.log_id AND w.witness = $2
        WHERE l.log_id = ANY($1) AND c.note IS NOT NULL AND c.witnessed_at IS NULL AND (w.tree_size IS NULL OR w.tree_size <= c.tree_size)`,
      [logIds, this.shown],
    );
    let behind = rows.length;
    for (const r of rows) {
      const outcome = await this.submit(r.log_id, Number(r.tree_size), r.note, Number(r.witnessed ?? 0));
      if (outcome === 'cosigned') behind--;
      if (outcome === 'unreachable') break; // the next tick tries again; the rest would only wait for their timeouts
    }
    this.o.metrics.witnessBehind.set(behind);
  }

  /** One add-checkpoint. */
  private async submit(logId: string, size: number, note: string, old: number): Promise<'cosigned' | 'refused' | 'unreachable'> {
    const m = this.o.metrics;
    let proof: Buffer[];
    try {
      proof = consistencyProof(old, size, await this.ranges(logId, old, size));
    } catch (err) {
      m.witnessFailures.labels('proof').inc();
      this.o.log.warn({ log: logId, from: old, to: size, err: errorMessage(err) }, 'Audit witness: cannot build the consistency proof');
      return 'refused';
    }
    const body = `old ${old}\n${proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${note}`;
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.o.url}/add-checkpoint`, { method: 'POST', body, headers: { 'content-type': 'text/plain' }, signal: AbortSignal.timeout(this.o.timeoutMs) });
      text = await res.text();
    } catch (err) {
      m.witnessFailures.labels('unreachable').inc();
      this.o.log.warn({ log: logId, witness: this.shown, err: errorMessage(err) }, 'Audit witness unreachable; the checkpoint is sent again later');
      return 'unreachable';
    }
    if (res.status === 409) {
      // it cosigned another size (a restart, another replica, or it lost state): build the next proof from there
      const theirs = /^(0|[1-9]\d*)\n$/.exec(text);
      m.witnessFailures.labels('conflict').inc();
      this.o.log.warn({ log: logId, sent: old, witness: theirs ? Number(theirs[1]) : text.slice(0, 100) }, 'Audit witness refused: it holds another tree size');
      if (theirs && Number(theirs[1]) <= size) await this.remember(logId, Number(theirs[1]));
      return 'refused';
    }
    if (res.status !== 200) {
      m.witnessFailures.labels(`http_${res.status}`).inc();
      this.o.log.warn({ log: logId, status: res.status, body: text.slice(0, 200) }, 'Audit witness refused the checkpoint');
      return 'refused';
    }
    const lines = text.split('\n').filter((l) => l.startsWith('\u2014 ')).map((l) => `${l}\n`);
    const cosignatures = this.check(note, lines);
    if (cosignatures === null) {
      m.witnessFailures.labels('bad_cosignature').inc();
      this.o.log.warn({ log: logId, lines: lines.length }, 'Audit witness answered without a cosignature that verifies with AUDIT_WITNESS_PUBLIC_KEY');
      return 'refused';
    }
    await this.o.pool.query('UPDATE audit_checkpoints SET cosignatures = $3, witnessed_at = now() WHERE log_id = $1 AND tree_size = $2', [logId, size, cosignatures]);
    await this.remember(logId, size);
    m.witnessCosigned.inc();
    m.witnessLastCosigned.set(Date.now() / 1000);
    return 'cosigned';
  }

  /** The lines to keep: those the pinned witness key verifies, or (no key given) every signature line. Null: none verifies. */
  private check(note: string, lines: string[]): string | null {
    if (lines.length === 0) return null;
    try {
      const { text } = parseNote(note);
      const { signatures } = parseNote(`${text}\n${lines.join('')}`); // lines that do not parse: no cosignature
      if (!this.o.verifier) return lines.join('');
      const good = signatures.filter((s) => checkSignature(this.o.verifier!, text, s).ok);
      return good.length > 0 ? good.map((s) => s.line).join('') : null;
    } catch {
      return null;
    }
  }

  private async remember(logId: string, size: number): Promise<void> {
    await this.o.pool.query(
      `INSERT INTO audit_witness (log_id, witness, tree_size) VALUES ($1, $2, $3)
       ON CONFLICT (log_id, witness) DO UPDATE SET tree_size = EXCLUDED.tree_size, updated_at = now()`, [logId, this.shown, size]);
  }

  /**
   * Subtree hashes for a proof from `old` to `size`: the frontier signed with the checkpoint
   * at `old` and the leaves after it; all the leaves when no checkpoint of ours has that size.
   */
  private async ranges(logId: string, old: number, size: number): Promise<RangeHash> {
    if (old === 0 || old === size) return () => { throw new Error('no hashes are needed'); };
    const { rows } = await this.o.pool.query<{ frontier: Buffer[] | null }>('SELECT frontier FROM audit_checkpoints WHERE log_id = $1 AND tree_size = $2', [logId, old]);
    const frontier = rows[0]?.frontier;
    const from = frontier ? old : 0;
    const { rows: leaves } = await this.o.pool.query<{ leaf_hash: Buffer }>(
      'SELECT leaf_hash FROM audit_log WHERE log_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq', [logId, from, size]);
    if (leaves.length !== size - from) throw new Error(`${logId} holds ${leaves.length} leaves in (${from}, ${size}]`);
    const hashes = leaves.map((l) => l.leaf_hash);
    return frontier ? frontierRanges({ size: old, roots: frontier }, hashes) : (lo, hi) => treeRoot(hashes, lo, hi);
  }
}
