#include "tools/bench/routes_bench.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "messages/route.hpp"

namespace apsis::bench {

namespace {

node_entry entry(size_t i, size_t points) {
  node_entry e;
  e.name = "node-" + std::to_string(i);
  e.incarnation = 1700000000000 + i;  // a start time in ms, as apsisd's
  e.version = 1;
  e.host = "10.0.0." + std::to_string(i % 250);
  e.port = 7400;
  e.binary_port = 7380;
  e.backends.push_back({1, 1, {}, random_seed(), uint32_t(points)});
  return e;
}

route_table table_of(size_t n, size_t points) {
  route_table t;
  for (size_t i = 0; i < n; ++i) t.merge(entry(i, points));
  return t;
}

/// Bytes of a gossip message's table as CAF serializes it for BASP.
size_t wire_bytes(caf::actor_system& sys, const route_table& t) {
  std::vector<char> buf;
  caf::binary_serializer sink(sys, buf);
  auto err = sink(const_cast<route_table&>(t));
  return err ? 0 : buf.size();
}

/// The model: every node linked to every node it knows of (apsisd dials each node it hears
/// of, and a new connection swaps whole tables at once); each round every node sends each
/// linked node its gossip_delta, and the messages are merged at the round's end. Returns the
/// rounds until every table holds the same entries (-1 past 100). The bytes counted are the
/// rounds' gossip messages, not the tables swapped on connecting.
struct Model {
  std::vector<route_table> tables;
  std::vector<std::vector<gossip_sent>> sent;  ///< [from][to]
  std::vector<std::vector<bool>> linked;

  explicit Model(const route_table& converged) {
    size_t n = converged.nodes.size();
    tables.assign(n, converged);
    sent.assign(n, std::vector<gossip_sent>(n));
    linked.assign(n, std::vector<bool>(n, true));
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) gossip_delta(converged, name(i), &sent[i][j]);
  }
  static std::string name(size_t i) { return "node-" + std::to_string(i); }

  /// A node of its own table joins through node `seed`: they connect and swap tables.
  void join(const node_entry& e, size_t seed) {
    size_t j = tables.size();
    tables.push_back({});
    tables[j].merge(e);
    for (auto& row : sent) row.emplace_back();
    sent.emplace_back(j + 1);
    for (auto& row : linked) row.push_back(false);
    linked.emplace_back(j + 1, false);
    connect(j, seed);
  }
  void connect(size_t a, size_t b) {
    linked[a][b] = linked[b][a] = true;
    route_table ta = tables[a], tb = tables[b];
    tables[a].merge(tb), tables[b].merge(ta);
    sent[a][b].clear(), sent[b][a].clear();  // as peer.cpp's adopt(): the swap was whole
    gossip_delta(tables[a], name(a), &sent[a][b]);
    gossip_delta(tables[b], name(b), &sent[b][a]);
  }
  bool converged() const {
    for (const auto& t : tables) {
      if (t.nodes.size() != tables[0].nodes.size()) return false;
      for (const auto& [n, e] : t.nodes) {
        auto it = tables[0].nodes.find(n);
        if (it == tables[0].nodes.end() || e.newer_than(it->second) || it->second.newer_than(e))
          return false;
      }
    }
    return true;
  }
  /// Gossip rounds until converged; *bytes adds what every node sent until the news stopped
  /// travelling (each node passes a new entry on to each of its links once).
  int rounds_until_converged(caf::actor_system& sys, size_t* bytes) {
    int rounds = converged() ? 0 : -1;
    for (int r = 1; r <= 100; ++r) {
      bool news = round(sys, bytes);
      if (rounds < 0 && converged()) rounds = r;
      if (rounds >= 0 && !news) break;
    }
    return rounds;
  }
  /// One round: every node gossips to every node linked, then dials those it heard of. False
  /// when it carried nothing but the senders' own unchanged entries.
  bool round(caf::actor_system& sys, size_t* bytes) {
    size_t n = tables.size();
    bool news = false;
    std::vector<std::pair<size_t, route_table>> inbox;
    for (size_t a = 0; a < n; ++a)
      for (size_t b = 0; b < n; ++b)
        if (a != b && linked[a][b]) {
          auto own_before = sent[a][b][name(a)];
          inbox.emplace_back(b, gossip_delta(tables[a], name(a), &sent[a][b]));
          *bytes += wire_bytes(sys, inbox.back().second);
          news = news || inbox.back().second.nodes.size() > 1 || sent[a][b][name(a)] != own_before;
        }
    for (auto& [to, t] : inbox) tables[to].merge(t);
    for (size_t a = 0; a < n; ++a)
      for (size_t b = 0; b < n; ++b)
        if (a != b && !linked[a][b] && tables[a].nodes.count(name(b))) connect(a, b);
    return news;
  }
};

struct Spread {
  double mean = 0, worst = 0;
};

/// max/mean of a group's backends' shares over `trials` rings of g backends, random seeds.
Spread balance(size_t g, size_t points, size_t trials) {
  Spread s;
  for (size_t t = 0; t < trials; ++t) {
    route_table rt = table_of(g, points);
    std::vector<double> shares = ring::build(rt).at(1).shares();
    double ratio = *std::max_element(shares.begin(), shares.end()) * double(g);
    s.mean += ratio / double(trials);
    s.worst = std::max(s.worst, ratio);
  }
  return s;
}

/// The share of the keys a backend joining g others takes (all a join moves), times g + 1.
Spread moved_by_join(size_t g, size_t points, size_t trials) {
  Spread s;
  for (size_t t = 0; t < trials; ++t) {
    route_table rt = table_of(g + 1, points);
    const ring r = ring::build(rt).at(1);
    std::vector<ring::owner> who = r.owners();
    size_t k =
        size_t(std::find(who.begin(), who.end(), ring::owner{"node-" + std::to_string(g), 1}) -
               who.begin());
    double ratio = r.shares()[k] * double(g + 1);
    s.mean += ratio / double(trials);
    s.worst = std::max(s.worst, ratio);
  }
  return s;
}

}  // namespace

void add_routes_command(CLI::App& app, RoutesBenchOptions& o) {
  auto* cmd =
      app.add_subcommand("routes", "route table, gossip and ring balance as a cluster grows");
  cmd->add_option("--nodes", o.nodes, "cluster sizes for the table and gossip rows");
  cmd->add_option("--points", o.points, "ring points per backend for the balance rows");
  cmd->add_option("--groups", o.group_sizes, "backends per group for the balance rows");
  cmd->add_option("--cluster-points", o.cluster_points,
                  "ring points per backend in the cluster rows");
  cmd->add_option("--trials", o.trials, "random rings per balance figure")
      ->check(CLI::Range(1, 100000));
  cmd->callback([&o] { std::exit(run_routes_bench(o)); });
}

int run_routes_bench(const RoutesBenchOptions& o) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::printf("apsis-bench routes: one backend per node, %zu ring points each, gossip every 1 s\n",
              o.cluster_points);
  std::printf("%6s %12s %15s %12s %9s %16s %16s %6s %12s %6s %12s\n", "nodes", "table bytes",
              "own entry bytes", "ring bytes", "ring ms", "full gossip B/s", "delta gossip B/s",
              "join", "join bytes", "leave", "leave bytes");
  for (size_t n : o.nodes) {
    route_table t = table_of(n, o.cluster_points);
    size_t full = wire_bytes(sys, t);
    route_table own;
    own.merge(t.nodes.begin()->second);
    size_t one = wire_bytes(sys, own);
    // The ring every node derives from the table (one group here): memory and time to build.
    auto start = std::chrono::steady_clock::now();
    auto rings = ring::build(t);
    double ring_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    size_t ring_bytes = 0;
    for (const auto& [group, r] : rings) ring_bytes += r.bytes();
    // Per node per second: every other node gets the table (before delta gossip), or its own
    // entry plus the whole table once a minute (peer.cpp's full_every).
    double full_rate = double(n - 1) * double(full);
    double delta_rate = double(n - 1) * (double(one) + double(full) / 60.0);
    int join = -1, leave = -1;
    size_t join_bytes = 0, leave_bytes = 0;
    if (n <= 200) {  // the model sends n^2 messages a round
      Model m(t);
      m.join(entry(n, o.cluster_points), 0);
      join = m.rounds_until_converged(sys, &join_bytes);
      node_entry& l = m.tables[1].nodes.at(Model::name(1));
      l.leaving = true, ++l.version;
      leave = m.rounds_until_converged(sys, &leave_bytes);
    }
    std::printf("%6zu %12zu %15zu %12zu %9.1f %16.0f %16.0f %6d %12zu %6d %12zu\n", n, full, one,
                ring_bytes, ring_ms, full_rate, delta_rate, join, join_bytes, leave, leave_bytes);
  }
  std::printf(
      "\nbalance: the most loaded backend's share x backends (1.0 = even), %zu random rings\n",
      o.trials);
  std::printf("%8s %8s %12s %12s %16s %16s\n", "backends", "points", "max/mean", "worst",
              "join moves x N", "worst x N");
  for (size_t g : o.group_sizes)
    for (size_t p : o.points) {
      Spread b = balance(g, p, o.trials), j = moved_by_join(g, p, o.trials);
      std::printf("%8zu %8zu %12.3f %12.3f %16.3f %16.3f\n", g, p, b.mean, b.worst, j.mean,
                  j.worst);
    }
  return 0;
}

}  // namespace apsis::bench
