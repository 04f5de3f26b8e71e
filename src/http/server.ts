import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
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
  /** Serving HTTPS (a certificate and key were given). */
  tls: boolean;
  close(): Promise<void>;
}

/**
 * What a client may send before it is refused (DESIGN §9: both engines survive malformed
 * requests and refuse oversized ones before reading them):
 * - a body over `maxBodyBytes` gets 413 as soon as its length is known (Content-Length) or
 *   exceeded (chunked), before the handler, and so before auth, sees any of it;
 * - a request target over `maxUrlBytes` gets 414; headers over `maxHeaderBytes` get 431;
 * - a request line neither engine can parse gets 400 from node:http; uWebSockets.js leaves
 *   an absolute-form target (`GET http://[ HTTP/1.1`) unanswered until its idle timeout
 *   closes the connection. Neither engine calls a handler for it;
 * - a client that has not sent its headers within `headersTimeoutMs`, or its whole request
 *   within `requestTimeoutMs`, is cut off (408). uWebSockets.js applies its own 10 s idle
 *   timeout to headers.
 */
export interface HttpLimits {
  maxBodyBytes: number;
  maxUrlBytes: number;
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: HttpLimits = {
  maxBodyBytes: 1 << 20,
  maxUrlBytes: 2048,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
};

/** `HTTP_ENGINE`: uWebSockets.js, node:http, or (unset) uWebSockets.js where its binary loads and node:http elsewhere. */
export type HttpEngine = 'auto' | 'uws' | 'node';

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content', 400: '400 Bad Request',
  401: '401 Unauthorized', 404: '404 Not Found', 405: '405 Method Not Allowed', 408: '408 Request Timeout', 409: '409 Conflict',
  413: '413 Payload Too Large', 414: '414 URI Too Long', 431: '431 Request Header Fields Too Large', 500: '500 Internal Server Error',
  503: '503 Service Unavailable',
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

/** PEM files of a server certificate (with its chain) and its private key. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export async function startHttpServer(host: string, port: number, routes: Route[], log: Logger, opts: { engine?: HttpEngine; limits?: Partial<HttpLimits>; tls?: TlsFiles } = {}): Promise<RunningServer> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const engine = opts.engine ?? 'auto';
  if (engine !== 'node') {
    try {
      return await startUws(host, port, routes, log, limits, opts.tls);
    } catch (err) {
      if (engine === 'uws') throw new Error(`HTTP_ENGINE=uws: uWebSockets.js cannot start: ${(err as Error).message}`);
      log.warn({ err: (err as Error).message }, 'uWebSockets.js could not start; falling back to node:http');
    }
  }
  return startNodeHttp(host, port, routes, log, limits, opts.tls);
}

/* The subset of the uWebSockets.js API used here. */
interface UwsResponse {
  onAborted(cb: () => void): UwsResponse;
  onData(cb: (chunk: ArrayBuffer, isLast: boolean) => void): UwsResponse;
  cork(cb: () => void): UwsResponse;
  writeStatus(s: string): UwsResponse;
  writeHeader(k: string, v: string): UwsResponse;
  end(body?: string | Buffer, closeConnection?: boolean): UwsResponse;
}
interface UwsRequest {
  getMethod(): string;
  getUrl(): string;
  getQuery(): string | undefined;
  getHeader(name: string): string;
  forEach(cb: (k: string, v: string) => void): void;
}
interface UwsApp {
  any(pattern: string, handler: (res: UwsResponse, req: UwsRequest) => void): UwsApp;
  listen(host: string, port: number, cb: (socket: unknown) => void): UwsApp;
}
interface UwsModule {
  App(): UwsApp;
  SSLApp(options: { cert_file_name: string; key_file_name: string }): UwsApp;
  us_listen_socket_close(socket: unknown): void;
  us_socket_local_port(socket: unknown): number;
}

/** The refusal for a request line or header block the server will not serve, or undefined. */
function refuseHead(target: string, contentLength: string | undefined, limits: HttpLimits): HttpResponse | undefined {
  if (Buffer.byteLength(target) > limits.maxUrlBytes) return json(414, { error: `request target longer than ${limits.maxUrlBytes} bytes` });
  if (contentLength !== undefined && contentLength !== '') {
    if (!/^\d+$/.test(contentLength)) return json(400, { error: 'malformed content-length' });
    if (Number(contentLength) > limits.maxBodyBytes) return json(413, { error: `body larger than ${limits.maxBodyBytes} bytes` });
  }
  return undefined;
}

const tooLarge = (limits: HttpLimits) => json(413, { error: `body larger than ${limits.maxBodyBytes} bytes` });

function startUws(host: string, port: number, routes: Route[], log: Logger, limits: HttpLimits, tls: TlsFiles | undefined): Promise<RunningServer> {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as UwsModule;
  const app = tls ? uws.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uws.App();
  app.any('/*', (res, req) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    res.onAborted(() => {
      done = true;
      if (timer) clearTimeout(timer);
    });
    // answer once; a refusal closes the connection, so an unread body is never read
    const send = (r: HttpResponse, close = false) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[r.status] ?? String(r.status));
        res.writeHeader('content-type', r.contentType ?? 'text/plain; charset=utf-8');
        res.end(r.body, close);
      });
    };
    try {
      const method = req.getMethod().toUpperCase();
      const path = req.getUrl();
      const rawQuery = req.getQuery() ?? '';
      const refused = refuseHead(rawQuery === '' ? path : `${path}?${rawQuery}`, req.getHeader('content-length'), limits);
      if (refused) {
        send(refused, true);
        return;
      }
      const headers: Record<string, string> = {};
      let headerBytes = 0;
      req.forEach((k, v) => {
        headers[k] = v;
        headerBytes += k.length + v.length + 4;
      });
      if (headerBytes > limits.maxHeaderBytes) {
        send(json(431, { error: `headers larger than ${limits.maxHeaderBytes} bytes` }), true);
        return;
      }
      const query = new URLSearchParams(rawQuery);
      if (method === 'GET' || method === 'HEAD') {
        void dispatch(routes, { method, path, query, headers, body: Buffer.alloc(0) }, log).then((r) => send(r));
        return;
      }
      timer = setTimeout(() => send(json(408, { error: `request not complete within ${limits.requestTimeoutMs} ms` }), true), limits.requestTimeoutMs);
      const chunks: Buffer[] = [];
      let size = 0;
      res.onData((chunk, isLast) => {
        if (done) return;
        size += chunk.byteLength;
        if (size > limits.maxBodyBytes) {
          send(tooLarge(limits), true);
          return;
        }
        chunks.push(Buffer.from(chunk.slice(0)));
        if (!isLast) return;
        if (timer) clearTimeout(timer);
        void dispatch(routes, { method, path, query, headers, body: Buffer.concat(chunks) }, log).then((r) => send(r));
      });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'HTTP request refused');
      send(json(400, { error: 'malformed request' }), true);
    }
  });
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) {
        reject(new Error(`cannot listen on ${host}:${port}`));
        return;
      }
      resolve({
        engine: 'uWebSockets.js',
        tls: tls !== undefined,
        port: uws.us_socket_local_port(socket),
        close: async () => uws.us_listen_socket_close(socket),
      });
    });
  });
}

function startNodeHttp(host: string, port: number, routes: Route[], log: Logger, limits: HttpLimits, tls: TlsFiles | undefined): Promise<RunningServer> {
  const create = (tls ? https.createServer : http.createServer) as typeof http.createServer;
  const server = create({
    ...(tls ? { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } : {}),
    // Node answers 431 past maxHeaderSize, 400 to a request line it cannot parse, and 408
    // past the timeouts, checked every connectionsCheckingInterval
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)),
  }, (req, res) => {
    let done = false;
    const send = (r: HttpResponse, close = false) => {
      if (done || res.writableEnded) return;
      done = true;
      const headers: Record<string, string> = { 'content-type': r.contentType ?? 'text/plain; charset=utf-8' };
      if (close) headers.connection = 'close';
      res.writeHead(r.status, headers);
      res.end(r.body);
      // an unread body is not read to the end: the connection goes
      if (close) res.once('finish', () => req.destroy());
    };
    try {
      const target = req.url ?? '/';
      const refused = refuseHead(target, req.headers['content-length'], limits);
      if (refused) {
        send(refused, true);
        return;
      }
      let url: URL;
      try {
        url = new URL(target, 'http://x');
      } catch {
        send(json(400, { error: 'malformed request target' }), true);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('error', () => undefined); // a client that goes away mid-body
      req.on('data', (c: Buffer) => {
        if (done) return;
        size += c.length;
        if (size > limits.maxBodyBytes) {
          send(tooLarge(limits), true);
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (done) return;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        void dispatch(routes, { method: (req.method ?? 'GET').toUpperCase(), path: url.pathname, query: url.searchParams, headers, body: Buffer.concat(chunks) }, log).then((r) => send(r));
      });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'HTTP request refused');
      send(json(400, { error: 'malformed request' }), true);
    }
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Node's own answers, made explicit: they must never reach an uncaught handler
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    // a keep-alive connection with a response in flight: a raw answer would be taken for that one's
    if (err.code === 'ECONNRESET' || !socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    socket.end(`HTTP/1.1 ${STATUS_TEXT[code]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        engine: 'node:http',
        tls: tls !== undefined,
        port: typeof addr === 'object' && addr ? addr.port : port,
        close: () => new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
      });
    });
  });
}
