#include "messages/export_format.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

#include "messages/base64.hpp"
#include "messages/large.hpp"
#include "storage/record_codec.hpp"

namespace apsis::exportfmt {

using nlohmann::json;

namespace {

uint64_t chained(uint64_t chain, std::string_view line) {
  return storage::codec::hash64(line, chain);
}

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// Whether bytes are valid UTF-8 (a JSON string can hold them as they are).
bool utf8(std::string_view s) {
  try {
    (void)json(std::string(s)).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

std::string Writer::line(std::string text) {
  chain_ = chained(chain_, text);
  return text + "\n";
}

std::string Writer::header(const std::string& ns, const storage::Version& since) {
  json h{{"apsis_export", format_version}, {"ns", ns}, {"created_ms", storage::now_ms()}};
  if (since.stamp) h["since"] = since.to_string();
  return line(h.dump());
}

/// What every record line starts with: its key and version.
static json record_head(const listed_record& r) {
  json j;
  if (utf8(r.meta.key))
    j["key"] = r.meta.key;
  else
    j["key_b64"] = base64(r.meta.key);
  j["version"] = r.meta.version.to_string();
  return j;
}

std::string Writer::record(const listed_record& r) {
  ++records_;
  json j = record_head(r);
  if (r.meta.tombstone) {
    j["deleted"] = true;
    return line(j.dump());
  }
  if (!r.json.empty()) j["json"] = r.json;  // its text, byte for byte
  if (!r.data.empty()) j["data"] = base64(r.data);
  if (r.meta.expiry_ms) j["expiry_ms"] = r.meta.expiry_ms;
  if (r.meta.user_flags) j["flags"] = r.meta.user_flags;
  return line(j.dump());
}

std::string Writer::large(const listed_record& r, uint64_t size) {
  ++records_;
  json j = record_head(r);
  j["large"] = size;
  if (r.meta.expiry_ms) j["expiry_ms"] = r.meta.expiry_ms;
  if (uint32_t flags = r.meta.user_flags & ~large::manifest_flag) j["flags"] = flags;
  return line(j.dump());
}

std::string Writer::part(uint64_t index, std::string_view bytes) {
  return line(json{{"part", index}, {"data", base64(bytes)}}.dump());
}

std::string Writer::trailer() {
  return line(json{{"end", true}, {"records", records_}, {"checksum", hex(chain_)}}.dump());
}

bool Reader::fail(std::string* error, const std::string& why) const {
  *error = "line " + std::to_string(line_no_) + ": " + why;
  return false;
}

bool Reader::read_part(const json& j, Item* item, std::string* error) {
  if (next_part_ >= parts_) return fail(error, "a part line with no large value before it");
  if (!j["part"].is_number_unsigned() || j["part"].get<uint64_t>() != next_part_)
    return fail(error, "part " + std::to_string(next_part_) + " expected");
  *item = Item{};
  if (!j["data"].is_string() || !unbase64(j["data"].get<std::string>(), &item->data))
    return fail(error, "a part's data must be base64");
  const uint64_t at = next_part_ * large::chunk_size;
  const uint64_t want = std::min<uint64_t>(large::chunk_size, large_size_ - at);
  if (item->data.size() != want)
    return fail(error, "part " + std::to_string(next_part_) + " holds " +
                           std::to_string(item->data.size()) + " bytes, not " +
                           std::to_string(want));
  item->part = next_part_++;
  return true;
}

bool Reader::next(std::string_view text, Line* kind, Item* item, std::string* error) {
  ++line_no_;
  if (complete_) return fail(error, "text after the trailer");
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return fail(error, "not a JSON object");
  const uint64_t before = chain_;
  chain_ = chained(chain_, text);
  if (!header_) {
    if (j.value("apsis_export", 0) != format_version || !j.contains("ns") || !j["ns"].is_string())
      return fail(error, "not an apsis export (version " + std::to_string(format_version) +
                             " header expected)");
    header_ = true;
    ns_ = j["ns"].get<std::string>();
    *kind = Line::header;
    return true;
  }
  if (j.contains("part")) {
    if (!read_part(j, item, error)) return false;
    *kind = Line::part;
    return true;
  }
  if (next_part_ < parts_)
    return fail(error, "part " + std::to_string(next_part_) + " of a large value expected");
  if (j.contains("end")) {
    if (!j["records"].is_number_unsigned() || j["records"].get<uint64_t>() != records_)
      return fail(error, "the trailer counts " + j["records"].dump() + " records, the stream " +
                             std::to_string(records_));
    if (!j["checksum"].is_string() || j["checksum"].get<std::string>() != hex(before))
      return fail(error, "checksum mismatch: the stream was altered");
    complete_ = true;
    *kind = Line::trailer;
    return true;
  }
  *item = Item{};
  const json& k = j.contains("key") ? j["key"] : j.value("key_b64", json());
  if (!k.is_string() || k.get_ref<const std::string&>().empty())
    return fail(error, "a record needs a key");
  if (j.contains("key_b64") ? !unbase64(k.get<std::string>(), &item->key)
                            : (item->key = k.get<std::string>(), false))
    return fail(error, "key_b64 is not base64");
  if (!j["version"].is_string() ||
      !storage::Version::parse(j["version"].get<std::string>(), &item->version))
    return fail(error, "a record needs its version (ms.counter@node)");
  item->deleted = j.value("deleted", false);
  if (j.contains("json") && !j["json"].is_string())
    return fail(error, "json must be the JSON part's text");
  if (j.contains("json")) item->json = j["json"].get<std::string>();
  if (j.contains("data") &&
      (!j["data"].is_string() || !unbase64(j["data"].get<std::string>(), &item->data)))
    return fail(error, "data must be base64");
  if (j.contains("expiry_ms") && !j["expiry_ms"].is_number_unsigned())
    return fail(error, "expiry_ms must be a number");
  if (j.contains("flags") && !j["flags"].is_number_unsigned())
    return fail(error, "flags must be a number");
  item->expiry_ms = j.value("expiry_ms", uint64_t(0));
  item->user_flags = j.value("flags", uint32_t(0));
  if (item->user_flags & large::manifest_flag)
    return fail(error, "flags bit 31 is reserved (it marks a large value's manifest)");
  if (j.contains("large")) {
    if (!j["large"].is_number_unsigned() || item->deleted || j.contains("json") ||
        j.contains("data"))
      return fail(error, "large must be a size, on a record with no json or data");
    item->large = true;
    item->size = large_size_ = j["large"].get<uint64_t>();
    parts_ = large::Manifest{large_size_, {}}.chunks();
    next_part_ = 0;
  }
  ++records_;
  *kind = Line::record;
  return true;
}

}  // namespace apsis::exportfmt
