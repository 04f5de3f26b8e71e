// SHA-256 in batches for the audit log's verifier and Merkle tree (src/audit/native-hash.ts),
// over the OpenSSL that Node.js itself carries and exports: one call hashes every row of a
// COPY chunk, where node:crypto costs a call, a Hash object and a Buffer per digest. The
// TypeScript code in src/audit/leaf.ts and merkle.ts is the reference;
// test/unit/native-hash.test.ts holds both to identical digests.
#include <napi.h>
#include <openssl/sha.h>

#include <cstdint>

namespace {

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
    SHA256(b + ps, static_cast<size_t>(pe - ps), o + 32);
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
  SHA256(in, sizeof in, out.Data());
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
    SHA256(in, sizeof in, r);
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
      SHA256(in, sizeof in, h);
    }
    for (int k = 0; k < 32; k++) lv[32 * l + k] = h[k];
    size++;
    while (stop < nstops && stops[stop] == static_cast<double>(size)) Root(lv, size, out.Data() + 32 * stop++);
  }
  if (stop != nstops) throw Napi::RangeError::New(env, "appendLeaves: a stop lies outside the appended sizes or out of order");
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("appendLeaves", Napi::Function::New(env, AppendLeaves, "appendLeaves"));
  exports.Set("leafHashes", Napi::Function::New(env, LeafHashes, "leafHashes"));
  exports.Set("node", Napi::Function::New(env, Node, "node"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ws_hash, Init)
