// Listing a namespace (op_kind::list): what a page request carries, and the cursor every
// surface shows. A listing walks the id space from a point on, one owner's range at a time;
// a cursor is where the next page starts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/record.hpp"

namespace apsis {

/// A page request's parameters, carried in the operation's data (encode()), so that every
/// other operation stays as small on the wire as it was. The operation's id is where the page
/// starts and its key the namespace.
struct list_request {
  storage::Id end = storage::Id::max();  ///< the last id the page may hold (its owner's range)
  uint32_t count = 10;                   ///< how many stored records it examines (Redis's COUNT)
  bool payload = false;                  ///< carry each record's json and data (export)
  bool tombstones = false;               ///< deleted and expired keys too (export)
  bool manifests = false;  ///< large values' manifests only, with their payload (the collector)
  storage::Version since;  ///< only records of this version or newer
  std::string match;       ///< a glob on keys (Redis's MATCH); empty: every key

  std::string encode() const;
  /// false on anything encode() did not write.
  static bool decode(std::string_view bytes, list_request* out);
};

/// The most a page's payloads hold: a page stops early past it (export of large values).
constexpr size_t list_payload_budget = 4u << 20;
/// The most keys one listing call (REST, the binary protocol) may ask for.
constexpr size_t list_limit_max = 10000;
/// The most records a page examines, whatever COUNT asks.
constexpr uint32_t list_count_max = 100000;

/// The id after `id` in id order; false for Id::max().
bool next_id(const storage::Id& id, storage::Id* out);
/// The id before `id`; false for Id::min().
bool previous_id(const storage::Id& id, storage::Id* out);

/// Whether a Redis glob (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes) matches the whole key.
bool glob_match(std::string_view pattern, std::string_view key);

/// The glob that matches the keys that start with `prefix`.
std::string prefix_glob(std::string_view prefix);

/// Cursors as every surface shows them: a decimal number, 0 to start and 0 at the end (as
/// Redis's SCAN). It holds the top 56 bits of the next page's first id and an 8-bit check
/// of them, so that a cursor that was never issued is refused rather than read as a place.
/// Truncated to 56 bits, a cursor may list again a few keys of the page before (never skip).
std::string cursor_text(bool more, const storage::Id& next);
/// Where a cursor's page starts; false (with *why) for text that is not an issued cursor.
bool parse_cursor(const std::string& text, storage::Id* start, std::string* why);

}  // namespace apsis
