// libFuzzer: arbitrary bytes as a node config file. Loading must accept or refuse with a
// message naming the source, never crash.
#include <cstdint>
#include <string>

#include "config/node_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  apsis::config::NodeConfig cfg;
  std::string error;
  if (!apsis::config::load_config(text, "fuzz.toml", {}, &cfg, &error) &&
      error.rfind("fuzz.toml", 0) != 0)
    __builtin_trap();  // every error names the file
  return 0;
}
