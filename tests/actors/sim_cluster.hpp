// A cluster of n nodes on CAF's simulated network (caf/test/io_dsl.hpp: full BASP, no
// sockets): each node is an actor system with a memory backend in its own group, its
// coordinator, PEER and ANTI_ENTROPY, on a virtual clock. Node 0 is the seed; every other
// node joins through it and dials the nodes before it.
//
// The network runs until nothing is left to run, flush or read, and time moves only in
// pass(): io_dsl's own exec_all stops while a broker still has a reply to flush and then
// fires every pending timeout at once, whatever its length (which lost replica answers).
// Links can be cut one way at a time; what is sent across a cut link waits, and a heal
// delivers it (a pause) or drops it (a partition). The timers of PEER and ANTI_ENTROPY are
// off: the test sends their ticks.
#pragma once

#include <caf/test/io_dsl.hpp>

#include <deque>
#include <map>
#include <set>

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
inline int64_t sim_skew_ms[4] = {};
inline uint64_t sim_readings[4] = {};
template <size_t I>
uint64_t sim_clock() { return uint64_t(int64_t(sim_now_ms) + sim_skew_ms[I]) + ++sim_readings[I] / 3; }
inline Hlc::physical_clock sim_clock_of(size_t i) {
  static const Hlc::physical_clock clocks[] = {sim_clock<0>, sim_clock<1>, sim_clock<2>, sim_clock<3>};
  return clocks[i];
}

/// One node's actors and its storage (which outlives them, as a disk does).
struct sim_node {
  std::string name;
  uint16_t port = 0;
  std::shared_ptr<storage::Engine> engine;
  std::shared_ptr<ae_stats> stats = std::make_shared<ae_stats>();
  replica_group_actor coordinator;
  anti_entropy_actor recovery;
  peer_actor peer;
  std::vector<caf::actor> actors;  ///< everything spawned, to stop at the end
};

class sim_cluster {
 public:
  explicit sim_cluster(size_t n, caf::timespan timeout = 1s) : planets_(n) {
    CAF_REQUIRE(n <= std::size(sim_skew_ms));
    sim_now_ms = 1'800'000'000'000;
    for (auto& s : sim_skew_ms) s = 0;
    for (auto& r : sim_readings) r = 0;
    for (size_t k = 0; k < n; ++k)
      for (size_t i = 0; i < k; ++i) connect(i, k);  // k joins through 0 and dials each i < k
    exec_all();
    for (size_t k = 0; k < n; ++k) {
      nodes_.push_back(start(k, timeout));
      exec_all();
    }
  }

  ~sim_cluster() {
    for (auto& n : nodes_)
      for (const auto& x : n.actors) caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    exec_all();
    for (auto& p : planets_) p.sched.clock().cancel_all();
    exec_all();
  }

  size_t size() const { return nodes_.size(); }
  planet& planet_of(size_t i) { return planets_[i]; }
  sim_node& node(size_t i) { return nodes_[i]; }

  /// Runs every node until none has a message to run, a broker to flush or bytes to read
  /// (bounded); fires no timer.
  void exec_all() {
    auto advance = [](planet& p) {
      return p.sched.try_run_once() || p.mpx.try_exec_runnable() || p.mpx.read_data() ||
             p.mpx.try_accept_connection();
    };
    for (size_t steps = 0;; ++steps) {
      bool any = false;
      for (auto& p : planets_) any = advance(p) || any;
      if (!any) return;
      CAF_REQUIRE(steps < 10'000'000);  // a livelock, not a slow test
    }
  }

  /// Lets simulated time pass on every node in steps: timers fire (request timeouts).
  void pass(caf::timespan t, int steps = 10) {
    for (int i = 0; i < steps; ++i) {
      for (auto& p : planets_) p.sched.clock().advance_time(t / steps);
      sim_now_ms += uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(t / steps).count());
      exec_all();
    }
  }

  /// Messages from node `from` to node `to` wait until heal().
  void cut(size_t from, size_t to) {
    auto it = ends_.find({from, to});
    if (it == ends_.end()) return;
    planets_[to].mpx.passive_mode(it->second) = true;
    cut_.insert({from, to});
  }

  /// Every cut link carries messages again: what waited is dropped (a partition lost it) or
  /// delivered (a pause delayed it).
  void heal(bool drop) {
    for (auto [from, to] : cut_) {
      auto hdl = ends_.at({from, to});
      if (drop) planets_[to].mpx.virtual_network_buffer(hdl).clear();
      planets_[to].mpx.passive_mode(hdl) = false;
    }
    cut_.clear();
    exec_all();
  }

  bool is_cut() const { return !cut_.empty(); }

  /// Node i's wall clock jumps by ms (either way) from the simulation's.
  void skew(size_t i, int64_t ms) { sim_skew_ms[i] = ms; }

  /// Runs a batch through node i's coordinator, letting `passing` simulated time pass.
  result_batch exec(size_t i, op_batch ops, caf::timespan passing = 0s) {
    result_batch out;
    caf::scoped_actor self{planets_[i].sys};
    auto h = self->request(nodes_[i].coordinator, caf::infinite, atom::exec_v, std::move(ops));
    exec_all();
    if (passing.count() > 0) pass(passing);
    h.receive([&](result_batch& r) { out = std::move(r); },
              [&](caf::error& e) { CAF_FAIL("exec failed: " << planets_[i].sys.render(e)); });
    return out;
  }

 private:
  /// A connection that node `client` may open to node `server` (the simulated network has
  /// only connections prepared before they are dialed).
  void connect(size_t server, size_t client) {
    auto& acceptor = acceptors_[server];
    if (acceptor == caf::io::accept_handle{}) acceptor = caf::io::accept_handle::from_int(++next_handle_);
    auto server_end = caf::io::connection_handle::from_int(++next_handle_);
    auto client_end = caf::io::connection_handle::from_int(++next_handle_);
    planets_[server].mpx.prepare_connection(acceptor, server_end, planets_[client].mpx, name(server),
                                            port(server), client_end);
    ends_[{client, server}] = server_end;  // where the server reads what the client sends
    ends_[{server, client}] = client_end;
  }

  static std::string name(size_t i) { return "n" + std::to_string(i + 1); }
  static uint16_t port(size_t i) { return uint16_t(8001 + i); }

  sim_node start(size_t i, caf::timespan timeout) {
    planet& p = planets_[i];
    sim_node n;
    n.name = name(i);
    n.port = port(i);
    const uint32_t group = uint32_t(i + 1);
    storage::EngineOptions eo;
    eo.kind = "memory";
    std::unique_ptr<storage::Engine> e;
    CAF_REQUIRE(storage::open_engine(eo, &e).is_ok());
    n.engine = std::move(e);
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
    n.recovery = p.sys.spawn(anti_entropy, ae);
    peer_config pc;
    pc.self = node_entry{n.name, 1, 1, n.name, n.port, 0, {{1, group, {storage::Id::min()}}}, {},
                         caf::actor_cast<caf::actor>(n.recovery), {}};
    pc.cookie = "simulated-cookie";
    if (i > 0) pc.seeds = {{name(0), port(0)}};
    pc.gossip_every = 0s;
    pc.timeout = rg.timeout;
    pc.coordinator = n.coordinator;
    pc.recovery = n.recovery;
    pc.backends[1] = p.sys.spawn(replica_group, rg);
    n.peer = p.sys.spawn(peer, pc);
    for (caf::actor x : {caf::actor_cast<caf::actor>(route.shards[0]), caf::actor_cast<caf::actor>(n.coordinator),
                         caf::actor_cast<caf::actor>(n.recovery), caf::actor_cast<caf::actor>(pc.backends[1]),
                         caf::actor_cast<caf::actor>(n.peer)})
      n.actors.push_back(x);
    if (acceptors_.count(i)) p.publish(n.peer, n.port);
    return n;
  }

  std::deque<planet> planets_;  // not movable: each is an actor system
  std::vector<sim_node> nodes_;
  std::map<size_t, caf::io::accept_handle> acceptors_;
  /// (from, to) -> the connection end at `to` that reads what `from` sends
  std::map<std::pair<size_t, size_t>, caf::io::connection_handle> ends_;
  std::set<std::pair<size_t, size_t>> cut_;
  int64_t next_handle_ = 0;
};

}  // namespace apsis::sim
