// Record: what every engine stores under an id, and the checks a record must pass
// before any engine stores it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/id.hpp"
#include "storage/status.hpp"

namespace apsis::storage {

/// A hybrid-logical-clock stamp (physical ms << 16 | logical counter) with the writer's node
/// id as tie-break: a total order. The newer version wins everywhere.
struct Version {
  uint64_t stamp = 0;
  uint64_t node = 0;

  friend bool operator==(const Version& a, const Version& b) {
    return a.stamp == b.stamp && a.node == b.node;
  }
  friend bool operator!=(const Version& a, const Version& b) { return !(a == b); }
  friend bool operator<(const Version& a, const Version& b) {
    return a.stamp != b.stamp ? a.stamp < b.stamp : a.node < b.node;
  }
  friend bool operator<=(const Version& a, const Version& b) { return !(b < a); }
  static Version max() { return {UINT64_MAX, UINT64_MAX}; }
  /// "ms.counter@node": how versions are shown (the CLI, REST's ETags, the export stream).
  std::string to_string() const;
  /// Reads to_string()'s text; false on anything else.
  static bool parse(std::string_view text, Version* out);
};

/// Metadata of a stored record: everything but the json and data parts.
struct RecordMeta {
  Id id;
  std::string key;
  Version version;
  uint64_t expiry_ms = 0;  ///< Unix ms after which the record reads as absent; 0 = never.
  uint32_t user_flags = 0;
  bool tombstone = false;
  uint32_t json_size = 0;
  uint32_t data_size = 0;

  bool expired(uint64_t now_ms) const { return expiry_ms != 0 && expiry_ms <= now_ms; }
};

struct Record {
  Id id;
  std::string key;
  std::string json;  ///< Empty, or one valid JSON document.
  std::string data;  ///< Any bytes.
  Version version;
  uint64_t expiry_ms = 0;
  uint32_t user_flags = 0;
  bool tombstone = false;

  RecordMeta meta() const;
  static Record make_tombstone(const Id& id, const Version& v, std::string key = {});
};

struct Limits {
  static constexpr size_t key_hard_max = 4096;
  size_t max_key_size = key_hard_max;
  size_t max_value_size = 32u << 20;  ///< json + data bytes.
  /// A value streamed through REST larger than max_value_size is stored in chunks
  /// (messages/large.hpp), up to this many bytes.
  uint64_t max_object_size = 4ull << 30;
};

/// invalid_argument naming the problem (oversized key or value, invalid JSON, a tombstone
/// with a payload), or ok.
Status validate(const Record& r, const Limits& limits);

/// Wall-clock Unix milliseconds, the clock that expiry is compared with.
uint64_t now_ms();

}  // namespace apsis::storage

namespace apsis::storage {

/// The version rule every engine applies to a put over a stored record: `stale` if the
/// incoming version is older; ok with *write = false if it is the same (a harmless replay).
inline Status version_check(const Version& stored, const Version& incoming, bool* write) {
  *write = stored < incoming;
  if (incoming < stored)
    return Status::stale("stored version " + stored.to_string() + " is newer than " +
                         incoming.to_string());
  return Status::ok();
}

}  // namespace apsis::storage
