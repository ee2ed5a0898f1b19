#include "messages/large.hpp"

#include <openssl/rand.h>

#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace apsis::large {

std::string Manifest::encode() const {
  return nlohmann::json{
      {"apsis_large", 1}, {"size", size}, {"chunk", chunk_size}, {"upload", upload}}
      .dump();
}

bool Manifest::decode(std::string_view text, Manifest* out) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || j.value("apsis_large", 0) != 1 || !j["size"].is_number_unsigned() ||
      j.value("chunk", uint64_t(0)) != chunk_size || !j["upload"].is_string())
    return false;
  out->size = j["size"].get<uint64_t>();
  out->upload = j["upload"].get<std::string>();
  return true;
}

uint64_t value_size(uint32_t user_flags, uint64_t data_size, std::string_view data) {
  Manifest m;
  return (user_flags & manifest_flag) && Manifest::decode(data, &m) ? m.size : data_size;
}

std::string read_refusal(const op_result& r) {
  Manifest m;
  if (r.status != op_status::ok || !is_manifest(r.record) || !Manifest::decode(r.record.data, &m))
    return {};
  return "the key holds a large value of " + std::to_string(m.size) +
         " bytes: read it through REST (GET /v1/ns/{ns}/keys/{key}, with Range)";
}

std::string new_upload() {
  unsigned char b[8];
  RAND_bytes(b, sizeof b);
  char hex[17];
  for (int i = 0; i < 8; ++i) std::snprintf(hex + 2 * i, 3, "%02x", b[i]);
  return hex;
}

bool valid_upload(std::string_view text) {
  return text.size() == 16 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string chunk_namespace(const std::string& ns) { return std::string("\0chunks\0", 8) + ns; }

std::string chunk_key(const std::string& upload, uint64_t index) {
  return upload + '\0' + std::to_string(index);
}

bool parse_chunk_key(std::string_view key, std::string* upload, uint64_t* index) {
  const size_t zero = key.find('\0');
  if (zero == std::string_view::npos || !valid_upload(key.substr(0, zero))) return false;
  const std::string_view digits = key.substr(zero + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *index);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) return false;
  upload->assign(key.substr(0, zero));
  return true;
}

kv_op chunk_op(op_kind kind, const std::string& ns, const std::string& upload, uint64_t index) {
  kv_op o;
  o.kind = kind;
  o.key = chunk_key(upload, index);
  o.id = storage::make_id(chunk_namespace(ns), o.key);
  return o;
}

}  // namespace apsis::large
