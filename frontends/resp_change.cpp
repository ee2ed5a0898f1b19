#include "frontends/resp_change.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "messages/resp.hpp"

namespace apsis::resp {

bool parse_integer(const std::string& s, int64_t* out) {
  const size_t digits = s.size() - (!s.empty() && s[0] == '-');
  if (digits == 0 || digits > 20 || (digits > 1 && s[s.size() - digits] == '0')) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && !(s == "-0");
}

namespace {

/// Redis's float: what strtold takes whole, finite, with no space around.
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

bool fail(std::string* reply, const char* why) {
  reply->clear();
  error(*reply, why);
  return false;
}

}  // namespace

bool apply_change(const Change& c, bool exists, const std::string& old, std::string* value,
                  std::string* reply, bool* write) {
  reply->clear();
  *write = true;
  switch (c.kind) {
    case Change::incr: {
      int64_t n = 0;
      if (exists && !parse_integer(old, &n))
        return fail(reply, "ERR value is not an integer or out of range");
      if ((c.by > 0 && n > std::numeric_limits<int64_t>::max() - c.by) ||
          (c.by < 0 && n < std::numeric_limits<int64_t>::min() - c.by))
        return fail(reply, "ERR increment or decrement would overflow");
      *value = std::to_string(n + c.by);
      integer(*reply, n + c.by);
      return true;
    }
    case Change::incr_float: {
      long double n = 0, by = 0;
      if (exists && !parse_float(old, &n)) return fail(reply, "ERR value is not a valid float");
      if (!parse_float(c.arg, &by)) return fail(reply, "ERR value is not a valid float");
      if (!std::isfinite(n + by)) return fail(reply, "ERR increment would produce NaN or Infinity");
      *value = float_text(n + by);
      bulk(*reply, *value);
      return true;
    }
    case Change::append:
      if (old.size() + c.arg.size() > c.max_size)
        return fail(reply, "ERR string exceeds maximum allowed size");
      *value = old + c.arg;
      integer(*reply, int64_t(value->size()));
      return true;
    case Change::setrange: {
      if (c.by < 0) return fail(reply, "ERR offset is out of range");
      const size_t at = size_t(c.by);
      if (c.arg.empty()) {  // nothing to write: the length as it is
        *write = false;
        integer(*reply, int64_t(exists ? old.size() : 0));
        return true;
      }
      if (at > c.max_size || c.arg.size() > c.max_size - at)
        return fail(reply, "ERR string exceeds maximum allowed size");
      *value = old;
      if (value->size() < at + c.arg.size()) value->resize(at + c.arg.size(), '\0');
      value->replace(at, c.arg.size(), c.arg);
      integer(*reply, int64_t(value->size()));
      return true;
    }
  }
  return fail(reply, "ERR unknown change");
}

}  // namespace apsis::resp
