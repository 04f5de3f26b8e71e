import http from 'node:http';
import { createRequire } from 'node:module';
import type { Logger } from '../log.ts';

/**
 * A small HTTP front used for the operating surface (port 3003) and the API (3001).
 * It runs on uWebSockets.js where its binary loads, and on node:http otherwise; the
 * routes are the same either way. uWebSockets.js is loaded here and nowhere else.
 */
export interface HttpRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: Buffer;
  /** Values of the route's `:name` segments. */
  params?: Record<string, string>;
}

export interface HttpResponse {
  status: number;
  body: string | Buffer;
  contentType?: string;
}

export type Handler = (req: HttpRequest) => Promise<HttpResponse> | HttpResponse;

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  handler: Handler;
}

export interface RunningServer {
  engine: 'uWebSockets.js' | 'node:http';
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;
const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content', 400: '400 Bad Request',
  401: '401 Unauthorized', 404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict',
  413: '413 Payload Too Large', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

export function json(status: number, value: unknown): HttpResponse {
  return { status, body: JSON.stringify(value), contentType: 'application/json' };
}

/** A route path's `:name` segments match one segment each; the rest must match exactly. */
function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  if (!pattern.includes(':')) return pattern === path ? {} : undefined;
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i]!.startsWith(':') && got[i] !== '') params[want[i]!.slice(1)] = decodeURIComponent(got[i]!);
    else if (want[i] !== got[i]) return undefined;
  }
  return params;
}

function matchRoute(routes: Route[], method: string, path: string): { route: Route | undefined; params: Record<string, string>; pathKnown: boolean } {
  let pathKnown = false;
  for (const r of routes) {
    const params = matchPath(r.path, path);
    if (params) {
      pathKnown = true;
      if (r.method === method) return { route: r, params, pathKnown };
    }
  }
  return { route: undefined, params: {}, pathKnown };
}

async function dispatch(routes: Route[], req: HttpRequest, log: Logger): Promise<HttpResponse> {
  let route: Route | undefined;
  let params: Record<string, string> = {};
  let pathKnown = false;
  try {
    ({ route, params, pathKnown } = matchRoute(routes, req.method, req.path));
  } catch {
    return json(400, { error: 'malformed path' }); // a bad %-escape
  }
  if (!route) return json(pathKnown ? 405 : 404, { error: pathKnown ? 'method not allowed' : 'not found' });
  try {
    return await route.handler({ ...req, params });
  } catch (err) {
    log.error({ err: (err as Error).message, path: req.path }, 'HTTP handler failed');
    return json(500, { error: 'internal error' });
  }
}

export async function startHttpServer(host: string, port: number, routes: Route[], log: Logger, opts: { forceNode?: boolean } = {}): Promise<RunningServer> {
  if (!opts.forceNode) {
    try {
      return await startUws(host, port, routes, log);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'uWebSockets.js could not start; falling back to node:http');
    }
  }
  return startNodeHttp(host, port, routes, log);
}

/* The subset of the uWebSockets.js API used here. */
interface UwsResponse {
  onAborted(cb: () => void): UwsResponse;
  onData(cb: (chunk: ArrayBuffer, isLast: boolean) => void): UwsResponse;
  cork(cb: () => void): UwsResponse;
  writeStatus(s: string): UwsResponse;
  writeHeader(k: string, v: string): UwsResponse;
  end(body?: string | Buffer): UwsResponse;
}
interface UwsRequest {
  getMethod(): string;
  getUrl(): string;
  getQuery(): string | undefined;
  forEach(cb: (k: string, v: string) => void): void;
}
interface UwsApp {
  any(pattern: string, handler: (res: UwsResponse, req: UwsRequest) => void): UwsApp;
  listen(host: string, port: number, cb: (socket: unknown) => void): UwsApp;
}
interface UwsModule {
  App(): UwsApp;
  us_listen_socket_close(socket: unknown): void;
  us_socket_local_port(socket: unknown): number;
}

function startUws(host: string, port: number, routes: Route[], log: Logger): Promise<RunningServer> {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as UwsModule;
  const app = uws.App();
  app.any('/*', (res, req) => {
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const headers: Record<string, string> = {};
    req.forEach((k, v) => { headers[k] = v; });
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const chunks: Buffer[] = [];
    let size = 0;
    const send = (r: HttpResponse) => {
      if (aborted) return;
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[r.status] ?? String(r.status));
        res.writeHeader('content-type', r.contentType ?? 'text/plain; charset=utf-8');
        res.end(r.body);
      });
    };
    if (method === 'GET' || method === 'HEAD') {
      void dispatch(routes, { method, path, query, headers, body: Buffer.alloc(0) }, log).then(send);
      return;
    }
    res.onData((chunk, isLast) => {
      size += chunk.byteLength;
      if (size <= MAX_BODY) chunks.push(Buffer.from(chunk.slice(0)));
      if (!isLast) return;
      if (size > MAX_BODY) {
        send(json(413, { error: 'body too large' }));
        return;
      }
      void dispatch(routes, { method, path, query, headers, body: Buffer.concat(chunks) }, log).then(send);
    });
  });
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) {
        reject(new Error(`cannot listen on ${host}:${port}`));
        return;
      }
      resolve({
        engine: 'uWebSockets.js',
        port: uws.us_socket_local_port(socket),
        close: async () => uws.us_listen_socket_close(socket),
      });
    });
  });
}

function startNodeHttp(host: string, port: number, routes: Route[], log: Logger): Promise<RunningServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      const send = (r: HttpResponse) => {
        res.writeHead(r.status, { 'content-type': r.contentType ?? 'text/plain; charset=utf-8' });
        res.end(r.body);
      };
      if (size > MAX_BODY) {
        send(json(413, { error: 'body too large' }));
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      void dispatch(routes, { method: (req.method ?? 'GET').toUpperCase(), path: url.pathname, query: url.searchParams, headers, body: Buffer.concat(chunks) }, log).then(send);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        engine: 'node:http',
        port: typeof addr === 'object' && addr ? addr.port : port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
