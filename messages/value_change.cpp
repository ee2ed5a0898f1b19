#include "messages/value_change.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <nlohmann/json.hpp>

namespace apsis {

bool parse_integer(const std::string& s, int64_t* out) {
  const size_t digits = s.size() - (!s.empty() && s[0] == '-');
  if (digits == 0 || digits > 20 || (digits > 1 && s[s.size() - digits] == '0')) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && s != "-0";
}

namespace {

/// Redis's float: what strtold takes whole, finite, with no space before it.
bool parse_float(const std::string& s, long double* out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  *out = std::strtold(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

/// The shortest fixed-point text that reads back as v (Redis writes no exponent).
std::string float_text(long double v) {
  char buf[512];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, double(v), std::chars_format::fixed);
  return ec == std::errc() ? std::string(buf, end) : std::string("0");
}

bool fail(std::string* why, const char* text) {
  *why = text;
  return false;
}

}  // namespace

bool apply_change(const value_change& c, const std::string& arg, bool exists,
                  const std::string& old, std::string* value, bool* write, std::string* why) {
  *write = true;
  switch (c.kind) {
    case value_change::incr: {
      int64_t n = 0;
      if (exists && !parse_integer(old, &n))
        return fail(why, "value is not an integer or out of range");
      if ((c.by > 0 && n > std::numeric_limits<int64_t>::max() - c.by) ||
          (c.by < 0 && n < std::numeric_limits<int64_t>::min() - c.by))
        return fail(why, "increment or decrement would overflow");
      *value = std::to_string(n + c.by);
      return true;
    }
    case value_change::incr_float: {
      long double n = 0, by = 0;
      if ((exists && !parse_float(old, &n)) || !parse_float(arg, &by))
        return fail(why, "value is not a valid float");
      if (!std::isfinite(n + by)) return fail(why, "increment would produce NaN or Infinity");
      *value = float_text(n + by);
      return true;
    }
    case value_change::append:
      if (old.size() + arg.size() > c.max_size)
        return fail(why, "string exceeds maximum allowed size");
      *value = old + arg;
      return true;
    case value_change::setrange: {
      if (c.by < 0) return fail(why, "offset is out of range");
      const size_t at = size_t(c.by);
      if (arg.empty()) {  // nothing to write: the value as it is
        *write = false;
        *value = old;
        return true;
      }
      if (at > c.max_size || arg.size() > c.max_size - at)
        return fail(why, "string exceeds maximum allowed size");
      *value = old;
      if (value->size() < at + arg.size()) value->resize(at + arg.size(), '\0');
      value->replace(at, arg.size(), arg);
      return true;
    }
    case value_change::merge_patch: {
      nlohmann::json doc = nlohmann::json::parse(old.empty() ? "null" : old, nullptr, false);
      const nlohmann::json patch = nlohmann::json::parse(arg, nullptr, false);
      if (patch.is_discarded()) return fail(why, "the patch is not a valid JSON document");
      if (doc.is_discarded()) return fail(why, "the stored JSON part is not valid JSON");
      doc.merge_patch(patch);
      *value = doc.dump();
      if (value->size() > c.max_size) return fail(why, "the patched JSON part exceeds the limit");
      return true;
    }
  }
  return fail(why, "unknown change");
}

}  // namespace apsis
