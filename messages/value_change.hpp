// A new value computed from the stored one: RESP's INCR, INCRBY, DECR, DECRBY, INCRBYFLOAT,
// APPEND and SETRANGE, with Redis's rules and error texts, and REST's merge patch (RFC 7386)
// of the JSON part. The shard that owns a key's first
// replica computes it under its lock (op_kind::change); the coordinator then carries the
// record it wrote to the other groups, so every replica stores the same value and version.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <string>

namespace apsis {

/// What a change does to a value; its bytes (APPEND, SETRANGE), increment (INCRBYFLOAT, as
/// text) or patch (merge_patch, JSON text) travel in the operation's data. merge_patch changes
/// the JSON part; the others, the data part.
struct value_change {
  enum kind_t : uint8_t { incr, incr_float, append, setrange, merge_patch };
  uint8_t kind = incr;
  int64_t by = 0;         ///< incr: the increment; setrange: the offset
  uint64_t max_size = 0;  ///< the longest value allowed (append, setrange, merge_patch)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, value_change& x) {
  return f(caf::meta::type_name("value_change"), x.kind, x.by, x.max_size);
}

/// Redis's integer: an optional '-', then digits without a leading zero, within int64.
bool parse_integer(const std::string& s, int64_t* out);

/// The new value from the old one (exists: whether the key held one); false with *why
/// (Redis's error text, without "ERR ") when the change cannot apply. *write is false when
/// nothing needs writing (SETRANGE of no bytes).
bool apply_change(const value_change& c, const std::string& arg, bool exists,
                  const std::string& old, std::string* value, bool* write, std::string* why);

}  // namespace apsis
