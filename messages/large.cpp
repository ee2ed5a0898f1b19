#include "messages/large.hpp"

#include <openssl/rand.h>

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

kv_op chunk_op(op_kind kind, const std::string& ns, const std::string& upload, uint64_t index) {
  // A namespace no user can name (names are [A-Za-z0-9_.-]), so listings never show chunks.
  static const std::string prefix("\0chunks\0", 8);
  kv_op o;
  o.kind = kind;
  o.key = upload + '\0' + std::to_string(index);
  o.id = storage::make_id(prefix + ns, o.key);
  return o;
}

}  // namespace apsis::large
