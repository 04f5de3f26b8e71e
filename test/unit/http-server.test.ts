import { afterEach, describe, expect, it } from 'vitest';
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
      ], log, { forceNode });
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
