import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured logs on stdout. Secrets are redacted wherever a URL or token could appear. */
export function createLogger(level: string, name = 'worker-sync'): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: ['url', '*.url', 'password', '*.password', 'token', '*.token', 'connectionString'], censor: '[redacted]' },
  });
}

/** A URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
