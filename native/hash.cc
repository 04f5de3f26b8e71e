// SHA-256 in batches for the audit log's verifier and Merkle tree (src/audit/native-hash.ts),
// over the OpenSSL that Node.js itself carries and exports: one call hashes every row of a
// COPY chunk, where node:crypto costs a call, a Hash object and a Buffer per digest. The
// verifier's read runs here too: one call unframes a socket read's CopyData messages, one
// scans a chunk's rows. The TypeScript code in src/audit/leaf.ts, copy-out.ts and merkle.ts
// is the reference; test/unit/native-hash.test.ts and test/integration/copy-out.test.ts hold
// both to identical results.
#include <napi.h>
#include <openssl/sha.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

// SHA-256 of one buffer through the low-level API. OpenSSL 3's one-shot SHA256() goes through
// EVP_Q_digest, which fetches the algorithm by name on every call: for a 65-byte Merkle node
// that lookup costs several times the digest itself (bench/RESULTS.md, issue 15).
inline void Sha256(const uint8_t* d, size_t n, uint8_t* md) {
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, d, n);
  SHA256_Final(md, &c);
}

// leafHashes(buf, spans, out): for row i, spans[4i .. 4i+3] = metaStart, metaEnd, payloadStart,
// payloadEnd, byte offsets into buf (payloadStart < 0: the row has no payload and is skipped).
// Writes out[64i .. 64i+32) = SHA-256(0x00 0x02 ‖ buf[metaStart, metaEnd) ‖ payload hash) and
// out[64i+32 .. 64i+64) = payload hash = SHA-256(buf[payloadStart, payloadEnd)): leaf format 2.
Napi::Value LeafHashes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsBuffer()) {
    throw Napi::TypeError::New(env, "leafHashes(buf: Buffer, spans: Int32Array, out: Buffer)");
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  if (info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) throw Napi::TypeError::New(env, "leafHashes: spans must be an Int32Array");
  auto spans = info[1].As<Napi::Int32Array>();
  auto out = info[2].As<Napi::Buffer<uint8_t>>();
  const size_t rows = spans.ElementLength() / 4;
  if (spans.ElementLength() % 4 != 0 || out.Length() < rows * 64) throw Napi::RangeError::New(env, "leafHashes: spans must hold 4 offsets a row, out 64 bytes a row");
  const uint8_t* b = buf.Data();
  const int64_t len = static_cast<int64_t>(buf.Length());
  const int32_t* s = spans.Data();
  static const uint8_t kPrefix[2] = {0x00, 0x02};
  for (size_t i = 0; i < rows; i++) {
    const int64_t ms = s[4 * i], me = s[4 * i + 1], ps = s[4 * i + 2], pe = s[4 * i + 3];
    if (ps < 0) continue;
    if (ms < 0 || me < ms || me > len || pe < ps || pe > len) throw Napi::RangeError::New(env, "leafHashes: a span lies outside the buffer");
    uint8_t* o = out.Data() + 64 * i;
    Sha256(b + ps, static_cast<size_t>(pe - ps), o + 32);
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, kPrefix, 2);
    SHA256_Update(&c, b + ms, static_cast<size_t>(me - ms));
    SHA256_Update(&c, o + 32, 32);
    SHA256_Final(o, &c);
  }
  return env.Undefined();
}

// node(left, right, out): out[0, 32) = SHA-256(0x01 ‖ left ‖ right), RFC 6962's interior node.
Napi::Value Node(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsBuffer() || !info[1].IsBuffer() || !info[2].IsBuffer()) {
    throw Napi::TypeError::New(env, "node(left: Buffer, right: Buffer, out: Buffer)");
  }
  auto l = info[0].As<Napi::Buffer<uint8_t>>();
  auto r = info[1].As<Napi::Buffer<uint8_t>>();
  auto out = info[2].As<Napi::Buffer<uint8_t>>();
  if (l.Length() != 32 || r.Length() != 32 || out.Length() < 32) throw Napi::RangeError::New(env, "node: hashes are 32 bytes");
  uint8_t in[65];
  in[0] = 0x01;
  for (int k = 0; k < 32; k++) {
    in[1 + k] = l.Data()[k];
    in[33 + k] = r.Data()[k];
  }
  Sha256(in, sizeof in, out.Data());
  return env.Undefined();
}

// appendLeaves(levels, size, leaves, stops, out): appends the 32-byte leaf hashes in leaves to
// the tree of `size` leaves whose frontier is levels (64 slots of 32 bytes: slot l holds the
// root of the perfect subtree of 2^l leaves when bit l of size is set), in place. For each
// tree size in stops (ascending, each within size+1 .. size+count), writes that tree's RFC
// 6962 root to out[32j .. 32j+32). One call per COPY chunk, where merkle.ts's appendOne
// costs a call and a Buffer per interior node.
void Root(const uint8_t* levels, uint64_t size, uint8_t* out) {
  int l = 0;
  while (((size >> l) & 1) == 0) l++;
  uint8_t in[65];
  in[0] = 0x01;
  uint8_t r[32];
  for (int k = 0; k < 32; k++) r[k] = levels[32 * l + k];
  for (l++; l < 64; l++) {
    if (((size >> l) & 1) == 0) continue;
    for (int k = 0; k < 32; k++) {
      in[1 + k] = levels[32 * l + k];
      in[33 + k] = r[k];
    }
    Sha256(in, sizeof in, r);
  }
  for (int k = 0; k < 32; k++) out[k] = r[k];
}

Napi::Value AppendLeaves(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsBuffer() || !info[3].IsTypedArray() || !info[4].IsBuffer()) {
    throw Napi::TypeError::New(env, "appendLeaves(levels: Buffer, size: number, leaves: Buffer, stops: Float64Array, out: Buffer)");
  }
  auto levels = info[0].As<Napi::Buffer<uint8_t>>();
  const double sized = info[1].As<Napi::Number>().DoubleValue();
  auto leaves = info[2].As<Napi::Buffer<uint8_t>>();
  if (info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) throw Napi::TypeError::New(env, "appendLeaves: stops must be a Float64Array");
  auto stops = info[3].As<Napi::Float64Array>();
  auto out = info[4].As<Napi::Buffer<uint8_t>>();
  if (levels.Length() != 64 * 32 || leaves.Length() % 32 != 0 || out.Length() < 32 * stops.ElementLength()) {
    throw Napi::RangeError::New(env, "appendLeaves: levels is 64 x 32 bytes, leaves a multiple of 32, out 32 bytes a stop");
  }
  if (!(sized >= 0 && sized < 9007199254740992.0)) throw Napi::RangeError::New(env, "appendLeaves: size out of range");
  uint64_t size = static_cast<uint64_t>(sized);
  const uint64_t count = leaves.Length() / 32;
  uint8_t* lv = levels.Data();
  const uint8_t* lf = leaves.Data();
  size_t stop = 0;
  const size_t nstops = stops.ElementLength();
  uint8_t in[65];
  in[0] = 0x01;
  for (uint64_t i = 0; i < count; i++) {
    uint8_t h[32];
    for (int k = 0; k < 32; k++) h[k] = lf[32 * i + k];
    int l = 0;
    for (; (size >> l) & 1; l++) {  // merge while the subtree of this level is there
      for (int k = 0; k < 32; k++) {
        in[1 + k] = lv[32 * l + k];
        in[33 + k] = h[k];
      }
      Sha256(in, sizeof in, h);
    }
    for (int k = 0; k < 32; k++) lv[32 * l + k] = h[k];
    size++;
    while (stop < nstops && stops[stop] == static_cast<double>(size)) Root(lv, size, out.Data() + 32 * stop++);
  }
  if (stop != nstops) throw Napi::RangeError::New(env, "appendLeaves: a stop lies outside the appended sizes or out of order");
  return env.Undefined();
}

// scanLeafRows(buf, pos, seqs, starts, flags, leaves, state): parses the rows of PostgreSQL's
// binary COPY of the verifier's columns (COPY_COLUMNS in src/audit/leaf.ts: seq, leaf_hash,
// payload_hash, the row's other columns in binary, the 3 payload columns last) from byte pos
// on, as many as are whole in buf and fit in seqs. For row i it writes seqs[i] (the seq),
// starts[i] (the row's byte offset, for a second look), leaves[32i .. 32i+32) (the leaf the
// tree is built from: the stored leaf hash when it is 32 bytes, else the recomputed one) and
// flags[i]: bit 0 when the row has no payload (all three payload fields NULL: pruned, hashed
// by the caller), bit 1 when the recomputed leaf or payload hash differs from the stored one
// (or a stored leaf is absent). state[0] = rows written, state[1] = 1 when the trailer was
// read. Returns the offset after the last whole row (after the trailer). The caller looks
// again, field by field, only at flagged rows; this call replaces the per-row parse, the
// conversions, the two digests and the two comparisons.
constexpr int kFields = 20;
// COPY_COLUMNS indexes of the fields the leaf takes (leafMeta in src/audit/leaf.ts)
constexpr int kSeq = 0, kLeaf = 1, kPayloadHash = 2, kLogId = 3, kKind = 4, kSourcePosition = 10, kSourceTs = 11, kChanged = 12,
              kVersion = 13, kHlc = 14, kActor = 15, kExecutedAt = 16, kPayloadFirst = 17;

int32_t ReadI32(const uint8_t* p) { return static_cast<int32_t>((uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3])); }

int64_t ReadI64(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 0; k < 8; k++) v = (v << 8) | p[k];
  return static_cast<int64_t>(v);
}

// Writes n's decimal digits, at least `width` of them (zero-padded), at o; returns the end.
char* Digits(char* o, uint64_t n, int width) {
  char t[24];
  int k = 0;
  do { t[k++] = static_cast<char>('0' + n % 10); n /= 10; } while (n != 0);
  while (k < width) t[k++] = '0';
  while (k > 0) *o++ = t[--k];
  return o;
}

char* Int8Text(char* o, int64_t v) {
  if (v < 0) *o++ = '-';
  return Digits(o, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v), 1);
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0 && (a < 0) != (b < 0)) ? 1 : 0); }

// A timestamptz column's last text and last date, kept across rows: within a log,
// executed_at repeats for a whole commit, and source_ts's date for many rows.
struct TimestampCache {
  bool has = false, hasDay = false, bc = false;
  int64_t us = 0, days = 0;
  int len = 0, dateLen = 0;
  char text[48], date[24];
};

// timestamptzText of src/audit/leaf.ts (its reference): the text PostgreSQL gives a
// timestamptz (microseconds since 2000-01-01 UTC) under DateStyle ISO and TimeZone UTC.
char* TimestampText(char* o, int64_t us, TimestampCache& c) {
  if (c.has && c.us == us) {
    memcpy(o, c.text, static_cast<size_t>(c.len));
    return o + c.len;
  }
  char* const start = o;
  if (us == INT64_MAX) {
    memcpy(o, "infinity", 8);
    o += 8;
  } else if (us == INT64_MIN) {
    memcpy(o, "-infinity", 9);
    o += 9;
  } else {
    constexpr int64_t kDay = 86400000000LL;
    const int64_t days = FloorDiv(us, kDay);
    const int64_t time = us - days * kDay;
    if (!(c.hasDay && c.days == days)) {
      // the civil date of a day count, in 400-year eras from 0000-03-01 (proleptic Gregorian)
      const int64_t z = days + 10957 + 719468;
      const int64_t era = FloorDiv(z, 146097);
      const int64_t doe = z - era * 146097;
      const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
      const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
      const int64_t mp = (5 * doy + 2) / 153;
      const int64_t day = doy - (153 * mp + 2) / 5 + 1;
      const int64_t month = mp < 10 ? mp + 3 : mp - 9;
      const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
      char* d = Digits(c.date, static_cast<uint64_t>(year > 0 ? year : 1 - year), 4);
      *d++ = '-';
      d = Digits(d, static_cast<uint64_t>(month), 2);
      *d++ = '-';
      d = Digits(d, static_cast<uint64_t>(day), 2);
      *d++ = ' ';
      c.dateLen = static_cast<int>(d - c.date);
      c.bc = year <= 0;
      c.days = days;
      c.hasDay = true;
    }
    memcpy(o, c.date, static_cast<size_t>(c.dateLen));
    o += c.dateLen;
    const uint32_t secs = static_cast<uint32_t>(time / 1000000);
    uint32_t frac = static_cast<uint32_t>(time % 1000000);
    o = Digits(o, secs / 3600, 2);
    *o++ = ':';
    o = Digits(o, secs / 60 % 60, 2);
    *o++ = ':';
    o = Digits(o, secs % 60, 2);
    if (frac != 0) {
      int width = 6;
      while (frac % 10 == 0) { frac /= 10; width--; }
      *o++ = '.';
      o = Digits(o, frac, width);
    }
    memcpy(o, "+00", 3);
    o += 3;
    if (c.bc) { memcpy(o, " BC", 3); o += 3; }
  }
  c.len = static_cast<int>(o - start);
  memcpy(c.text, start, static_cast<size_t>(c.len));
  c.us = us;
  c.has = true;
  return o;
}

// Writes a leaf field's int32 length (-1: NULL) at o; returns the end.
uint8_t* PutLength(uint8_t* o, int32_t n) {
  const uint32_t u = static_cast<uint32_t>(n);
  o[0] = uint8_t(u >> 24); o[1] = uint8_t(u >> 16); o[2] = uint8_t(u >> 8); o[3] = uint8_t(u);
  return o + 4;
}

Napi::Value ScanLeafRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 7 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsTypedArray() || !info[3].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsBuffer() || !info[6].IsTypedArray()) {
    throw Napi::TypeError::New(env, "scanLeafRows(buf: Buffer, pos: number, seqs: Float64Array, starts: Int32Array, flags: Uint8Array, leaves: Buffer, state: Int32Array)");
  }
  if (info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[6].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "scanLeafRows: seqs Float64Array, starts Int32Array, flags Uint8Array, state Int32Array");
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  const double posd = info[1].As<Napi::Number>().DoubleValue();
  auto seqs = info[2].As<Napi::Float64Array>();
  auto starts = info[3].As<Napi::Int32Array>();
  auto flags = info[4].As<Napi::Uint8Array>();
  auto leaves = info[5].As<Napi::Buffer<uint8_t>>();
  auto state = info[6].As<Napi::Int32Array>();
  const size_t cap = seqs.ElementLength();
  if (starts.ElementLength() < cap || flags.ElementLength() < cap || leaves.Length() < 32 * cap || state.ElementLength() < 2) {
    throw Napi::RangeError::New(env, "scanLeafRows: starts, flags and leaves must hold as many rows as seqs, state 2 slots");
  }
  const uint8_t* b = buf.Data();
  const int64_t len = static_cast<int64_t>(buf.Length());
  if (!(posd >= 0 && posd <= static_cast<double>(len)) || len > INT32_MAX) throw Napi::RangeError::New(env, "scanLeafRows: pos outside the buffer");
  int64_t pos = static_cast<int64_t>(posd);
  size_t n = 0;
  state[1] = 0;
  static const uint8_t kPrefix[2] = {0x00, 0x02};
  int64_t fs[kFields];
  int32_t fl[kFields];
  std::vector<uint8_t> meta(4096);
  TimestampCache sourceTs, executedAt, noCache;
  while (n < cap && pos + 2 <= len) {
    const int16_t count = static_cast<int16_t>((uint16_t(b[pos]) << 8) | uint16_t(b[pos + 1]));
    if (count == -1) {
      state[1] = 1;
      pos += 2;
      break;
    }
    if (count != kFields) {
      throw Napi::Error::New(env, "binary COPY row with " + std::to_string(count) + " fields, expected " + std::to_string(kFields));
    }
    int64_t p = pos + 2;
    bool whole = true;
    for (int f = 0; f < kFields; f++) {
      if (p + 4 > len) { whole = false; break; }
      const int32_t l = ReadI32(b + p);
      fs[f] = p + 4;
      fl[f] = l;
      p += 4 + (l > 0 ? l : 0);
      if (p > len) { whole = false; break; }
    }
    if (!whole) break;
    if (fl[kSeq] != 8) throw Napi::Error::New(env, "binary COPY row: seq is not an 8-byte bigint");
    for (int f : {kSourceTs, kHlc, kExecutedAt}) {
      if (fl[f] != 8 && fl[f] != -1) throw Napi::Error::New(env, "binary COPY row: a bigint or timestamptz column is " + std::to_string(fl[f]) + " bytes, not 8");
    }
    const int64_t seq = ReadI64(b + fs[kSeq]);
    seqs[n] = static_cast<double>(seq);
    starts[n] = static_cast<int32_t>(pos);
    uint8_t* leaf = leaves.Data() + 32 * n;
    const bool storedLeaf32 = fl[kLeaf] == 32;
    uint8_t flag = 0;
    if (fl[kPayloadFirst] < 0 && fl[kPayloadFirst + 1] < 0 && fl[kPayloadFirst + 2] < 0) {
      flag = 1;
      if (storedLeaf32) memcpy(leaf, b + fs[kLeaf], 32); else memset(leaf, 0, 32);
    } else {
      // the leaf's metadata fields: as sent, or converted to their texts. A converted field
      // is at most 26 bytes longer than its binary form (a timestamp's 8 bytes against 34
      // characters), and a version's hex twice its bytes: the row's size and 128 bound it.
      const size_t bound = 2 * static_cast<size_t>(p - pos) + 128;
      if (meta.size() < bound) meta.resize(2 * bound);
      uint8_t* w = meta.data();
      const auto sent = [&](int from, int to) {
        const size_t n = static_cast<size_t>(fs[to] + (fl[to] > 0 ? fl[to] : 0) - (fs[from] - 4));
        memcpy(w, b + fs[from] - 4, n);
        w += n;
      };
      // a text written after its 4-byte length, which is then filled in
      const auto text = [&](char* (*put)(char*, int64_t, TimestampCache&), int64_t v, TimestampCache& c) {
        char* t = reinterpret_cast<char*>(w + 4);
        const int32_t n = static_cast<int32_t>(put(t, v, c) - t);
        w = PutLength(w, n) + n;
      };
      const auto int8 = [](char* o, int64_t v, TimestampCache&) { return Int8Text(o, v); };
      sent(kLogId, kLogId);
      text(int8, seq, noCache);
      sent(kKind, kSourcePosition);
      if (fl[kSourceTs] < 0) w = PutLength(w, -1); else text(TimestampText, ReadI64(b + fs[kSourceTs]), sourceTs);
      sent(kChanged, kChanged);
      if (fl[kVersion] < 0) {
        w = PutLength(w, -1);
      } else {
        static const char kHex[] = "0123456789abcdef";
        w = PutLength(w, 2 * fl[kVersion]);
        for (int32_t k = 0; k < fl[kVersion]; k++) {
          const uint8_t v = b[fs[kVersion] + k];
          *w++ = static_cast<uint8_t>(kHex[v >> 4]);
          *w++ = static_cast<uint8_t>(kHex[v & 15]);
        }
      }
      if (fl[kHlc] < 0) w = PutLength(w, -1); else text(int8, ReadI64(b + fs[kHlc]), noCache);
      sent(kActor, kActor);
      if (fl[kExecutedAt] < 0) w = PutLength(w, -1); else text(TimestampText, ReadI64(b + fs[kExecutedAt]), executedAt);
      const int64_t ps = fs[kPayloadFirst] - 4;
      uint8_t ph[32], lh[32];
      Sha256(b + ps, static_cast<size_t>(p - ps), ph);
      SHA256_CTX c;
      SHA256_Init(&c);
      SHA256_Update(&c, kPrefix, 2);
      SHA256_Update(&c, meta.data(), static_cast<size_t>(w - meta.data()));
      SHA256_Update(&c, ph, 32);
      SHA256_Final(lh, &c);
      const bool leafOk = storedLeaf32 && memcmp(b + fs[kLeaf], lh, 32) == 0;
      const bool payloadOk = fl[kPayloadHash] < 0 || (fl[kPayloadHash] == 32 && memcmp(b + fs[kPayloadHash], ph, 32) == 0);
      if (!leafOk || !payloadOk) flag = 2;
      memcpy(leaf, storedLeaf32 ? b + fs[kLeaf] : lh, 32);
    }
    flags[n] = flag;
    n++;
    pos = p;
  }
  state[0] = static_cast<int32_t>(n);
  return Napi::Number::New(env, static_cast<double>(pos));
}

// unframeCopyData(buf, pos, out, outPos, state): copies the payloads of the consecutive whole
// CopyData messages ('d', int32 length, payload) of the PostgreSQL protocol stream in buf,
// from pos on, to out from outPos on. Stops at the first message that is not CopyData or is
// not whole. state[0] = the offset of that message (or buf's end), state[1] = out's new end.
// One call per socket read, where a JavaScript parse costs calls and a Buffer per row.
Napi::Value UnframeCopyData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsBuffer() || !info[3].IsNumber() || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "unframeCopyData(buf: Buffer, pos: number, out: Buffer, outPos: number, state: Int32Array)");
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto out = info[2].As<Napi::Buffer<uint8_t>>();
  auto state = info[4].As<Napi::Int32Array>();
  const double posd = info[1].As<Napi::Number>().DoubleValue(), outd = info[3].As<Napi::Number>().DoubleValue();
  const int64_t len = static_cast<int64_t>(buf.Length()), olen = static_cast<int64_t>(out.Length());
  if (state.ElementLength() < 2 || len > INT32_MAX || olen > INT32_MAX || !(posd >= 0 && posd <= static_cast<double>(len)) || !(outd >= 0 && outd <= static_cast<double>(olen))) {
    throw Napi::RangeError::New(env, "unframeCopyData: a position outside its buffer");
  }
  const uint8_t* b = buf.Data();
  uint8_t* o = out.Data();
  int64_t pos = static_cast<int64_t>(posd), at = static_cast<int64_t>(outd);
  while (pos + 5 <= len && b[pos] == 'd') {
    const int64_t n = static_cast<uint32_t>(ReadI32(b + pos + 1));
    if (n < 4) throw Napi::Error::New(env, "unframeCopyData: a CopyData message shorter than its length field");
    if (pos + 1 + n > len) break;
    if (at + n - 4 > olen) throw Napi::RangeError::New(env, "unframeCopyData: out is too small");
    memcpy(o + at, b + pos + 5, static_cast<size_t>(n - 4));
    at += n - 4;
    pos += 1 + n;
  }
  state[0] = static_cast<int32_t>(pos);
  state[1] = static_cast<int32_t>(at);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("unframeCopyData", Napi::Function::New(env, UnframeCopyData, "unframeCopyData"));
  exports.Set("scanLeafRows", Napi::Function::New(env, ScanLeafRows, "scanLeafRows"));
  exports.Set("appendLeaves", Napi::Function::New(env, AppendLeaves, "appendLeaves"));
  exports.Set("leafHashes", Napi::Function::New(env, LeafHashes, "leafHashes"));
  exports.Set("node", Napi::Function::New(env, Node, "node"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ws_hash, Init)
