// Two nodes on CAF's simulated network (caf/test/io_dsl.hpp: full BASP, no sockets, one
// virtual clock): one joins the other with the cookie; healthy writes come back ok from
// both replicas; a partition times the far replica out and the policy decides; after the
// partition heals, with what was sent across it dropped, anti-entropy repairs the far
// replica; a node that dies is unavailable at once, and a per-request policy decides.
// CAF's own test runner, since its DSL cannot run inside GoogleTest. The fixture runs the
// network until nothing is left to run, flush or read, and lets time pass only in pass():
// io_dsl's own exec_all stops while a broker still has a reply to flush and then fires every
// pending timeout at once, whatever its length, which lost the far replica's answers.
#define CAF_SUITE cluster_sim

#include <caf/test/io_dsl.hpp>
#include <caf/test/unit_test_impl.hpp>

#include "actors/anti_entropy.hpp"
#include "actors/peer.hpp"
#include "actors/replica_group.hpp"
#include "actors/shard.hpp"
#include "messages/type_ids.hpp"

using namespace apsis;
using namespace std::chrono_literals;

namespace {

struct sim_config : caf::actor_system_config {
  sim_config() {
    load<caf::io::middleman>();
    add_message_types<caf::id_block::apsis>();
  }
};

using fixture_base = point_to_point_fixture<test_coordinator_fixture<sim_config>>;
using planet = fixture_base::planet_type;

const std::string cookie = "simulated-cookie";

/// One node: a memory backend in its own group, its coordinators, PEER and ANTI_ENTROPY.
struct sim_node {
  std::string name;
  std::shared_ptr<storage::Engine> engine;
  std::shared_ptr<ae_stats> stats = std::make_shared<ae_stats>();
  replica_group_actor coordinator;
  anti_entropy_actor recovery;
  peer_actor peer;
  std::vector<caf::actor> actors;  ///< everything spawned, to stop at the end
};

sim_node start(planet& p, const std::string& name, uint32_t group, uint16_t port,
               std::vector<std::pair<std::string, uint16_t>> seeds, uint64_t node_id) {
  sim_node n;
  n.name = name;
  storage::EngineOptions eo;
  eo.kind = "memory";
  std::unique_ptr<storage::Engine> e;
  CAF_REQUIRE(storage::open_engine(eo, &e).is_ok());
  n.engine = std::move(e);
  auto clock = std::make_shared<Hlc>(node_id);
  group_route route{group, name, 1, {}};
  route.cores.push_back(std::make_shared<ShardCore>(n.engine, clock));
  route.shards.push_back(p.sys.spawn(shard, route.cores.back()));
  replica_group_config rg;
  rg.groups = {route};
  rg.policy = success_policy::quorum;
  rg.timeout = 1s;
  rg.clock = clock;
  n.coordinator = p.sys.spawn(replica_group, rg);
  ae_config ae;
  ae.node = name;
  ae.backends[1] = ae_backend{group, n.engine};
  ae.every = 0s;  // the simulated clock fires every pending timer: rounds are sent by hand
  ae.merge_every = 0s;
  ae.timeout = 1s;
  ae.stats = n.stats;
  n.recovery = p.sys.spawn(anti_entropy, ae);
  peer_config pc;
  pc.self = node_entry{name, 1, 1, name, port, 0, {{1, group, {storage::Id::min()}}}, {},
                       caf::actor_cast<caf::actor>(n.recovery), {}};
  pc.cookie = cookie;
  const bool seeds_empty = seeds.empty();
  pc.seeds = std::move(seeds);
  pc.gossip_every = 0s;
  pc.timeout = 1s;
  pc.coordinator = n.coordinator;
  pc.recovery = n.recovery;
  pc.backends[1] = p.sys.spawn(replica_group, rg);
  n.peer = p.sys.spawn(peer, pc);
  for (caf::actor x : {caf::actor_cast<caf::actor>(route.shards[0]), caf::actor_cast<caf::actor>(n.coordinator),
                       caf::actor_cast<caf::actor>(n.recovery), caf::actor_cast<caf::actor>(pc.backends[1]),
                       caf::actor_cast<caf::actor>(n.peer)})
    n.actors.push_back(x);
  if (seeds_empty) p.publish(n.peer, port);  // only the seed listens: one link, prepared
  return n;
}

struct fixture : fixture_base {
  sim_node a, b;
  std::pair<caf::io::connection_handle, caf::io::connection_handle> link;

  fixture() {
    link = prepare_connection(earth, mars, "earth", 8001);  // mars joins through earth
    exec_all();
    a = start(earth, "earth", 1, 8001, {}, 1);
    b = start(mars, "mars", 2, 8002, {{"earth", 8001}}, 2);
    exec_all();
  }

  /// Runs every node until none has a message to run, a broker to flush or bytes to read
  /// (bounded); fires no timer. Hides io_dsl's exec_all (see the top of this file).
  void exec_all() {
    auto advance = [](planet& p) {
      return p.sched.try_run_once() || p.mpx.try_exec_runnable() || p.mpx.read_data() ||
             p.mpx.try_accept_connection();
    };
    size_t steps = 0;
    while (advance(earth) || advance(mars))
      CAF_REQUIRE(++steps < 10'000'000);  // a livelock, not a slow test
  }

  /// One gossip round on every node (the timers are off on a simulated clock).
  void gossip() {
    for (auto* n : {&a, &b}) caf::anon_send(n->peer, atom::tick_v);
    exec_all();
  }

  /// Cuts the link both ways: nothing is read from it meanwhile.
  void partition() {
    earth.mpx.passive_mode(link.first) = true;
    mars.mpx.passive_mode(link.second) = true;
  }

  /// Heals the link, dropping what was sent across it while it was cut (whole messages: the
  /// link was idle when it was cut), as a real partition loses it.
  void heal() {
    for (auto [p, hdl] : {std::pair{&earth, link.first}, std::pair{&mars, link.second}}) {
      p->mpx.virtual_network_buffer(hdl).clear();
      p->mpx.passive_mode(hdl) = false;
    }
    exec_all();
  }

  ~fixture() {
    for (auto* n : {&a, &b})
      for (const auto& x : n->actors) caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    exec_all();
  }

  /// Lets simulated time pass: timers fire (gossip, anti-entropy, request timeouts).
  void pass(caf::timespan t, int steps = 10) {
    for (int i = 0; i < steps; ++i) {
      for (auto* p : {&earth, &mars}) p->sched.clock().advance_time(t / steps);
      exec_all();
    }
  }

  /// A put through n's coordinator; `passing` is the simulated time let pass meanwhile.
  result_batch write(planet& p, const sim_node& n, const std::string& key, const std::string& value,
                     uint8_t policy = 0, caf::timespan passing = 2s) {
    kv_op o;
    o.kind = op_kind::put;
    o.key = key;
    o.id = storage::make_id("default", key);
    o.data = value;
    o.policy = policy;
    result_batch out;
    caf::scoped_actor self{p.sys};
    auto h = self->request(n.coordinator, caf::infinite, atom::exec_v, op_batch{o});
    exec_all();
    if (passing.count() > 0) pass(passing);
    h.receive([&](result_batch& r) { out = std::move(r); },
              [&](caf::error& e) { CAF_FAIL("exec failed: " << p.sys.render(e)); });
    return out;
  }

  static bool holds(const sim_node& n, const std::string& key, const std::string& value) {
    storage::Record r;
    return n.engine->get(storage::make_id("default", key), &r).is_ok() && r.data == value;
  }
};

}  // namespace

CAF_TEST_FIXTURE_SCOPE(cluster_sim_tests, fixture)

CAF_TEST(a_healthy_write_comes_back_ok_from_both_replicas) {
  for (auto [p, n] : {std::pair{&earth, &a}, std::pair{&mars, &b}}) {
    auto r = write(*p, *n, "k-" + n->name, "v", 0, caf::timespan{0});  // no time passes
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
    CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].status, op_status::ok);
    CAF_CHECK(holds(a, "k-" + n->name, "v") && holds(b, "k-" + n->name, "v"));
  }
}

CAF_TEST(a_partition_times_the_far_replica_out_and_anti_entropy_heals_it) {
  write(earth, a, "before", "1");
  partition();
  auto r = write(earth, a, "during", "2");  // quorum of two needs both; 2 s pass
  CAF_REQUIRE_EQUAL(r.size(), 1u);
  CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
  CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
  CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::timeout);
  CAF_CHECK_EQUAL(r[0].status, op_status::unavailable);
  CAF_CHECK(holds(a, "during", "2"));  // the replica that succeeded stays written
  CAF_CHECK(!holds(b, "during", "2"));
  heal();
  CAF_CHECK(!holds(b, "during", "2"));  // the write sent across the partition was lost
  caf::anon_send(a.recovery, atom::tick_v);  // one anti-entropy round on earth
  exec_all();
  CAF_CHECK(holds(b, "during", "2"));
  CAF_CHECK(holds(b, "before", "1"));
  CAF_CHECK_EQUAL(a.stats->repaired.load(), 1u);
  CAF_CHECK_EQUAL(a.stats->failed_rounds.load(), 0u);
}

// A node whose PEER died: writes name its replica unavailable at once (no simulated time
// passes, so no timeout could), and the policy decides (quorum of two fails, one succeeds).
CAF_TEST(a_dead_node_is_unavailable_at_once_and_the_policy_decides) {
  caf::anon_send_exit(b.peer, caf::exit_reason::kill);
  exec_all();  // the down message crosses to earth; its PEER tells the coordinator
  auto r = write(earth, a, "k", "v", 0, caf::timespan{0});  // no simulated time passes
  CAF_REQUIRE_EQUAL(r.size(), 1u);
  CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
  CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
  CAF_CHECK_EQUAL(r[0].replicas[1].node, "mars");
  CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::unavailable);
  CAF_CHECK_EQUAL(r[0].status, op_status::unavailable);  // quorum of two: both needed
  auto one = write(earth, a, "k", "v2", uint8_t(success_policy::one) + 1, caf::timespan{0});
  CAF_REQUIRE_EQUAL(one.size(), 1u);
  CAF_CHECK_EQUAL(one[0].status, op_status::ok);  // policy one: the live replica is enough
  CAF_CHECK(holds(a, "k", "v2"));
}

CAF_TEST_FIXTURE_SCOPE_END()
