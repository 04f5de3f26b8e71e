import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import { json, startHttpServer, type RunningServer } from '../../src/http/server.ts';

const log = pino({ level: 'silent' });
let server: RunningServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

for (const forceNode of [false, true]) {
  describe(`HTTP surface on ${forceNode ? 'node:http (the fallback)' : 'uWebSockets.js'}`, () => {
    it('routes GET and POST, answers 404 and 405, and turns a throwing handler into 500', async () => {
      server = await startHttpServer('127.0.0.1', 0, [
        { method: 'GET', path: '/health', handler: () => json(200, { status: 'ok' }) },
        { method: 'POST', path: '/echo', handler: (req) => json(200, { got: JSON.parse(req.body.toString()), q: req.query.get('x'), auth: req.headers.authorization }) },
        { method: 'GET', path: '/boom', handler: () => { throw new Error('kaput'); } },
      ], log, { engine: forceNode ? 'node' : 'uws' });
      expect(server.engine).toBe(forceNode ? 'node:http' : 'uWebSockets.js');
      const base = `http://127.0.0.1:${server.port}`;
      const health = await fetch(`${base}/health`);
      expect(health.status).toBe(200);
      expect(health.headers.get('content-type')).toBe('application/json');
      expect(await health.json()).toEqual({ status: 'ok' });
      const echo = await fetch(`${base}/echo?x=1`, { method: 'POST', body: JSON.stringify({ a: 'ñ' }), headers: { authorization: 'Bearer t' } });
      expect(await echo.json()).toEqual({ got: { a: 'ñ' }, q: '1', auth: 'Bearer t' });
      expect((await fetch(`${base}/nope`)).status).toBe(404);
      expect((await fetch(`${base}/echo`)).status).toBe(405);
      const boom = await fetch(`${base}/boom`);
      expect(boom.status).toBe(500);
      expect(await boom.json()).toEqual({ error: 'internal error' });
    });
  });
}

/** Writes raw bytes to the server and collects what comes back until it closes the connection or `waitMs` passes. */
function raw(port: number, chunks: Array<string | Buffer>, opts: { waitMs?: number; gapMs?: number } = {}): Promise<{ status: number | null; text: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    const finish = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : null, text, closed, ms: Date.now() - started });
      sock.destroy();
    };
    const timer = setTimeout(finish, opts.waitMs ?? 3000);
    sock.on('data', (d) => { text += d.toString('latin1'); });
    sock.on('error', () => undefined);
    sock.on('close', () => { closed = true; clearTimeout(timer); finish(); });
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (sock.destroyed) break;
        sock.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    });
  });
}

for (const engine of ['uws', 'node'] as const) {
  describe(`HTTP_ENGINE=${engine} against hostile clients (issue 12, defect 3)`, () => {
    let calls = 0;
    const start = () => startHttpServer('127.0.0.1', 0, [
      { method: 'GET', path: '/health', handler: () => json(200, { status: 'ok' }) },
      { method: 'POST', path: '/echo', handler: (req) => { calls++; return json(200, { bytes: req.body.length }); } },
    ], log, { engine, limits: { maxBodyBytes: 1000, maxUrlBytes: 256, headersTimeoutMs: 400, requestTimeoutMs: 600 } });
    const healthy = async () => (await fetch(`http://127.0.0.1:${server!.port}/health`)).status;

    it('answers a malformed request line with 400 and keeps serving', async () => {
      server = await start();
      for (const line of ['GET http://[ HTTP/1.1', 'GET /health HTTP/9.9', '\u0000\u0001\u0002 garbage', 'GET  HTTP/1.1']) {
        const r = await raw(server.port, [`${line}\r\nhost: x\r\n\r\n`], { waitMs: 1000 });
        // node:http answers 400; uWebSockets.js answers 400, closes, or leaves an absolute-form
        // target unanswered until its idle timeout. Never a handler's answer.
        if (engine === 'node') expect(r.status, `${line}: ${r.text.slice(0, 60)}`).toBe(400);
        else expect(r.status === null || r.status >= 400, `${line}: ${r.text.slice(0, 60)}`).toBe(true);
        expect(await healthy()).toBe(200);
      }
    });

    it('refuses an over-long request target with 414 and over-long headers with 431', async () => {
      server = await start();
      expect((await raw(server.port, [`GET /health?x=${'a'.repeat(300)} HTTP/1.1\r\nhost: x\r\n\r\n`])).status).toBe(414);
      const big = await raw(server.port, [`GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'b'.repeat(40_000)}\r\n\r\n`]);
      expect(big.status, big.text.slice(0, 60)).toBe(431);
      expect(await healthy()).toBe(200);
    });

    it('refuses a body over the cap with 413 before reading it, and before the handler (and its auth) runs', async () => {
      server = await start();
      calls = 0;
      // the length is declared, the body never sent: the answer must not wait for it
      const declared = await raw(server.port, ['POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 50000000\r\n\r\n'], { waitMs: 2000 });
      expect(declared.status).toBe(413);
      expect(declared.ms).toBeLessThan(1500);
      const chunk = `${(600).toString(16)}\r\n${'c'.repeat(600)}\r\n`;
      const chunked = await raw(server.port, ['POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n', chunk, chunk, chunk], { gapMs: 20 });
      expect(chunked.status).toBe(413);
      expect(calls).toBe(0);
      const ok = await fetch(`http://127.0.0.1:${server.port}/echo`, { method: 'POST', body: 'x'.repeat(1000) });
      expect(await ok.json()).toEqual({ bytes: 1000 });
      expect(calls).toBe(1);
    });

    it('cuts off a client that sends its body too slowly (408), and keeps serving others', async () => {
      server = await start();
      const slow = raw(server.port, ['POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'], { gapMs: 150, waitMs: 4000 });
      expect(await healthy()).toBe(200);
      const r = await slow;
      expect(r.status === 408 || (r.status === null && r.closed), r.text.slice(0, 60)).toBe(true);
      expect(r.ms).toBeLessThan(3000);
      expect(await healthy()).toBe(200);
    });

    it('closes a connection whose headers never complete', async () => {
      server = await start();
      // node:http applies headersTimeoutMs; uWebSockets.js its own 10 s idle timeout
      const r = await raw(server.port, ['GET /health HTTP/1.1\r\nhost: x\r\n'], { waitMs: 15_000 });
      expect(r.closed).toBe(true);
      expect(r.ms).toBeLessThan(engine === 'node' ? 3000 : 14_000);
      expect(await healthy()).toBe(200);
    }, 20_000);
  });
}

describe('the API over TLS (API_TLS_CERT_FILE, API_TLS_KEY_FILE; issue 14)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-tls-'));
  const certFile = path.join(dir, 'tls.crt');
  const keyFile = path.join(dir, 'tls.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const get = (port: number, scheme: 'http' | 'https') => new Promise<number>((resolve, reject) => {
    const req = (scheme === 'https' ? https : http).get({ host: '127.0.0.1', port, path: '/health', ca: readFileSync(certFile) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
  });
  for (const engine of ['uws', 'node'] as const) {
    it(`serves HTTPS with the given certificate on ${engine}, and no plain HTTP`, async () => {
      server = await startHttpServer('127.0.0.1', 0, [{ method: 'GET', path: '/health', handler: () => json(200, { status: 'ok' }) }], log, { engine, tls: { certFile, keyFile } });
      expect(server.tls).toBe(true);
      expect(await get(server.port, 'https')).toBe(200); // verified against the certificate as its own CA
      await expect(get(server.port, 'http')).rejects.toThrow();
    });
  }
});
