#include "storage/id.hpp"

#include "storage/sha512_x8.hpp"

#define OPENSSL_SUPPRESS_DEPRECATED  // SHA512_Init and friends: see make_id
#include <openssl/sha.h>

namespace apsis::storage {

// SHA512_Init/Update/Final are deprecated since OpenSSL 3 in favour of EVP, but run the same
// block function: EVP on OpenSSL 3.0 allocated and freed a context for every digest and
// looked the digest up again (600 ns an id here with EVP_sha512(), 320 ns with a fetched
// digest, 245 ns this way). Every key of every request pays it.
Id make_id(std::string_view ns, std::string_view key) {
  Id id;
  const unsigned char zero = 0;
  SHA512_CTX c;
  SHA512_Init(&c);
  SHA512_Update(&c, ns.data(), ns.size());
  SHA512_Update(&c, &zero, 1);
  SHA512_Update(&c, key.data(), key.size());
  SHA512_Final(id.bytes.data(), &c);
  return id;
}

void make_ids(std::string_view ns, const IdJob* jobs, size_t n) {
  const bool lanes = sha512_x8_supported() && n > 1;
  uint8_t bufs[8][sha512_one_block_max];
  const uint8_t* msgs[8];
  size_t lens[8], which[8], used = 0;
  uint8_t* outs[8];
  auto run = [&] {
    if (used == 1)  // a lone one costs the same either way
      *jobs[which[0]].out = make_id(ns, jobs[which[0]].key);
    else if (used > 1)
      sha512_x8(msgs, lens, used, outs);
    used = 0;
  };
  for (size_t i = 0; i < n; ++i) {
    const std::string_view key = jobs[i].key;
    const size_t len = ns.size() + 1 + key.size();
    if (!lanes || len > sha512_one_block_max) {
      *jobs[i].out = make_id(ns, key);
      continue;
    }
    uint8_t* m = bufs[used];
    if (!ns.empty()) std::memcpy(m, ns.data(), ns.size());
    m[ns.size()] = 0;
    if (!key.empty()) std::memcpy(m + ns.size() + 1, key.data(), key.size());
    msgs[used] = m, lens[used] = len, which[used] = i;
    outs[used] = jobs[i].out->bytes.data();
    if (++used == 8) run();
  }
  run();
}

std::string Id::hex() const {
  static const char digits[] = "0123456789abcdef";
  std::string s(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

bool Id::from_hex(std::string_view hex, Id* out) {
  if (hex.size() != size * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < size; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace apsis::storage
