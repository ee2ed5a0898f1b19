// `apsis-bench routes`: how the route table and the ring grow with the cluster, computed with
// the real route_table, ring and gossip_delta (messages/route.hpp) on a model of the PEER's
// gossip (actors/peer.cpp): route state and gossip bytes per node, rounds until every node
// holds the same table after a join and a leave, the keys a join moves, and the balance of
// a group's keys over its backends for a number of ring points.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <vector>

namespace apsis::bench {

struct RoutesBenchOptions {
  std::vector<size_t> nodes{10, 50, 100, 1000};
  std::vector<size_t> points{16, 64, 256, 1024};
  std::vector<size_t> group_sizes{3, 9, 33};
  size_t cluster_points = 1024;  ///< ring points per backend in the table-size and gossip rows
  size_t trials = 200;           ///< random rings per balance figure
};

void add_routes_command(CLI::App& app, RoutesBenchOptions& opts);
int run_routes_bench(const RoutesBenchOptions& opts);

}  // namespace apsis::bench
