// `apsis-bench storage`: db_bench-style phases against one storage engine.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace apsis::bench {

struct StorageBenchOptions {
  std::string engine = "blob";
  std::string dir;  ///< default: a fresh directory under /tmp, removed afterwards
  uint64_t num = 1000000;
  uint64_t key_size = 16;
  uint64_t value_size = 100;
  uint64_t sync_ops = 4000;  ///< operations in each fsync `always` phase
  uint64_t sync_threads = 16;
  uint64_t seed = 1;
};

void add_storage_command(CLI::App& app, StorageBenchOptions& opts);
int run_storage_bench(const StorageBenchOptions& opts);

}  // namespace apsis::bench
