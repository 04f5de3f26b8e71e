import { closeSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { destination, multistream, pino, type Level, type Logger } from 'pino';

export type { Logger };

const REDACT = { paths: ['url', '*.url', 'password', '*.password', 'token', '*.token', 'connectionString'], censor: '[redacted]' };

/**
 * Structured logs on stdout. Secrets are redacted wherever a URL or token could appear.
 * With `file`, every line is also kept in that file (rotated at `maxBytes` to `<file>.1`),
 * which is what `worker-sync collect logs` and the support bundle read inside a pod, where
 * stdout's history belongs to the container runtime.
 */
export function createLogger(level: string, name = 'worker-sync', file?: { path: string; maxBytes: number }): Logger {
  const opts = { name, level, base: { pid: process.pid }, redact: REDACT };
  if (!file || level === 'silent') return pino(opts);
  // synchronous on both sides, as pino's own stdout is: a fatal line is out before process.exit
  const stdout = destination({ dest: 1, sync: true });
  return pino(opts, multistream([{ level: level as Level, stream: stdout }, { level: level as Level, stream: new RotatingFile(file.path, file.maxBytes) }]));
}

/** An append-only log file kept under a size: past it, the file becomes `<file>.1` (one generation) and a new one starts. Writes are synchronous, like pino's stdout. */
class RotatingFile {
  private fd: number | undefined;
  private size = 0;

  constructor(private readonly file: string, private readonly maxBytes: number) {}

  write(line: string): void {
    try {
      if (this.fd === undefined) this.open();
      if (this.size + line.length > this.maxBytes) {
        closeSync(this.fd!);
        renameSync(this.file, `${this.file}.1`);
        this.open();
      }
      this.size += writeSync(this.fd!, line);
    } catch {
      // the file is a convenience: stdout keeps every line whatever happens to it
      this.fd = undefined;
    }
  }

  private open(): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    this.fd = openSync(this.file, 'a');
    this.size = statSync(this.file).size;
  }
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

/**
 * Text made safe to hand to someone else (logs, a support bundle): every given secret value,
 * the password of every URL, bearer tokens and PEM private keys are replaced.
 */
export function redactText(text: string, secrets: string[] = []): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('[redacted]');
  return out
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^:@/\s"']+:)([^@/\s"']+)@/gi, '$1***@')
    .replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/g, '$1[redacted]')
    .replace(/-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g, '[redacted private key]');
}
