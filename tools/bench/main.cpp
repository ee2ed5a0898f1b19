// apsis-bench: one benchmark program, a subcommand per hot path.
#include <CLI/CLI.hpp>

#include "tools/bench/net_bench.hpp"
#include "tools/bench/routes_bench.hpp"
#include "tools/bench/storage_bench.hpp"

int main(int argc, char** argv) {
  CLI::App app{"apsis-bench: throughput and latency percentiles of apsis's hot paths"};
  app.require_subcommand(1);
  apsis::bench::StorageBenchOptions storage;
  apsis::bench::add_storage_command(app, storage);
  apsis::bench::NetBenchOptions net;
  apsis::bench::add_net_command(app, net);
  apsis::bench::RoutesBenchOptions routes;
  apsis::bench::add_routes_command(app, routes);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
