/**
 * Encoder for PostgreSQL's COPY text format: one line per row, tab between columns,
 * `\N` for NULL, and backslash escapes for backslash, newline, carriage return and tab.
 * One growing string per batch; the caller writes it to the COPY stream in one piece.
 */
const NEEDS_ESCAPE = /[\\\n\r\t]/;

export function copyEscape(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

export type CopyValue = string | number | bigint | null | undefined | Buffer | string[];

export function copyField(v: CopyValue): string {
  if (v === null || v === undefined) return '\\N';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return `\\\\x${v.toString('hex')}`;
  if (Array.isArray(v)) {
    // text[] literal; elements are double-quoted so any text survives.
    return copyEscape(`{${v.map((e) => `"${e.replace(/(["\\])/g, '\\$1')}"`).join(',')}}`);
  }
  return copyEscape(v);
}

export function copyLine(values: CopyValue[]): string {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) line += '\t';
    line += copyField(values[i]);
  }
  return `${line}\n`;
}
