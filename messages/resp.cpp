#include "messages/resp.hpp"

#include <algorithm>
#include <cstring>

namespace apsis::resp {

namespace {

/// Reads "<digits>\r\n" at buf[*pos] after a type byte; false on anything else.
/// Returns incomplete if no line end has arrived yet (bounded by 32 bytes).
Parse read_number(std::string_view buf, size_t* pos, int64_t* out, std::string* error) {
  // The usual case in one pass: a sign, 1-18 digits, CRLF (a search for the CRLF and then a
  // character-set check of the digits were ~350 instructions a SET's four numbers).
  const char* b = buf.data() + *pos;
  const size_t n = buf.size() - *pos;
  const size_t first = n > 0 && b[0] == '-' ? 1 : 0;
  size_t i = first;
  int64_t v = 0;
  // At most 18 digits taken (no overflow); a 19th is not followed by CR, so it is an error.
  for (; i < n && i - first < 18 && unsigned(b[i] - '0') < 10; ++i) v = v * 10 + (b[i] - '0');
  if (i > first && i + 1 < n && b[i] == '\r' && b[i + 1] == '\n') {
    *out = first ? -v : v;
    *pos += i + 2;
    return Parse::complete;
  }
  // Anything else is a number still arriving, or not a number.
  if (buf.find("\r\n", *pos) == std::string_view::npos && n <= 32) return Parse::incomplete;
  return *error = "Protocol error: invalid length", Parse::error;
}

Parse parse_inline(std::string_view buf, size_t* pos, std::vector<std::string>* args,
                   std::string* error, const Limits& limits) {
  size_t nl = buf.find('\n', *pos);
  if (nl == std::string_view::npos) {
    if (buf.size() - *pos > limits.max_inline)
      return *error = "Protocol error: too big inline request", Parse::error;
    return Parse::incomplete;
  }
  if (nl - *pos > limits.max_inline)
    return *error = "Protocol error: too big inline request", Parse::error;
  std::string_view line = buf.substr(*pos, nl - *pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  args->clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) args->emplace_back(line.substr(start, i - start));
  }
  *pos = nl + 1;
  return Parse::complete;
}

}  // namespace

constexpr uint64_t max_skip = 1ull << 40;  ///< a longer argument is no client's mistake

Parse Skip::drain(std::string_view buf, size_t* pos, std::string* error) {
  for (;;) {
    const uint64_t take = std::min<uint64_t>(bytes, buf.size() - *pos);
    *pos += size_t(take);
    bytes -= take;
    if (bytes > 0) return Parse::incomplete;
    if (args == 0) return Parse::complete;
    if (*pos >= buf.size()) return Parse::incomplete;
    if (buf[*pos] != '$') return *error = "Protocol error: expected '$'", Parse::error;
    size_t p = *pos + 1;
    int64_t len = 0;
    Parse r = read_number(buf, &p, &len, error);
    if (r != Parse::complete) return r;
    if (len < 0 || uint64_t(len) > max_skip)
      return *error = "Protocol error: invalid bulk length", Parse::error;
    *pos = p;
    bytes = uint64_t(len) + 2;
    --args;
  }
}

Parse parse_command(std::string_view buf, size_t* pos, std::vector<std::string>* args,
                    std::string* error, const Limits& limits, Skip* skip, size_t* need) {
  if (*pos >= buf.size()) return Parse::incomplete;
  if (buf[*pos] != '*') return parse_inline(buf, pos, args, error, limits);
  size_t p = *pos + 1;
  int64_t n = 0;
  Parse r = read_number(buf, &p, &n, error);
  if (r != Parse::complete) return r;
  if (n > int64_t(limits.max_args))
    return *error = "Protocol error: invalid multibulk length", Parse::error;
  args->clear();
  if (n <= 0) {  // an empty or null array: nothing to run
    *pos = p;
    return Parse::complete;
  }
  args->reserve(size_t(std::min<int64_t>(n, 1024)));
  for (int64_t i = 0; i < n; ++i) {
    if (p >= buf.size()) return Parse::incomplete;
    if (buf[p] != '$')
      return *error = std::string("Protocol error: expected '$', got '") + buf[p] + "'",
             Parse::error;
    ++p;
    int64_t len = 0;
    r = read_number(buf, &p, &len, error);
    if (r != Parse::complete) return r;
    if (skip && len >= 0 && uint64_t(len) > limits.max_bulk && uint64_t(len) <= max_skip) {
      *error = "ERR argument of " + std::to_string(len) + " bytes exceeds the limit of " +
               std::to_string(limits.max_bulk) + " bytes (limits.max_value_size)";
      skip->bytes = uint64_t(len) + 2;
      skip->args = n - i - 1;
      *pos = p;
      return Parse::oversized;
    }
    if (len < 0 || uint64_t(len) > limits.max_bulk)
      return *error = "Protocol error: invalid bulk length", Parse::error;
    if (buf.size() - p < uint64_t(len) + 2) {
      if (need) *need = p + size_t(len) + 2 - *pos;
      return Parse::incomplete;
    }
    if (buf[p + len] != '\r' || buf[p + len + 1] != '\n')
      return *error = "Protocol error: bulk string not followed by CRLF", Parse::error;
    args->emplace_back(buf.substr(p, size_t(len)));
    p += size_t(len) + 2;
  }
  *pos = p;
  return Parse::complete;
}

void simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += "\r\n";
}

void error(std::string& out, std::string_view s) {
  out += '-';
  for (char c : s) out += (c == '\r' || c == '\n') ? ' ' : c;
  out += "\r\n";
}

void integer(std::string& out, int64_t v) {
  out += ':';
  out += std::to_string(v);
  out += "\r\n";
}

void bulk(std::string& out, std::string_view s) {
  if (s.size() > (1u << 20)) out.reserve(out.size() + s.size() + 32);  // not twice over
  out += '$';
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

void null_bulk(std::string& out) { out += "$-1\r\n"; }

void array(std::string& out, size_t n) {
  out += '*';
  out += std::to_string(n);
  out += "\r\n";
}

}  // namespace apsis::resp
