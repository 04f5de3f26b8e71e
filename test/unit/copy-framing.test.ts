import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Connection } from 'pg';
import { CopyOut, unframeCopyDataJs, type CopySink } from '../../src/audit/copy-out.ts';
import { nativeHash } from '../../src/audit/native-hash.ts';

/**
 * CopyOut's framing wherever the socket's reads end: a CopyData message cut in its header,
 * in its payload, or spanning several reads, with the sink holding the reading or not. The
 * bytes are the protocol's own (CopyOutResponse, CopyData, a NoticeResponse, CopyDone,
 * CommandComplete, ReadyForQuery), fed in reads of chosen sizes; the integration test
 * (copy-out.test.ts) runs the same reader on the real server, whose read boundaries are not
 * chosen.
 */
function message(code: string, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = code.charCodeAt(0);
  head.writeUInt32BE(payload.length + 4, 1);
  return Buffer.concat([head, payload]);
}

const payloads = Array.from({ length: 60 }, (_, i) => randomBytes((i * 37) % 300));
const wire = Buffer.concat([
  message('H', Buffer.from([1, 0, 0])),
  ...payloads.flatMap((p, i) => (i === 30 ? [message('N', Buffer.from('Snotice\0\0')), message('d', p)] : [message('d', p)])),
  message('c', Buffer.alloc(0)),
  message('C', Buffer.from('COPY 60\0')),
  message('Z', Buffer.from('I')),
]);
const tail = wire.subarray(wire.length - 6 - 13); // CommandComplete and ReadyForQuery: node-postgres's

class Sink implements CopySink {
  private buf = Buffer.alloc(0);
  private parts: Buffer[] = [];
  ended = false;
  writes = 0;
  constructor(private readonly holdEvery: number) {}
  room(n: number) {
    if (this.buf.length < n) this.buf = Buffer.alloc(n);
    return { buf: this.buf, at: 0 };
  }
  wrote(end: number): Promise<void> | void {
    this.parts.push(Buffer.from(this.buf.subarray(0, end)));
    if (this.holdEvery > 0 && ++this.writes % this.holdEvery === 0) return new Promise((r) => setImmediate(r));
  }
  end() {
    this.ended = true;
  }
  bytes() {
    return Buffer.concat(this.parts);
  }
}

/** Feeds `wire` to a CopyOut in reads of the given sizes; resolves with the sink and what was handed back to "node-postgres". */
async function feed(sizes: (i: number) => number, holdEvery: number, unframe: typeof unframeCopyDataJs) {
  const sink = new Sink(holdEvery);
  const copy = new CopyOut('COPY x TO STDOUT', sink, unframe);
  const stream = new Readable({ read() {} });
  const handedBack: Buffer[] = [];
  stream.on('data', (b: Buffer) => handedBack.push(b));
  const connection = { stream, query: () => undefined } as unknown as Connection;
  expect(copy.submit(connection)).toBeUndefined();
  for (let at = 0, i = 0; at < wire.length; i++) {
    const n = Math.max(1, sizes(i));
    stream.push(wire.subarray(at, at + n));
    at += n;
    await new Promise((r) => setImmediate(r));
  }
  for (let i = 0; i < 50 && Buffer.concat(handedBack).length < tail.length; i++) await new Promise((r) => setImmediate(r));
  return { sink, handedBack: Buffer.concat(handedBack) };
}

describe('CopyOut framing', () => {
  const unframes = nativeHash ? [['native', nativeHash.unframeCopyData], ['TypeScript', unframeCopyDataJs]] as const : [['TypeScript', unframeCopyDataJs]] as const;
  for (const [name, unframe] of unframes) {
    it(`gives the sink exactly the payloads for reads of every size from 1 to 40 bytes, holding or not (${name})`, async () => {
      const want = Buffer.concat(payloads);
      for (let size = 1; size <= 40; size++) {
        for (const holdEvery of [0, 3]) {
          const { sink, handedBack } = await feed(() => size, holdEvery, unframe);
          expect(sink.ended, `size ${size}`).toBe(true);
          expect(sink.bytes().equals(want), `size ${size}, hold every ${holdEvery}`).toBe(true);
          expect(handedBack.equals(tail), `size ${size}`).toBe(true);
        }
      }
    });

    it(`does so for reads of irregular sizes, up to several messages a read (${name})`, async () => {
      const want = Buffer.concat(payloads);
      for (let seed = 1; seed <= 30; seed++) {
        const { sink, handedBack } = await feed((i) => ((i + 1) * seed * 7919) % 900, seed % 2 === 0 ? 2 : 0, unframe);
        expect(sink.bytes().equals(want), `seed ${seed}`).toBe(true);
        expect(handedBack.equals(tail)).toBe(true);
      }
    });
  }
});
