// How the route table spreads through 10, 50 and 100 nodes on CAF's simulated network
// (tests/actors/sim_cluster.hpp: real PEERs over BASP, no sockets), groups of three. For a
// join, a leave (leaving, then left), a death (seen down, then forgotten by an operator):
// the gossip rounds (a tick on every live node) until every live node has the same table,
// and the bytes all nodes sent from the change to the end of the round after (which carries
// the change's deltas); and the bytes of a quiet round (one round a second by default). Prints a
// line per size (docs/scaling.md quotes them); fails if any change takes more than 10 rounds.
// APSIS_SCALE_NODES="10,50" picks the sizes.
#define CAF_SUITE scale_sim

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include "tests/actors/sim_cluster.hpp"

#include <caf/test/unit_test_impl.hpp>

using namespace apsis;
using namespace apsis::sim;

namespace {

/// Node n's table as its PEER tells it (cluster_view): each node's name, incarnation,
/// whether it owns, is leaving or is gone, and its backends. Not whether a node is up: that
/// is each node's own view.
std::string table_of(const sim_node& n) {
  std::string text;
  {
    std::lock_guard<std::mutex> lock(n.view->mu);
    text = n.view->json;
  }
  std::string out;
  const auto view = nlohmann::json::parse(text);
  for (const auto& e : view.at("nodes")) {
    std::string state = e.at("state");
    if (state != "left" && state != "forgotten") state = e.value("leaving", false) ? "leaving" : "";
    out += e.at("name").get<std::string>() + "/" + std::to_string(e.at("incarnation").get<int>()) +
           "/" + state + "/" + e.at("backends").dump() + "\n";
  }
  return out;
}

/// What node n's PEER says of node `name`'s state ("" if it does not know the node).
std::string state_of(const sim_node& n, const std::string& name) {
  std::lock_guard<std::mutex> lock(n.view->mu);
  const auto view = nlohmann::json::parse(n.view->json);
  for (const auto& e : view.at("nodes"))
    if (e.at("name") == name) return e.at("state");
  return "";
}

struct scale {
  size_t n;
  sim_cluster net;
  explicit scale(size_t nodes)
      : n(nodes), net(nodes, 1s, groups_of_three(nodes), sim_options{true, nodes - 1}) {}

  static std::vector<uint32_t> groups_of_three(size_t n) {
    std::vector<uint32_t> g;
    for (size_t i = 0; i < n; ++i) g.push_back(uint32_t(i / 3 + 1));
    return g;
  }

  /// Whether a node still runs (one that has left would have stopped).
  bool live(size_t i) { return !net.dead(i) && !net.node(i).left; }

  /// Whether every live node's table is the same, holding `nodes` entries.
  bool agreed(size_t nodes) {
    std::string first;
    for (size_t i = 0; i < n; ++i) {
      if (!live(i)) continue;
      std::string t = table_of(net.node(i));
      if (size_t(std::count(t.begin(), t.end(), '\n')) != nodes) return false;
      if (first.empty()) first = t;
      if (t != first) return false;
    }
    return true;
  }

  /// Gossip rounds until `done` holds: 0 if it held once the change's own messages ran out;
  /// -1 if 20 rounds were not enough.
  template <class Done>
  int rounds_until(Done done) {
    for (int r = 0; r <= 20; ++r) {
      if (done()) return r;
      round();
    }
    return -1;
  }

  /// A gossip round: every live node's PEER ticks.
  void round() {
    for (size_t i = 0; i < n; ++i)
      if (live(i)) caf::anon_send(net.node(i).peer, atom::tick_v);
    net.exec_all();
  }

  uint64_t bytes_sent() const {
    uint64_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += net.sent_bytes(i);
    return sum;
  }
};

std::vector<size_t> sizes() {
  std::vector<size_t> out;
  const char* env = std::getenv("APSIS_SCALE_NODES");
  std::stringstream in(env ? env : "10,50,100");
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoul(item));
  return out;
}

}  // namespace

CAF_TEST(a_change_reaches_every_node_within_a_few_gossip_rounds) {
  std::printf("%5s %14s %14s %14s %14s %14s %14s\n", "nodes", "quiet round", "join", "leaving",
              "left", "seen down", "forgotten");
  std::printf("%5s %14s %14s %14s %14s %14s %14s\n", "", "KiB (B/node)", "rounds KiB", "rounds KiB",
              "rounds KiB", "rounds KiB", "rounds KiB");
  for (size_t n : sizes()) {
    CAF_REQUIRE(n >= 6);  // node 2 leaves and node 5 dies: each group keeps a backend
    scale s{n};
    std::vector<std::string> cells;
    auto cell = [&](double a, double b, const char* format) {
      char text[32];
      std::snprintf(text, sizeof text, format, a, b);
      cells.push_back(text);
    };
    // Does `change`, then counts the gossip rounds until `done` and the bytes all nodes sent
    // from the change to the end of the round after (which carries the change's deltas).
    auto step = [&](const char* what, auto change, auto done) {
      s.net.count_bytes();
      change();
      const int rounds = s.rounds_until(done);
      if (rounds < 0 || rounds > 10)
        CAF_MESSAGE(what << " at " << n << " nodes: " << rounds << " rounds (-1: more than 20)");
      CAF_CHECK(rounds >= 0 && rounds <= 10);
      s.round();
      cell(rounds, s.bytes_sent() / 1024.0, "%.0f %.0f");
    };
    s.round();  // what the first n - 1 told each other while joining
    // A round with nothing new: each node's own entry to each other node.
    s.net.count_bytes();
    s.round();
    uint64_t most = 0;
    for (size_t i = 0; i < n; ++i) most = std::max(most, s.net.sent_bytes(i));
    cell(s.bytes_sent() / 1024.0, most, "%.0f (%.0f)");
    step(
        "join", [&] { s.net.join(n - 1); }, [&] { return s.agreed(n); });
    // Node 2 leaves: leaving at once; it has left (forgotten by its own word, and stopped)
    // once its backend is empty, as merge finds it (it held nothing).
    step(
        "leaving",
        [&] {
          CAF_REQUIRE(s.net.admin(1, R"({"cmd": "leave"})").find("leaving") != std::string::npos);
        },
        [&] {
          return s.agreed(n) && table_of(s.net.node(0)).find("n2/1/leaving/") != std::string::npos;
        });
    for (int i = 0; i < 5 && s.net.node(1).stats->leave_left.load() != 0; ++i) s.net.pass(2s);
    CAF_REQUIRE_EQUAL(s.net.node(1).stats->leave_left.load(), 0);
    step(
        "left", [] {},
        [&] {
          return s.agreed(n) && table_of(s.net.node(0)).find("n2/1/left/") != std::string::npos;
        });
    CAF_REQUIRE(s.net.node(1).left);
    s.net.kill(1);  // as apsisd stops once it has left
    // Node 5 dies: every live node sees it down; an operator forgets it on node 1.
    step(
        "death", [&] { s.net.kill(4); },
        [&] {
          for (size_t i = 0; i < n; ++i)
            if (s.live(i) && state_of(s.net.node(i), "n5") != "down") return false;
          return true;
        });
    step(
        "forget",
        [&] {
          CAF_REQUIRE(s.net.admin(0, R"({"cmd": "forget", "node": "n5"})").find("forgotten") !=
                      std::string::npos);
        },
        [&] {
          return s.agreed(n) &&
                 table_of(s.net.node(0)).find("n5/1/forgotten/") != std::string::npos;
        });
    std::printf("%5zu", n);
    for (const auto& c : cells) std::printf(" %14s", c.c_str());
    std::printf("\n");
    std::fflush(stdout);
  }
}
