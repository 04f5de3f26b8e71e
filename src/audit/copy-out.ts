import type { Readable } from 'node:stream';
import type { Connection } from 'pg';
import { nativeHash } from './native-hash.ts';

/**
 * `COPY … TO STDOUT` for the verifier, which reads every row of a log (DESIGN §7), with no
 * allocation per socket read. pg-copy-streams does the same job with a JavaScript parse of
 * every CopyData message (one per row), a Buffer for each and a stream hop; here one native
 * call per socket read (native/hash.cc, unframeCopyData) copies the payloads of all its whole
 * CopyData messages straight into the consumer's buffer (a CopySink). Without the addon the
 * same loop runs in TypeScript.
 *
 * The protocol, as pg-copy-streams handles it (its `to` stream is the model): once the query
 * is sent, this takes the connection's socket from node-postgres; at CopyDone, or at an
 * ErrorResponse, it hands the socket back with the bytes it has not consumed, so that
 * node-postgres reads CommandComplete and ReadyForQuery (or the error) and calls
 * handleCommandComplete, handleReadyForQuery or handleError here. `done` settles at
 * ReadyForQuery, when the connection is free again.
 */
const COPY_DATA = 0x64;
const COPY_DONE = 0x63;
const ERROR_RESPONSE = 0x45;
/** Messages PostgreSQL may send between CopyData messages, which do not end the copy. */
const INTERSPERSED = new Set([0x48 /* CopyOutResponse */, 0x4e /* NoticeResponse */, 0x53 /* ParameterStatus */, 0x41 /* NotificationResponse */]);

/** Where the copy's bytes go. */
export interface CopySink {
  /** A buffer with room for at least `n` more bytes from offset `at` on. */
  room(n: number): { buf: Buffer; at: number };
  /** The bytes up to `end` of the buffer room() gave are written. A promise it returns holds the reading until it settles; a throw or a rejection ends the copy with that error. */
  wrote(end: number): Promise<void> | void;
  /** The copy ended (CopyDone): a throw fails it (a stream cut short). */
  end(): void;
}

/** What this reader uses of node-postgres's connection. */
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

export class CopyOut {
  /** Settles when node-postgres has the connection back: rejected with the server's error, or the sink's. */
  readonly done: Promise<void>;
  private connection: PgConnection | undefined;
  private pgHandler: ((b: Buffer) => void) | undefined;
  private rest: Buffer | null = null;
  private held = false;
  /** `rest` holds whole messages still to parse (the sink held the reading in the middle of a read). */
  private again = false;
  /** Payload bytes still to come of a CopyData message a read ended in (its first part is the sink's already). */
  private pending = 0;
  private forwarding = false;
  private finished = false;
  private failure: Error | undefined;
  private settle!: (err?: Error) => void;
  private readonly state = new Int32Array(2);
  private readonly onReadable = () => this.forward();

  constructor(readonly text: string, private readonly sink: CopySink, private readonly unframe = nativeHash ? nativeHash.unframeCopyData : unframeCopyDataJs) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve());
    });
  }

  /** Called by node-postgres when the query's turn comes; an Error it returns fails the query (node-postgres's convention). */
  submit(pgConnection: Connection): Error | undefined {
    const connection = pgConnection as unknown as PgConnection;
    const s = connection.stream;
    const listeners = s.listeners('data') as Array<(b: Buffer) => void>;
    if (listeners.length !== 1) return new Error(`COPY: the connection has ${listeners.length} data listeners, expected node-postgres's one`);
    this.connection = connection;
    this.pgHandler = listeners[0];
    s.removeListener('data', this.pgHandler!);
    s.pause();
    s.on('readable', this.onReadable);
    connection.query(this.text);
    this.forward();
    return undefined;
  }

  private forward(): void {
    if (this.forwarding || !this.connection || this.finished) return;
    this.forwarding = true;
    while (!this.held && !this.finished) {
      if (this.again) {
        this.again = false;
        this.parse(EMPTY);
        continue;
      }
      const chunk = this.connection.stream.read() as Buffer | null;
      if (chunk === null) break;
      this.parse(chunk);
    }
    this.forwarding = false;
  }

  private parse(chunk: Buffer): void {
    // a held read's remainder goes on as it is; only a tail too short to frame (part of a
    // message header, or of a message other than CopyData) is joined with the next read
    let buf = chunk;
    if (this.rest) {
      buf = chunk.length === 0 ? this.rest : Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    let pos = 0;
    if (this.pending > 0 && buf.length > 0) { // the rest of a CopyData message the last read began
      pos = Math.min(this.pending, buf.length);
      this.pending -= pos;
      if (!this.failure) {
        const { buf: out, at } = this.sink.room(pos);
        buf.copy(out, at, 0, pos);
        this.toSink(at + pos);
      }
      if (this.held) {
        this.hold(buf, pos);
        return;
      }
    }
    for (;;) {
      if (buf[pos] === COPY_DATA) {
        const { buf: out, at } = this.failure ? { buf: discardRoom(buf.length), at: 0 } : this.sink.room(buf.length - pos);
        this.unframe(buf, pos, out, at, this.state);
        pos = this.state[0]!;
        let end = this.state[1]!;
        if (buf[pos] === COPY_DATA && pos + 5 <= buf.length) {
          // a CopyData message the read cut: its payload so far goes to the sink now, the
          // rest from the next read (a join of the two reads would copy the whole next one)
          const n = buf.readUInt32BE(pos + 1);
          if (n < 4) throw new Error('unframeCopyData: a CopyData message shorter than its length field');
          const have = buf.length - pos - 5;
          end += buf.copy(out, end, pos + 5);
          this.pending = n - 4 - have;
          pos = buf.length;
        }
        if (!this.failure) this.toSink(end);
        if (this.held) { // the sink has all it can take: the rest waits for it
          this.hold(buf, pos);
          return;
        }
      }
      if (pos + 5 > buf.length) break;
      const code = buf[pos]!;
      if (code === ERROR_RESPONSE) { // node-postgres parses it and calls handleError
        this.handBack(buf.subarray(pos));
        return;
      }
      const n = buf.readUInt32BE(pos + 1);
      if (code === COPY_DATA || pos + 1 + n > buf.length) break; // not whole yet
      pos += 1 + n;
      if (INTERSPERSED.has(code)) continue;
      // CopyDone (or anything else, which ends copy-out mode): the rest is node-postgres's
      if (code !== COPY_DONE) this.fail(new Error(`COPY: unexpected message ${String.fromCharCode(code)} in copy-out mode`));
      else if (!this.failure) {
        try {
          this.sink.end();
        } catch (err) {
          this.fail(err as Error);
        }
      }
      this.handBack(buf.subarray(pos));
      return;
    }
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
  }

  /** Keeps what is left of buf from pos for when the sink lets go. */
  private hold(buf: Buffer, pos: number): void {
    this.rest = pos < buf.length ? buf.subarray(pos) : null;
    this.again = this.rest !== null;
  }

  private toSink(end: number): void {
    let wait: Promise<void> | void;
    try {
      wait = this.sink.wrote(end);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (wait) {
      this.held = true;
      wait.then(() => {
        this.held = false;
        this.forward();
      }, (err: unknown) => {
        this.fail(err as Error);
        this.held = false;
        this.forward();
      });
    }
  }

  /** The sink's failure: the rest of the copy is read and dropped, so that the connection can go on. */
  private fail(err: Error): void {
    this.failure ??= err;
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
    this.failure = err; // the server's error comes first
    this.settle(err);
  }

  /** node-postgres calls it with `COPY n`; the sink counted the rows itself. */
  handleCommandComplete(): void {}

  handleReadyForQuery(): void {
    this.settle(this.failure);
  }
}

const EMPTY = Buffer.alloc(0);

/** Scratch space for the payloads of a copy whose sink failed. */
let discard = Buffer.alloc(0);

function discardRoom(n: number): Buffer {
  if (discard.length < n) discard = Buffer.allocUnsafe(n);
  return discard;
}
