// The export stream (`apsis export`, `apsis import`; docs/export.md): JSON lines. A header
// line, one line per record (key, version, json part as text, data part in base64, expiry,
// flags; a deleted key only with its version; a large value as its size, then its bytes in
// part lines of 1 MiB), and a trailer line that counts the records
// and carries a checksum chained over every line before it, so that a truncated or altered
// stream is refused before anything is written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "messages/types.hpp"

namespace apsis::exportfmt {

constexpr int format_version = 1;

/// A record as import writes it.
struct Item {
  std::string key;
  std::string json, data;
  storage::Version version;  ///< as it was exported (import writes a new one)
  uint64_t expiry_ms = 0;
  uint32_t user_flags = 0;
  bool deleted = false;
  bool large = false;  ///< a large value of `size` bytes: its part lines follow
  uint64_t size = 0;
  uint64_t part = 0;  ///< a part line: its index (data holds its bytes)
};

/// Writes a stream: each call returns its line, '\n' included, and chains the checksum.
class Writer {
 public:
  std::string header(const std::string& ns, const storage::Version& since);
  std::string record(const listed_record& r);
  /// A large value's record (r's key, version, expiry and flags; not its manifest), which
  /// part(0), part(1)... must follow: chunks() of them, each 1 MiB but the last.
  std::string large(const listed_record& r, uint64_t size);
  std::string part(uint64_t index, std::string_view bytes);
  std::string trailer();
  uint64_t records() const { return records_; }

 private:
  std::string line(std::string text);
  uint64_t chain_ = 0, records_ = 0;
};

/// Reads a stream line by line (each without its '\n'): the header first, then records,
/// then the trailer, whose count and checksum must match what came before.
class Reader {
 public:
  enum class Line { header, record, part, trailer };
  /// What the line is (a record fills *item); false with *error naming the line and why.
  bool next(std::string_view text, Line* kind, Item* item, std::string* error);
  /// Whether the trailer came and matched.
  bool complete() const { return complete_; }
  const std::string& ns() const { return ns_; }

 private:
  bool fail(std::string* error, const std::string& why) const;
  bool read_part(const nlohmann::json& j, Item* item, std::string* error);
  uint64_t chain_ = 0, records_ = 0, line_no_ = 0;
  uint64_t large_size_ = 0, parts_ = 0, next_part_ = 0;  ///< the large value being read
  bool header_ = false, complete_ = false;
  std::string ns_;
};

}  // namespace apsis::exportfmt
