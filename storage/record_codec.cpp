#include "storage/record_codec.hpp"

#include <xxhash.h>

#include <cstring>

namespace apsis::storage::codec {

uint64_t hash64(std::string_view data, uint64_t seed) {
  return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

size_t encoded_size(const Record& r) {
  return header_size + r.key.size() + r.json.size() + r.data.size();
}

// The checksum covers bytes [16, total) and, through the seed, the magic and length.
static uint64_t record_checksum(const char* rec, size_t total) {
  return hash64(std::string_view(rec + 16, total - 16), get_u64(rec));
}

void encode(const Record& r, char* out) {
  size_t total = encoded_size(r);
  put_u32(out, record_magic);
  put_u32(out + 4, static_cast<uint32_t>(total));
  put_u64(out + 16, r.version.stamp);
  put_u64(out + 24, r.version.node);
  put_u64(out + 32, r.expiry_ms);
  put_u32(out + 40, r.user_flags);
  put_u16(out + 44, r.tombstone ? flag_tombstone : 0);
  put_u16(out + 46, static_cast<uint16_t>(r.key.size()));
  put_u32(out + 48, static_cast<uint32_t>(r.json.size()));
  put_u32(out + 52, static_cast<uint32_t>(r.data.size()));
  std::memcpy(out + 56, r.id.bytes.data(), Id::size);
  char* p = out + header_size;
  std::memcpy(p, r.key.data(), r.key.size());
  p += r.key.size();
  std::memcpy(p, r.json.data(), r.json.size());
  p += r.json.size();
  std::memcpy(p, r.data.data(), r.data.size());
  put_u64(out + 8, record_checksum(out, total));
}

std::string encode(const Record& r) {
  std::string s(encoded_size(r), '\0');
  encode(r, s.data());
  return s;
}

Status decode_header(std::string_view buf, Header* h) {
  if (buf.size() < header_size) return Status::corruption("record header truncated");
  const char* p = buf.data();
  if (get_u32(p) != record_magic) return Status::corruption("bad record magic");
  h->total_len = get_u32(p + 4);
  h->checksum = get_u64(p + 8);
  h->version = {get_u64(p + 16), get_u64(p + 24)};
  h->expiry_ms = get_u64(p + 32);
  h->user_flags = get_u32(p + 40);
  h->flags = get_u16(p + 44);
  h->key_len = get_u16(p + 46);
  h->json_len = get_u32(p + 48);
  h->data_len = get_u32(p + 52);
  std::memcpy(h->id.bytes.data(), p + 56, Id::size);
  uint64_t expect = uint64_t(header_size) + h->key_len + h->json_len + h->data_len;
  if (h->flags & ~flag_tombstone) return Status::corruption("unknown record flags");
  if (h->key_len > Limits::key_hard_max || expect != h->total_len)
    return Status::corruption("record lengths inconsistent");
  return Status::ok();
}

bool checksum_ok(std::string_view buf, const Header& h) {
  return buf.size() >= h.total_len && record_checksum(buf.data(), h.total_len) == h.checksum;
}

RecordMeta meta_of(const Header& h, std::string_view buf) {
  RecordMeta m;
  m.id = h.id;
  m.key.assign(buf.data() + header_size, h.key_len);
  m.version = h.version;
  m.expiry_ms = h.expiry_ms;
  m.user_flags = h.user_flags;
  m.tombstone = h.tombstone();
  m.json_size = h.json_len;
  m.data_size = h.data_len;
  return m;
}

static Status decode_checked(std::string_view buf, Header* h) {
  APSIS_TRY(decode_header(buf, h));
  if (buf.size() < h->total_len) return Status::corruption("record truncated");
  if (!checksum_ok(buf, *h)) return Status::corruption("record checksum mismatch");
  return Status::ok();
}

Status decode(std::string_view buf, Record* out, bool with_payload) {
  Header h;
  APSIS_TRY(decode_checked(buf, &h));
  fill(h, buf, out, with_payload);
  return Status::ok();
}

void fill(const Header& h, std::string_view buf, Record* out, bool with_payload) {
  const char* p = buf.data() + header_size;
  out->id = h.id;
  out->key.assign(p, h.key_len);
  out->version = h.version;
  out->expiry_ms = h.expiry_ms;
  out->user_flags = h.user_flags;
  out->tombstone = h.tombstone();
  if (with_payload) {
    out->json.assign(p + h.key_len, h.json_len);
    out->data.assign(p + h.key_len + h.json_len, h.data_len);
  } else {
    out->json.clear();
    out->data.clear();
  }
}

Status decode_meta(std::string_view buf, RecordMeta* out) {
  Header h;
  APSIS_TRY(decode_checked(buf, &h));
  *out = meta_of(h, buf);
  return Status::ok();
}

}  // namespace apsis::storage::codec
