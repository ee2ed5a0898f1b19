// Id: the 64-byte SHA-512 of (namespace ‖ 0x00 ‖ key) that places and names a record.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace apsis::storage {

struct Id {
  static constexpr size_t size = 64;
  std::array<uint8_t, size> bytes{};

  /// The first 8 bytes read big-endian: the id's position in the ring, and a hash.
  uint64_t prefix() const {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | bytes[i];
    return v;
  }
  /// The first id whose prefix() is p: p's bytes, then zeros.
  static Id at_prefix(uint64_t p) {
    Id id;
    for (int i = 7; i >= 0; --i, p >>= 8) id.bytes[size_t(i)] = uint8_t(p);
    return id;
  }
  std::string hex() const;
  /// Parses 128 hex digits; false on anything else.
  static bool from_hex(std::string_view hex, Id* out);
  static Id min() { return {}; }
  static Id max() {
    Id id;
    id.bytes.fill(0xff);
    return id;
  }

  friend bool operator==(const Id& a, const Id& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const Id& a, const Id& b) { return a.bytes != b.bytes; }
  friend bool operator<(const Id& a, const Id& b) { return a.bytes < b.bytes; }
  friend bool operator<=(const Id& a, const Id& b) { return !(b < a); }
};

/// SHA-512(ns ‖ 0x00 ‖ key), through OpenSSL.
Id make_id(std::string_view ns, std::string_view key);

/// One key whose id make_ids() computes, and where it goes.
struct IdJob {
  std::string_view key;
  Id* out;
};

/// make_id(ns, key) for many keys: eight at a time where the CPU has AVX-512 and the
/// message fits one SHA-512 block (storage/sha512_x8.hpp), one by one otherwise.
void make_ids(std::string_view ns, const IdJob* jobs, size_t n);

struct IdHash {
  size_t operator()(const Id& id) const { return static_cast<size_t>(id.prefix()); }
};

}  // namespace apsis::storage
