// The one on-disk encoding of a record, shared by the blob, block, fs and sorted engines.
// Layout byte by byte: docs/storage-format.md ("Record").
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "storage/record.hpp"

namespace apsis::storage::codec {

constexpr uint32_t record_magic = 0x52535041;  // "APSR" on disk
constexpr size_t header_size = 120;
constexpr uint16_t flag_tombstone = 1;

/// The fixed part of an encoded record, decoded and checked for consistency (not checksum).
struct Header {
  uint32_t total_len = 0;
  uint64_t checksum = 0;
  Version version;
  uint64_t expiry_ms = 0;
  uint32_t user_flags = 0;
  uint16_t flags = 0;
  uint16_t key_len = 0;
  uint32_t json_len = 0;
  uint32_t data_len = 0;
  Id id;

  bool tombstone() const { return flags & flag_tombstone; }
};

size_t encoded_size(const Record& r);
/// Writes exactly encoded_size(r) bytes at out.
void encode(const Record& r, char* out);
std::string encode(const Record& r);

/// Decodes the header at the start of buf: corruption if the magic, flags or lengths are
/// wrong. Does not look past the header.
Status decode_header(std::string_view buf, Header* h);
/// True if buf holds at least h.total_len bytes and their checksum matches.
bool checksum_ok(std::string_view buf, const Header& h);
/// Header + checksum check, then fills out (json and data only when with_payload).
Status decode(std::string_view buf, Record* out, bool with_payload = true);
/// Fills out from a record whose header h was decoded and whose checksum was checked.
void fill(const Header& h, std::string_view buf, Record* out, bool with_payload = true);
/// Header + checksum check, then fills out.
Status decode_meta(std::string_view buf, RecordMeta* out);
RecordMeta meta_of(const Header& h, std::string_view buf);

// -- little-endian helpers, shared with the engines' own file headers --
// One load or store on a little-endian host (byte loops were ~400 instructions a record
// header: GCC did not merge them).
template <class T>
inline T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof v == 2) v = __builtin_bswap16(v);
  if constexpr (sizeof v == 4) v = __builtin_bswap32(v);
  if constexpr (sizeof v == 8) v = __builtin_bswap64(v);
#endif
  return v;
}
template <class T>
inline void store_le(char* p, T v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof v == 2) v = __builtin_bswap16(v);
  if constexpr (sizeof v == 4) v = __builtin_bswap32(v);
  if constexpr (sizeof v == 8) v = __builtin_bswap64(v);
#endif
  std::memcpy(p, &v, sizeof v);
}
inline void put_u16(char* p, uint16_t v) { store_le(p, v); }
inline void put_u32(char* p, uint32_t v) { store_le(p, v); }
inline void put_u64(char* p, uint64_t v) { store_le(p, v); }
inline uint16_t get_u16(const char* p) { return load_le<uint16_t>(p); }
inline uint32_t get_u32(const char* p) { return load_le<uint32_t>(p); }
inline uint64_t get_u64(const char* p) { return load_le<uint64_t>(p); }
/// XXH3-64 of data: the checksum used by every apsis file.
uint64_t hash64(std::string_view data, uint64_t seed = 0);

}  // namespace apsis::storage::codec
