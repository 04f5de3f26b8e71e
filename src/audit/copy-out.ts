import { Readable } from 'node:stream';
import type { Connection } from 'pg';
import { nativeHash } from './native-hash.ts';

/**
 * `COPY … TO STDOUT` as a readable stream of the COPY's bytes, for the verifier, which reads
 * every row of a log (DESIGN §7). pg-copy-streams does the same job with a JavaScript parse of
 * every CopyData message (one per row) and a Buffer for each; here one native call per socket
 * read (native/hash.cc, unframeCopyData) copies the payloads of all the whole CopyData
 * messages out of it. Without the addon the same loop runs in TypeScript.
 *
 * The protocol, as pg-copy-streams handles it (its `to` stream is the model): once the query
 * is sent, this stream takes the connection's socket from node-postgres; at CopyDone, or at
 * an ErrorResponse, it hands the socket back with the bytes it has not consumed, so that
 * node-postgres reads CommandComplete and ReadyForQuery (or the error) and calls
 * handleCommandComplete, handleReadyForQuery or handleError here.
 */
const COPY_DATA = 0x64;
const COPY_DONE = 0x63;
const ERROR_RESPONSE = 0x45;
/** Messages PostgreSQL may send between CopyData messages, which do not end the copy. */
const INTERSPERSED = new Set([0x48 /* CopyOutResponse */, 0x4e /* NoticeResponse */, 0x53 /* ParameterStatus */, 0x41 /* NotificationResponse */]);

/** What this stream uses of node-postgres's connection. */
interface PgConnection {
  stream: Readable;
  query(text: string): void;
}

/** unframeCopyData in TypeScript: the reference, and what runs without the addon. */
export function unframeCopyDataJs(buf: Buffer, pos: number, out: Buffer, at: number, state: Int32Array): void {
  while (pos + 5 <= buf.length && buf[pos] === COPY_DATA) {
    const n = buf.readUInt32BE(pos + 1);
    if (n < 4) throw new Error('unframeCopyData: a CopyData message shorter than its length field');
    if (pos + 1 + n > buf.length) break;
    if (at + n - 4 > out.length) throw new RangeError('unframeCopyData: out is too small');
    at += buf.copy(out, at, pos + 5, pos + 1 + n);
    pos += 1 + n;
  }
  state[0] = pos;
  state[1] = at;
}

export class CopyOut extends Readable {
  rowCount = 0;
  private connection: PgConnection | undefined;
  private pgHandler: ((b: Buffer) => void) | undefined;
  private rest: Buffer | null = null;
  private wanted = false;
  private forwarding = false;
  private finished = false;
  /** Destroyed before the copy ended: the rest of it is read and dropped, so that the connection can go on. */
  private discarding = false;
  private readonly state = new Int32Array(2);
  private readonly onReadable = () => this.forward();

  constructor(readonly text: string, private readonly unframe = nativeHash ? nativeHash.unframeCopyData : unframeCopyDataJs) {
    super();
  }

  /** Called by node-postgres when the query's turn comes. */
  submit(pgConnection: Connection): void {
    const connection = pgConnection as unknown as PgConnection;
    this.connection = connection;
    const s = connection.stream;
    const listeners = s.listeners('data') as Array<(b: Buffer) => void>;
    if (listeners.length !== 1) throw new Error(`COPY: the connection has ${listeners.length} data listeners, expected node-postgres's one`);
    this.pgHandler = listeners[0];
    s.removeListener('data', this.pgHandler!);
    s.pause();
    s.on('readable', this.onReadable);
    connection.query(this.text);
    this.forward();
  }

  override _read(): void {
    this.wanted = true;
    this.forward();
  }

  private forward(): void {
    if (this.forwarding || !(this.wanted || this.discarding) || !this.connection || this.finished) return;
    this.forwarding = true;
    let chunk: Buffer | null;
    while ((this.wanted || this.discarding) && !this.finished && (chunk = this.connection.stream.read() as Buffer | null) !== null) this.parse(chunk);
    this.forwarding = false;
  }

  private parse(chunk: Buffer): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    const out = Buffer.allocUnsafe(buf.length);
    let pos = 0;
    let at = 0;
    for (;;) {
      this.unframe(buf, pos, out, at, this.state);
      pos = this.state[0]!;
      at = this.state[1]!;
      if (pos + 5 > buf.length) break;
      const code = buf[pos]!;
      if (code === ERROR_RESPONSE) { // node-postgres parses it and calls handleError
        this.emitData(out, at);
        this.handBack(buf.subarray(pos));
        return;
      }
      const n = buf.readUInt32BE(pos + 1);
      if (code === COPY_DATA || pos + 1 + n > buf.length) break; // not whole yet
      pos += 1 + n;
      if (INTERSPERSED.has(code)) continue;
      // CopyDone (or anything else, which ends copy-out mode): the rest is node-postgres's
      this.emitData(out, at);
      this.handBack(buf.subarray(pos));
      if (code !== COPY_DONE) this.destroy(new Error(`COPY: unexpected message ${String.fromCharCode(code)} in copy-out mode`));
      else if (!this.destroyed) this.push(null);
      return;
    }
    this.emitData(out, at);
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
  }

  private emitData(out: Buffer, at: number): void {
    if (at > 0 && !this.discarding && !this.push(out.subarray(0, at))) this.wanted = false;
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.connection && !this.finished) {
      this.discarding = true;
      this.forward();
    }
    done(err);
  }

  /** Gives the socket back to node-postgres, with the bytes not consumed here. */
  private handBack(unread: Buffer): void {
    this.finished = true;
    const s = this.connection!.stream;
    s.removeListener('readable', this.onReadable);
    s.on('data', this.pgHandler!);
    this.pgHandler!(unread);
    process.nextTick(() => s.resume()); // after node-postgres's handler, which may pause it
  }

  handleError(err: Error): void {
    this.destroy(err);
  }

  handleCommandComplete(msg: { text?: string } | undefined): void {
    const m = /COPY (\d+)/.exec(msg?.text ?? '');
    if (m) this.rowCount = Number(m[1]);
  }

  handleReadyForQuery(): void {}
}
