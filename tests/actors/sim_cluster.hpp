// A cluster of n nodes on CAF's simulated network (caf/test/io_dsl.hpp: full BASP, no
// sockets): each node is an actor system with a memory backend in its own group, its
// coordinator, PEER and ANTI_ENTROPY, on a virtual clock. Node 0 is the seed; every other
// node joins through it and dials the nodes before it.
//
// The network runs until nothing is left to run, flush or read, and time moves only in
// pass(): io_dsl's own exec_all stops while a broker still has a reply to flush and then
// fires every pending timeout at once, whatever its length (which lost replica answers).
// Links can be cut one way at a time; what is sent across a cut link waits, and a heal
// delivers it (a pause) or drops it (a partition). A node can die (its actors stop, as a
// killed process's do: the others see it down at once) and start again: on a new actor
// system (a new CAF node and port, as a new process has) with the next incarnation and the
// engine it had (its disk), joining through every other node. The timers of PEER and
// ANTI_ENTROPY are off: the test sends their ticks and rounds.
#pragma once

#include <caf/test/io_dsl.hpp>

#include <array>
#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "actors/anti_entropy.hpp"
#include "actors/peer.hpp"
#include "actors/replica_group.hpp"
#include "actors/shard.hpp"
#include "messages/type_ids.hpp"

namespace apsis::sim {

using namespace std::chrono_literals;

struct sim_config : caf::actor_system_config {
  sim_config() {
    load<caf::io::middleman>();
    add_message_types<caf::id_block::apsis>();
  }
};

using planet = test_node_fixture<test_coordinator_fixture<sim_config>>;

/// The simulation's wall clock (Unix ms) for the nodes' HLCs: it moves in pass(), and a
/// little at each node's every reading of it (work takes time), so that nodes' clocks drift
/// apart; each node's may be skewed too. Versions, like everything else, follow from the seed.
inline uint64_t sim_now_ms = 0;
constexpr size_t sim_max_nodes = 128;
inline int64_t sim_skew_ms[sim_max_nodes] = {};
inline uint64_t sim_readings[sim_max_nodes] = {};
template <size_t I>
uint64_t sim_clock() {
  return uint64_t(int64_t(sim_now_ms) + sim_skew_ms[I]) + ++sim_readings[I] / 3;
}
template <size_t... I>
constexpr std::array<Hlc::physical_clock, sizeof...(I)> sim_clocks(std::index_sequence<I...>) {
  return {sim_clock<I>...};
}
inline Hlc::physical_clock sim_clock_of(size_t i) {
  static constexpr auto clocks = sim_clocks(std::make_index_sequence<sim_max_nodes>{});
  return clocks.at(i);
}

/// An operation on a key of the default namespace (policy: 0, the node's; else policy + 1).
inline kv_op key_op(op_kind kind, const std::string& key, const std::string& data = {},
                    uint8_t policy = 0) {
  kv_op o;
  o.kind = kind;
  o.key = key;
  o.id = storage::make_id("default", key);
  o.data = data;
  o.policy = policy;
  return o;
}

/// One node's actors and its storage (which outlives them, as a disk does).
struct sim_node {
  std::string name;
  size_t planet = 0;  ///< the actor system it runs on: a new one at every restart
  uint16_t port = 0;
  uint64_t incarnation = 1;
  std::shared_ptr<storage::Engine> engine;
  std::shared_ptr<ae_stats> stats = std::make_shared<ae_stats>();
  replica_group_actor coordinator;
  anti_entropy_actor anti_entropy;
  peer_actor peer;
  std::vector<caf::actor> actors;      ///< everything spawned, to stop at the end
  std::shared_ptr<cluster_view> view;  ///< what its PEER says of the cluster (sim_options::views)
  uint32_t group = 0;
  bool left = false;  ///< it left the cluster (`apsis cluster leave`): apsisd would stop
};

struct sim_options {
  bool views = false;  ///< each PEER keeps a cluster_view (JSON at every route change: slower)
  size_t started = SIZE_MAX;  ///< the nodes started at once; the others wait for join()
};

class sim_cluster {
 public:
  /// n nodes, node i in group groups[i] (default: i + 1, a group each). Each backend has one
  /// ring point: i * 0x40 in the first byte, i / 4 in the second.
  explicit sim_cluster(size_t n, caf::timespan timeout = 1s, std::vector<uint32_t> groups = {},
                       sim_options options = {})
      : planets_(n), timeout_(timeout), options_(options) {
    CAF_REQUIRE(n <= sim_max_nodes);
    sim_now_ms = 1'800'000'000'000;
    for (auto& s : sim_skew_ms) s = 0;
    for (auto& r : sim_readings) r = 0;
    for (size_t k = 0; k < n; ++k) {
      nodes_.emplace_back();
      nodes_[k].planet = k;
      nodes_[k].port = port_of(k);
      nodes_[k].group = k < groups.size() ? groups[k] : uint32_t(k + 1);
    }
    for (size_t k = 0; k < n; ++k)
      for (size_t i = 0; i < k; ++i) connect(i, k);  // k joins through 0 and dials each i < k
    exec_all();
    for (size_t k = 0; k < std::min(n, options.started); ++k) join(k);
  }

  /// Node k, not started yet, starts and joins through node 0 (the first node: alone).
  void join(size_t k) {
    CAF_REQUIRE(dead(k) && !nodes_[k].engine);
    start(k, nullptr, k > 0 ? std::vector<size_t>{0} : std::vector<size_t>{});
    exec_all();
  }

  ~sim_cluster() {
    for (auto& n : nodes_)
      for (const auto& x : n.actors) caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    exec_all();
    for (auto& p : planets_) p.sched.clock().cancel_all();
    exec_all();
  }

  size_t size() const { return nodes_.size(); }
  planet& planet_of(size_t i) { return planets_[nodes_[i].planet]; }
  sim_node& node(size_t i) { return nodes_[i]; }
  bool dead(size_t i) const { return nodes_[i].actors.empty(); }

  /// Node i dies: its actors stop, as a killed process's do (its connections close, so the
  /// others see it down at once); its engine, like a disk, keeps what it acknowledged.
  void kill(size_t i) {
    for (const auto& x : nodes_[i].actors) caf::anon_send_exit(x, caf::exit_reason::kill);
    nodes_[i].actors.clear();
    exec_all();
  }

  /// Node i starts again, as a new process would: a new actor system and port, the next
  /// incarnation, the engine it had; it joins through every other node. Its links must not
  /// be cut (a join lost to a partition is retried by a timer the simulation does not run).
  void restart(size_t i) {
    CAF_REQUIRE(dead(i));
    planets_.emplace_back();  // a deque: the other planets stay where they are
    sim_node& n = nodes_[i];
    n.planet = planets_.size() - 1;
    n.port = port_of(n.planet);
    n.incarnation++;
    std::vector<size_t> others;
    for (size_t j = 0; j < nodes_.size(); ++j)
      if (j != i) connect(j, i), others.push_back(j);
    exec_all();
    start(i, n.engine, others);
    exec_all();
  }

  /// Runs every node until none has a message to run, a broker to flush or bytes to read
  /// (bounded); fires no timer.
  void exec_all() {
    auto advance = [this](planet& p) {
      return p.sched.try_run_once() || p.mpx.try_exec_runnable() || read(p) ||
             p.mpx.try_accept_connection();
    };
    for (size_t steps = 0;; ++steps) {
      bool any = false;
      for (auto& p : planets_) any = advance(p) || any;
      if (!any) return;
      CAF_REQUIRE(steps < 10'000'000);  // a livelock, not a slow test
    }
  }

  /// From now on, exec_all() counts the bytes each node sends (BASP frames, read by their
  /// receivers); sent_bytes(i) says how many since.
  void count_bytes() {
    counting_ = true;
    sent_.assign(nodes_.size(), 0);
  }
  uint64_t sent_bytes(size_t i) const { return sent_.at(i); }

  /// Lets simulated time pass on every node in steps: timers fire (request timeouts).
  void pass(caf::timespan t, int steps = 10) {
    for (int i = 0; i < steps; ++i) {
      for (auto& p : planets_) p.sched.clock().advance_time(t / steps);
      sim_now_ms +=
          uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(t / steps).count());
      exec_all();
    }
  }

  /// Messages from node `from` to node `to` wait until heal().
  void cut(size_t from, size_t to) {
    auto it = ends_.find({from, to});
    if (it == ends_.end()) return;
    planet_of(to).mpx.passive_mode(it->second) = true;
    cut_.insert({from, to});
  }

  /// Every cut link carries messages again: what waited is dropped (a partition lost it) or
  /// delivered (a pause delayed it).
  void heal(bool drop) {
    for (auto [from, to] : cut_) {
      auto hdl = ends_.at({from, to});
      if (drop) planet_of(to).mpx.virtual_network_buffer(hdl).clear();
      planet_of(to).mpx.passive_mode(hdl) = false;
    }
    cut_.clear();
    exec_all();
  }

  bool is_cut() const { return !cut_.empty(); }
  bool is_cut(size_t i) const {
    for (auto [from, to] : cut_)
      if (from == i || to == i) return true;
    return false;
  }

  /// Node i's wall clock jumps by ms (either way) from the simulation's.
  void skew(size_t i, int64_t ms) { sim_skew_ms[i] = ms; }

  /// A cluster command (`apsis cluster ...`: leave, forget) to node i's PEER; its answer,
  /// or "error".
  std::string admin(size_t i, const std::string& cmd) {
    caf::scoped_actor self{planet_of(i).sys};
    std::string out;
    auto h = self->request(nodes_[i].peer, caf::infinite, atom::admin_v, cmd);
    exec_all();
    h.receive([&](std::string& r) { out = r; }, [&](caf::error&) { out = "error"; });
    return out;
  }

  /// Runs a batch through node i's coordinator, letting `passing` simulated time pass.
  result_batch exec(size_t i, op_batch ops, caf::timespan passing = 0s) {
    result_batch out;
    caf::scoped_actor self{planet_of(i).sys};
    auto h = self->request(nodes_[i].coordinator, caf::infinite, atom::exec_v, std::move(ops));
    exec_all();
    if (passing.count() > 0) pass(passing);
    h.receive([&](result_batch& r) { out = std::move(r); },
              [&](caf::error& e) { CAF_FAIL("exec failed: " << planet_of(i).sys.render(e)); });
    return out;
  }

 private:
  /// read_data() on planet p, on the connection ends with bytes waiting (read_data() itself
  /// looks up every end of the planet, which at 100 nodes costs more than all the rest),
  /// adding what each one read to its sender's count while counting.
  bool read(planet& p) {
    bool any = false;
    for (const reader& r : readers_[&p]) {
      if (*r.passive || r.waiting->empty()) continue;
      const size_t before = r.waiting->size();
      any = p.mpx.read_data(r.hdl) || any;
      if (counting_) sent_[r.from] += before - r.waiting->size();
    }
    return any;
  }

  /// A connection that node `client` may open to node `server`, between the planets they
  /// run on now (the simulated network has only connections prepared before they are dialed).
  void connect(size_t server, size_t client) {
    auto& acceptor = acceptors_[nodes_[server].planet];
    const bool first = acceptor == caf::io::accept_handle{};
    if (first) acceptor = caf::io::accept_handle::from_int(++next_handle_);
    auto server_end = caf::io::connection_handle::from_int(++next_handle_);
    auto client_end = caf::io::connection_handle::from_int(++next_handle_);
    planet_of(server).mpx.prepare_connection(acceptor, server_end, planet_of(client).mpx,
                                             name(server), nodes_[server].port, client_end);
    ends_[{client, server}] = server_end;  // where the server reads what the client sends
    ends_[{server, client}] = client_end;
    for (auto [from, to, end] :
         {std::tuple{client, server, server_end}, {server, client, client_end}}) {
      auto& mpx = planet_of(to).mpx;  // its buffers stay where they are: shared, or map nodes
      readers_[&planet_of(to)].push_back(
          {from, end, &mpx.virtual_network_buffer(end), &mpx.passive_mode(end)});
    }
    // A running node nobody dialed yet listens from now on.
    if (first && !dead(server)) planet_of(server).publish(nodes_[server].peer, nodes_[server].port);
  }

  static std::string name(size_t i) { return "n" + std::to_string(i + 1); }
  static uint16_t port_of(size_t planet) { return uint16_t(8001 + planet); }
  static storage::Id ring_point(size_t i) {
    storage::Id p;
    p.bytes[0] = uint8_t(i * 0x40);
    p.bytes[1] = uint8_t(i / 4);
    return p;
  }

  /// Spawns node i's actors on its planet, with a new memory engine or the one it had, and
  /// joins through the nodes named.
  void start(size_t i, std::shared_ptr<storage::Engine> engine, const std::vector<size_t>& seeds) {
    sim_node& n = nodes_[i];
    planet& p = planet_of(i);
    const caf::timespan timeout = timeout_;
    n.name = name(i);
    n.stats = std::make_shared<ae_stats>();
    const uint32_t group = n.group;
    if (!engine) {
      storage::EngineOptions eo;
      eo.kind = "memory";
      std::unique_ptr<storage::Engine> e;
      CAF_REQUIRE(storage::open_engine(eo, &e).is_ok());
      engine = std::move(e);
    }
    n.engine = std::move(engine);
    auto clock = std::make_shared<Hlc>(i + 1, sim_clock_of(i));
    group_route route{group, n.name, 1, {}};
    route.cores.push_back(std::make_shared<ShardCore>(n.engine, clock));
    route.shards.push_back(p.sys.spawn(shard, route.cores.back()));
    replica_group_config rg;
    rg.groups = {route};
    rg.policy = success_policy::quorum;
    rg.read_policy = success_policy::quorum;
    rg.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    rg.clock = clock;
    n.coordinator = p.sys.spawn(replica_group, rg);
    ae_config ae;
    ae.node = n.name;
    ae.node_id = i + 1;
    ae.backends[1] = ae_backend{group, n.engine};
    ae.every = 0s;  // rounds are sent by hand
    ae.merge_every = 0s;
    ae.timeout = rg.timeout;
    ae.stats = n.stats;
    ae.scan_thread = false;  // every message on the test's scheduler
    n.anti_entropy = p.sys.spawn(anti_entropy, ae);
    peer_config pc;
    pc.self = node_entry{n.name,
                         n.incarnation,
                         1,
                         n.name,
                         n.port,
                         0,
                         {{1, group, {ring_point(i)}}},
                         {},
                         caf::actor_cast<caf::actor>(n.anti_entropy),
                         {}};
    pc.cookie = "simulated-cookie";
    for (size_t s : seeds) pc.seeds.emplace_back(name(s), nodes_[s].port);
    pc.gossip_every = 0s;
    pc.timeout = rg.timeout;
    pc.coordinator = n.coordinator;
    pc.anti_entropy = n.anti_entropy;
    pc.anti_entropy_stats = n.stats;
    pc.on_left = [this, i] { nodes_[i].left = true; };
    pc.backends[1].actor = p.sys.spawn(replica_group, rg);
    if (options_.views) n.view = pc.view = std::make_shared<cluster_view>();
    n.peer = p.sys.spawn(peer, pc);
    for (caf::actor x :
         {caf::actor_cast<caf::actor>(route.shards[0]), caf::actor_cast<caf::actor>(n.coordinator),
          caf::actor_cast<caf::actor>(n.anti_entropy),
          caf::actor_cast<caf::actor>(pc.backends[1].actor), caf::actor_cast<caf::actor>(n.peer)})
      n.actors.push_back(x);
    if (acceptors_.count(n.planet)) p.publish(n.peer, n.port);
  }

  std::deque<planet> planets_;  // not movable: each is an actor system
  std::vector<sim_node> nodes_;
  caf::timespan timeout_;
  sim_options options_;
  bool counting_ = false;
  std::vector<uint64_t> sent_;  ///< bytes sent by each node since count_bytes()
  std::map<size_t, caf::io::accept_handle> acceptors_;  ///< by planet
  /// (from, to) -> the connection end at `to` that reads what `from` sends
  std::map<std::pair<size_t, size_t>, caf::io::connection_handle> ends_;
  /// A connection end on a planet: the node that sends to it, and what waits to be read.
  struct reader {
    size_t from;
    caf::io::connection_handle hdl;
    caf::io::network::test_multiplexer::buffer_type* waiting;
    bool* passive;
  };
  std::map<const planet*, std::vector<reader>> readers_;
  std::set<std::pair<size_t, size_t>> cut_;
  int64_t next_handle_ = 0;
};

}  // namespace apsis::sim
