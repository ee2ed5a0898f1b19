// `apsis-bench net`: load over the binary protocol (docs/protocol.md) against a running node.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace apsis::bench {

struct NetBenchOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7380;
  uint32_t connections = 16;
  uint32_t pipeline = 16;  ///< requests in flight per connection
  uint64_t ops = 200000;   ///< in all
  uint64_t keys = 100000;
  uint32_t value_size = 100;
  double read_ratio = 0.5;  ///< 0..1
  double zipf = 0.99;       ///< 0 = uniform keys
  uint64_t seed = 1;
  std::string read;      ///< gets' read policy (one, quorum, all); empty: the node's
  std::string workload;  ///< a YCSB core workload (a, b, c, d, f); empty: read_ratio's mix
};

void add_net_command(CLI::App& app, NetBenchOptions& opts);
int run_net_bench(const NetBenchOptions& opts);

}  // namespace apsis::bench
