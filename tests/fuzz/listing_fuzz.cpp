// libFuzzer: arbitrary bytes as an export stream (line by line), as a glob and a key, as a
// cursor and as a page request. Reading must refuse or accept, never crash; a page request
// that decodes must encode back to the same bytes.
#include <cstdint>
#include <string>

#include "messages/export_format.hpp"
#include "messages/listing.hpp"

using namespace apsis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  exportfmt::Reader reader;
  exportfmt::Reader::Line kind;
  exportfmt::Item item;
  std::string error;
  for (size_t pos = 0; pos < in.size();) {
    size_t nl = in.find('\n', pos);
    if (nl == std::string::npos) nl = in.size();
    if (!reader.next(std::string_view(in).substr(pos, nl - pos), &kind, &item, &error)) break;
    pos = nl + 1;
  }
  const size_t half = in.size() / 2;
  (void)glob_match(std::string_view(in).substr(0, half), std::string_view(in).substr(half));
  storage::Id start;
  (void)parse_cursor(in, &start, &error);
  list_request q;
  if (list_request::decode(in, &q) && q.encode() != in) __builtin_trap();
  return 0;
}
