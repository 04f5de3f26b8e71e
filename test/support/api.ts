import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { ROOT } from './stack.ts';
import { freePort, startWorker, type WorkerHandle } from './worker-process.ts';

export interface ApiWorker extends WorkerHandle {
  apiUrl: string;
  token: string;
  /** Calls the API with the worker's token (or `token`), returning status and parsed JSON. */
  api(method: 'GET' | 'POST', path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: Record<string, unknown> }>;
}

/** A worker with the API on a free port and a fresh bearer token. */
export async function startApiWorker(group: string, env: Record<string, string> = {}): Promise<ApiWorker> {
  const apiPort = await freePort();
  const token = `token-${Math.random().toString(36).slice(2)}`;
  const w = await startWorker(group, { API_TOKEN: token, API_PORT: String(apiPort), CONTROL_POLL_MS: '200', ...env });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  return {
    ...w, apiUrl, token,
    async api(method, p, body, tok = token) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (tok !== null) headers.authorization = `Bearer ${tok}`;
      const res = await fetch(`${apiUrl}${p}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await res.text();
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = { text };
      }
      return { status: res.status, body: parsed };
    },
  };
}

/** The demo topology with the customers entity under another policy, written to a temporary file. */
export function demoConfigWithPolicy(policy: string): string {
  const doc = parse(readFileSync(path.join(ROOT, 'deploy/local/worker-sync.yaml'), 'utf8')) as { entities: { customers: Record<string, unknown> } };
  doc.entities.customers.policy = policy;
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), `ws-${policy}-`)), 'worker-sync.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}
