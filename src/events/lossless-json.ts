/**
 * JSON.parse reads every number as a double, so an int64 beyond 2^53 — a bigint key, or
 * the microseconds of a timestamp after 2255 — arrives rounded. This parser first turns
 * integers of 16 digits or more outside strings into JSON strings, which the value
 * converters read exactly. It is a JavaScript loop over the text, and every Debezium 3
 * envelope holds such digits (ts_us, ts_ns), so the decoder uses it only for a message
 * whose native parse lost precision in a column that needs it (values.PrecisionLost).
 */
const LONG_DIGITS = /\d{16,}/; // nothing to protect without such a run: parse natively

export function parseJsonLossless(text: string): unknown {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  let out = '';
  let last = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + (c === 0x2d ? 1 : 0);
      while (j < text.length && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x39) j++;
      const next = text.charCodeAt(j);
      const isInteger = next !== 0x2e && next !== 0x65 && next !== 0x45; // no '.', 'e', 'E'
      const digits = j - i - (c === 0x2d ? 1 : 0);
      if (isInteger && digits >= 16) {
        out += `${text.slice(last, i)}"${text.slice(i, j)}"`;
        last = j;
      }
      i = j - 1;
    }
  }
  return JSON.parse(out + text.slice(last));
}
