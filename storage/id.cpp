#include "storage/id.hpp"

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
