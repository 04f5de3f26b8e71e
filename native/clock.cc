// Version vector codec, format 1 (DESIGN §6), and batch compare and merge over packed
// buffers: the native twin of src/clock/codec.ts and src/clock/batch.ts. The TypeScript
// code is the reference; test/unit/native-clock.test.ts holds both to identical bytes,
// results and rejections.
//
// Packed form of a batch: one buffer holding n encoded vectors back to back, and n + 1
// uint32 offsets (vector k is bytes [off[k], off[k+1])). A batch call crosses the
// JavaScript boundary once for the whole batch.
#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr uint64_t kMaxSafe = 9007199254740991ULL;  // 2^53 - 1, JavaScript's exact integers
constexpr uint8_t kFormat1 = 0x01;

using Entry = std::pair<uint64_t, uint64_t>;  // (node index, counter)
using Vector = std::vector<Entry>;

enum Ordering : uint8_t { kEqual = 0, kDominates = 1, kDominated = 2, kConcurrent = 3 };

struct CodecError {
  std::string message;
};

bool ReadLeb(const uint8_t* buf, size_t len, size_t& pos, uint64_t& out, CodecError& err) {
  const size_t start = pos;
  uint64_t value = 0;
  unsigned shift = 0;
  for (;;) {
    if (pos >= len) {
      err.message = "truncated LEB128 at byte " + std::to_string(start);
      return false;
    }
    const uint8_t b = buf[pos++];
    const uint64_t part = b & 0x7f;
    if (part != 0 && (shift >= 53 || part > (kMaxSafe >> shift) || value + (part << shift) > kMaxSafe)) {
      err.message = "LEB128 at byte " + std::to_string(start) + " exceeds 2^53";
      return false;
    }
    value += part << shift;
    if ((b & 0x80) == 0) {
      if (b == 0 && pos - start > 1) {
        err.message = "overlong LEB128 at byte " + std::to_string(start);
        return false;
      }
      out = value;
      return true;
    }
    shift += 7;
  }
}

bool Decode(const uint8_t* buf, size_t len, Vector& out, CodecError& err) {
  out.clear();
  if (len == 0) {
    err.message = "empty buffer";
    return false;
  }
  if (buf[0] != kFormat1) {
    static const char* hex = "0123456789abcdef";
    err.message = std::string("unknown format byte 0x") + hex[buf[0] >> 4] + hex[buf[0] & 15];
    return false;
  }
  size_t pos = 1;
  uint64_t count = 0;
  if (!ReadLeb(buf, len, pos, count, err)) return false;
  // Each entry takes at least two bytes: a count beyond that cannot be honest.
  if (count * 2 > len - pos) {
    err.message = "count " + std::to_string(count) + " overruns the buffer";
    return false;
  }
  out.reserve(count);
  uint64_t index = 0;
  for (uint64_t k = 0; k < count; k++) {
    uint64_t delta = 0;
    uint64_t counter = 0;
    if (!ReadLeb(buf, len, pos, delta, err)) return false;
    if (k > 0 && delta == 0) {
      err.message = "entry " + std::to_string(k) + ": duplicate or unsorted node index";
      return false;
    }
    index = k == 0 ? delta : index + delta;
    if (index > kMaxSafe) {
      err.message = "entry " + std::to_string(k) + ": node index exceeds 2^53";
      return false;
    }
    if (!ReadLeb(buf, len, pos, counter, err)) return false;
    if (counter == 0) {
      err.message = "entry " + std::to_string(k) + ": zero counter";
      return false;
    }
    out.emplace_back(index, counter);
  }
  if (pos != len) {
    err.message = std::to_string(len - pos) + " trailing byte(s)";
    return false;
  }
  return true;
}

void WriteLeb(std::vector<uint8_t>& out, uint64_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<uint8_t>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<uint8_t>(n));
}

void Encode(const Vector& v, std::vector<uint8_t>& out) {
  out.push_back(kFormat1);
  WriteLeb(out, v.size());
  uint64_t prev = 0;
  bool first = true;
  for (const auto& [i, c] : v) {
    WriteLeb(out, first ? i : i - prev);
    WriteLeb(out, c);
    prev = i;
    first = false;
  }
}

Ordering Compare(const Vector& a, const Vector& b) {
  bool aBigger = false;
  bool bBigger = false;
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
      aBigger = true;
      i++;
    } else if (i == a.size() || b[j].first < a[i].first) {
      bBigger = true;
      j++;
    } else {
      if (a[i].second > b[j].second) aBigger = true;
      else if (a[i].second < b[j].second) bBigger = true;
      i++;
      j++;
    }
    if (aBigger && bBigger) return kConcurrent;
  }
  return aBigger ? kDominates : bBigger ? kDominated : kEqual;
}

void Merge(const Vector& a, const Vector& b, Vector& out) {
  out.clear();
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
      out.push_back(a[i++]);
    } else if (i == a.size() || b[j].first < a[i].first) {
      out.push_back(b[j++]);
    } else {
      out.emplace_back(a[i].first, a[i].second >= b[j].second ? a[i].second : b[j].second);
      i++;
      j++;
    }
  }
}

bool IsExactInteger(double d) {
  return d >= 0 && d <= static_cast<double>(kMaxSafe) && static_cast<double>(static_cast<uint64_t>(d)) == d;
}

// encode([[index, counter], ...]) -> Buffer
Napi::Value EncodeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "encode expects an array of [index, counter] pairs");
  Napi::Array arr = info[0].As<Napi::Array>();
  const uint32_t n = arr.Length();
  Vector v;
  v.reserve(n);
  double prev = -1;
  for (uint32_t k = 0; k < n; k++) {
    Napi::Value pair = arr.Get(k);
    if (!pair.IsArray()) throw Napi::TypeError::New(env, "encode expects an array of [index, counter] pairs");
    Napi::Array p = pair.As<Napi::Array>();
    Napi::Value iv = p.Get(0u);
    Napi::Value cv = p.Get(1u);
    const double i = iv.IsNumber() ? iv.As<Napi::Number>().DoubleValue() : -1;
    const double c = cv.IsNumber() ? cv.As<Napi::Number>().DoubleValue() : -1;
    if (!IsExactInteger(i) || i <= prev) {
      throw Napi::Error::New(env, "node indexes must be ascending integers >= 0");
    }
    if (!IsExactInteger(c) || c < 1) throw Napi::Error::New(env, "counters must be integers >= 1");
    v.emplace_back(static_cast<uint64_t>(i), static_cast<uint64_t>(c));
    prev = i;
  }
  std::vector<uint8_t> out;
  out.reserve(2 + n * 4);
  Encode(v, out);
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

// decode(Uint8Array) -> [[index, counter], ...]
Napi::Value DecodeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "decode expects a Uint8Array");
  Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
  Vector v;
  CodecError err;
  if (!Decode(buf.Data(), buf.ByteLength(), v, err)) throw Napi::Error::New(env, err.message);
  Napi::Array out = Napi::Array::New(env, v.size());
  for (size_t k = 0; k < v.size(); k++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Number::New(env, static_cast<double>(v[k].first)));
    pair.Set(1u, Napi::Number::New(env, static_cast<double>(v[k].second)));
    out.Set(static_cast<uint32_t>(k), pair);
  }
  return out;
}

struct Packed {
  const uint8_t* bytes;
  size_t length;
  const uint32_t* offsets;
  size_t count;  // vectors
};

Packed ReadPacked(const Napi::Env& env, const Napi::Value& bytes, const Napi::Value& offsets, const char* what) {
  if (!bytes.IsTypedArray() || !offsets.IsTypedArray()) throw Napi::TypeError::New(env, std::string(what) + ": expects (Uint8Array, Uint32Array)");
  Napi::Uint8Array b = bytes.As<Napi::Uint8Array>();
  Napi::TypedArray o = offsets.As<Napi::TypedArray>();
  if (o.TypedArrayType() != napi_uint32_array || o.ElementLength() == 0) throw Napi::TypeError::New(env, std::string(what) + ": offsets must be a non-empty Uint32Array");
  Napi::Uint32Array offs = offsets.As<Napi::Uint32Array>();
  Packed p{b.Data(), b.ByteLength(), offs.Data(), offs.ElementLength() - 1};
  for (size_t k = 0; k < p.count; k++) {
    if (p.offsets[k] > p.offsets[k + 1] || p.offsets[k + 1] > p.length) throw Napi::RangeError::New(env, std::string(what) + ": offsets out of order or past the bytes");
  }
  return p;
}

void DecodeAt(const Napi::Env& env, const Packed& p, size_t k, Vector& out, const char* what) {
  CodecError err;
  if (!Decode(p.bytes + p.offsets[k], p.offsets[k + 1] - p.offsets[k], out, err)) {
    throw Napi::Error::New(env, std::string(what) + " vector " + std::to_string(k) + ": " + err.message);
  }
}

// compareBatch(bytesA, offsetsA, bytesB, offsetsB) -> Uint8Array of orderings (0 equal, 1 dominates, 2 dominated, 3 concurrent)
Napi::Value CompareBatchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "compareBatch expects (bytesA, offsetsA, bytesB, offsetsB)");
  Packed a = ReadPacked(env, info[0], info[1], "compareBatch a");
  Packed b = ReadPacked(env, info[2], info[3], "compareBatch b");
  if (a.count != b.count) throw Napi::RangeError::New(env, "compareBatch: both sides need as many vectors");
  Napi::Uint8Array out = Napi::Uint8Array::New(env, a.count);
  Vector va;
  Vector vb;
  for (size_t k = 0; k < a.count; k++) {
    DecodeAt(env, a, k, va, "a");
    DecodeAt(env, b, k, vb, "b");
    out[k] = Compare(va, vb);
  }
  return out;
}

// mergeBatch(bytesA, offsetsA, bytesB, offsetsB) -> [Buffer bytes, Uint32Array offsets]
Napi::Value MergeBatchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "mergeBatch expects (bytesA, offsetsA, bytesB, offsetsB)");
  Packed a = ReadPacked(env, info[0], info[1], "mergeBatch a");
  Packed b = ReadPacked(env, info[2], info[3], "mergeBatch b");
  if (a.count != b.count) throw Napi::RangeError::New(env, "mergeBatch: both sides need as many vectors");
  std::vector<uint8_t> bytes;
  bytes.reserve(a.length + b.length);
  Napi::Uint32Array offsets = Napi::Uint32Array::New(env, a.count + 1);
  offsets[0] = 0;
  Vector va;
  Vector vb;
  Vector m;
  for (size_t k = 0; k < a.count; k++) {
    DecodeAt(env, a, k, va, "a");
    DecodeAt(env, b, k, vb, "b");
    Merge(va, vb, m);
    Encode(m, bytes);
    offsets[k + 1] = static_cast<uint32_t>(bytes.size());
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size()));
  out.Set(1u, offsets);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("encode", Napi::Function::New(env, EncodeJs, "encode"));
  exports.Set("decode", Napi::Function::New(env, DecodeJs, "decode"));
  exports.Set("compareBatch", Napi::Function::New(env, CompareBatchJs, "compareBatch"));
  exports.Set("mergeBatch", Napi::Function::New(env, MergeBatchJs, "mergeBatch"));
  exports.Set("format", Napi::Number::New(env, kFormat1));
  return exports;
}

}  // namespace

NODE_API_MODULE(ws_clock, Init)
