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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("leafHashes", Napi::Function::New(env, LeafHashes, "leafHashes"));
  exports.Set("node", Napi::Function::New(env, Node, "node"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ws_hash, Init)
