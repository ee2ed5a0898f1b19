#include "messages/listing.hpp"

#include <charconv>
#include <cstring>

#include "storage/record_codec.hpp"

namespace apsis {

namespace codec = storage::codec;

// Layout: end (64), count (4), flags (1), since stamp (8) and node (8), then the glob.
std::string list_request::encode() const {
  std::string out(85, '\0');
  std::memcpy(out.data(), end.bytes.data(), storage::Id::size);
  codec::put_u32(out.data() + 64, count);
  out[68] = char((payload ? 1 : 0) | (tombstones ? 2 : 0) | (manifests ? 4 : 0));
  codec::put_u64(out.data() + 69, since.stamp);
  codec::put_u64(out.data() + 77, since.node);
  return out + match;
}

bool list_request::decode(std::string_view bytes, list_request* out) {
  if (bytes.size() < 85 || (uint8_t(bytes[68]) & ~7u)) return false;
  std::memcpy(out->end.bytes.data(), bytes.data(), storage::Id::size);
  out->count = codec::get_u32(bytes.data() + 64);
  out->payload = bytes[68] & 1;
  out->tombstones = bytes[68] & 2;
  out->manifests = bytes[68] & 4;
  out->since = {codec::get_u64(bytes.data() + 69), codec::get_u64(bytes.data() + 77)};
  out->match.assign(bytes.substr(85));
  return true;
}

bool next_id(const storage::Id& id, storage::Id* out) {
  *out = id;
  for (size_t i = storage::Id::size; i-- > 0;)
    if (++out->bytes[i] != 0) return true;
  return false;
}

bool previous_id(const storage::Id& id, storage::Id* out) {
  *out = id;
  for (size_t i = storage::Id::size; i-- > 0;)
    if (out->bytes[i]-- != 0) return true;
  return false;
}

namespace {

/// One bracket class at p (just past '['): whether c is in it; p moves past its ']'. An
/// unclosed class matches as Redis's does: up to the end of the pattern.
bool class_match(std::string_view pat, size_t& p, char c) {
  const bool negate = p < pat.size() && pat[p] == '^';
  if (negate) ++p;
  bool hit = false;
  for (; p < pat.size() && pat[p] != ']'; ++p) {
    if (pat[p] == '\\' && p + 1 < pat.size()) {
      hit = hit || pat[++p] == c;
    } else if (p + 2 < pat.size() && pat[p + 1] == '-') {
      char lo = pat[p], hi = pat[p + 2];
      if (lo > hi) std::swap(lo, hi);
      hit = hit || (c >= lo && c <= hi);
      p += 2;
    } else {
      hit = hit || pat[p] == c;
    }
  }
  if (p < pat.size()) ++p;  // past ']'
  return hit != negate;
}

}  // namespace

// Iterative glob with one backtrack point for the last '*' (linear in practice, no recursion).
bool glob_match(std::string_view pat, std::string_view key) {
  size_t p = 0, k = 0, star_p = std::string_view::npos, star_k = 0;
  while (k < key.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star_p = ++p, star_k = k;
      continue;
    }
    if (p < pat.size()) {
      size_t q = p;
      bool ok;
      if (pat[q] == '?') {
        ok = true, ++q;
      } else if (pat[q] == '[') {
        ++q;
        ok = class_match(pat, q, key[k]);
      } else {
        if (pat[q] == '\\' && q + 1 < pat.size()) ++q;
        ok = pat[q] == key[k], ++q;
      }
      if (ok) {
        p = q, ++k;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p, k = ++star_k;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

std::string prefix_glob(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out + '*';
}

namespace {

uint8_t check_of(uint64_t top56) {
  return uint8_t(codec::hash64(std::string_view(reinterpret_cast<const char*>(&top56), 8)) % 255 +
                 1);
}

}  // namespace

std::string cursor_text(bool more, const storage::Id& next) {
  if (!more) return "0";
  const uint64_t top56 = next.prefix() >> 8;
  return std::to_string(top56 << 8 | check_of(top56));
}

bool parse_cursor(const std::string& text, storage::Id* start, std::string* why) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    *why = "invalid cursor";
    return false;
  }
  if (v == 0) {
    *start = storage::Id::min();
    return true;
  }
  if (check_of(v >> 8) != uint8_t(v)) {
    *why = "invalid cursor: " + text + " was never issued";
    return false;
  }
  *start = storage::Id::at_prefix(v >> 8 << 8);
  return true;
}

}  // namespace apsis
