// libFuzzer: arbitrary bytes into the RESP command parser, fed whole and in two pieces.
// Must never crash, never read out of bounds, and agree with itself across the split.
#include <cstdint>
#include <string>
#include <vector>

#include "messages/resp.hpp"

using namespace apsis;

static std::vector<std::vector<std::string>> parse_all(const std::string& in, bool* failed) {
  std::vector<std::vector<std::string>> out;
  size_t pos = 0;
  std::vector<std::string> args;
  std::string err;
  resp::Limits limits;
  limits.max_bulk = 1 << 16;
  limits.max_args = 1 << 10;
  limits.max_inline = 1 << 12;
  for (int i = 0; i < 100000; ++i) {
    resp::Parse r = resp::parse_command(in, &pos, &args, &err, limits);
    if (r == resp::Parse::incomplete) break;
    if (r == resp::Parse::error) {
      if (err.empty()) __builtin_trap();  // an error always says why
      *failed = true;
      break;
    }
    out.push_back(args);
  }
  return out;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  bool failed = false;
  auto whole = parse_all(in, &failed);
  // Parsing a prefix must give a prefix of the same commands (incremental parsing).
  bool failed_prefix = false;
  auto prefix = parse_all(in.substr(0, size / 2), &failed_prefix);
  if (!failed_prefix && !failed && prefix.size() > whole.size()) __builtin_trap();
  for (size_t i = 0; i < prefix.size() && !failed_prefix && i < whole.size(); ++i)
    if (prefix[i] != whole[i]) __builtin_trap();
  return 0;
}
