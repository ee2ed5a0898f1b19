#include "storage/record.hpp"

#include <charconv>

#include <chrono>
#include <nlohmann/json.hpp>

namespace apsis::storage {

std::string Version::to_string() const {
  return std::to_string(stamp >> 16) + "." + std::to_string(stamp & 0xffff) + "@" +
         std::to_string(node);
}

bool Version::parse(std::string_view t, Version* out) {
  auto number = [](std::string_view d, uint64_t* v) {
    auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), *v);
    return !d.empty() && ec == std::errc() && end == d.data() + d.size();
  };
  const size_t dot = t.find('.'), at = t.find('@');
  uint64_t ms = 0, counter = 0, node = 0;
  if (dot == std::string_view::npos || at == std::string_view::npos || at < dot) return false;
  if (!number(t.substr(0, dot), &ms) || !number(t.substr(dot + 1, at - dot - 1), &counter) ||
      !number(t.substr(at + 1), &node) || ms >= (1ull << 48) || counter > 0xffff)
    return false;
  *out = {ms << 16 | counter, node};
  return true;
}

RecordMeta Record::meta() const {
  return RecordMeta{id,
                    key,
                    version,
                    expiry_ms,
                    user_flags,
                    tombstone,
                    static_cast<uint32_t>(json.size()),
                    static_cast<uint32_t>(data.size())};
}

Record Record::make_tombstone(const Id& id, const Version& v, std::string key) {
  Record r;
  r.id = id;
  r.version = v;
  r.key = std::move(key);
  r.tombstone = true;
  return r;
}

Status validate(const Record& r, const Limits& limits) {
  size_t max_key = std::min(limits.max_key_size, Limits::key_hard_max);
  if (r.key.size() > max_key)
    return Status::invalid_argument("key of " + std::to_string(r.key.size()) +
                                    " bytes exceeds the limit of " + std::to_string(max_key));
  size_t value = r.json.size() + r.data.size();
  if (value > limits.max_value_size)
    return Status::invalid_argument("value of " + std::to_string(value) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(limits.max_value_size));
  if (r.tombstone && value != 0)
    return Status::invalid_argument("a tombstone carries no json or data");
  if (!r.json.empty() && !nlohmann::json::accept(r.json))
    return Status::invalid_argument("json part is not a valid JSON document");
  return Status::ok();
}

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

}  // namespace apsis::storage
