// Two nodes on CAF's simulated network (tests/actors/sim_cluster.hpp): one joins the other
// with the cookie; healthy writes come back ok from both replicas; a partition times the
// far replica out and the policy decides; after the partition heals, with what was sent
// across it dropped, anti-entropy repairs the far replica; a node that dies is unavailable
// at once, and a per-request policy decides; a node that leaves hands its keys over. CAF's
// own test runner, since its DSL cannot run inside GoogleTest.
#define CAF_SUITE cluster_sim

#include "tests/actors/sim_cluster.hpp"

#include <caf/test/unit_test_impl.hpp>

using namespace apsis;
using namespace apsis::sim;

namespace {

struct fixture {
  sim_cluster net{2};
  sim_node& a = net.node(0);
  sim_node& b = net.node(1);

  /// A put through node i; `passing` is the simulated time let pass meanwhile.
  result_batch write(size_t i, const std::string& key, const std::string& value, uint8_t policy = 0,
                     caf::timespan passing = 2s) {
    kv_op o;
    o.kind = op_kind::put;
    o.key = key;
    o.id = storage::make_id("default", key);
    o.data = value;
    o.policy = policy;
    return net.exec(i, op_batch{o}, passing);
  }

  static bool holds(const sim_node& n, const std::string& key, const std::string& value) {
    storage::Record r;
    return n.engine->get(storage::make_id("default", key), &r).is_ok() && r.data == value;
  }
};

}  // namespace

CAF_TEST_FIXTURE_SCOPE(cluster_sim_tests, fixture)

CAF_TEST(a_healthy_write_comes_back_ok_from_both_replicas) {
  for (size_t i : {0, 1}) {
    const std::string key = "k-" + net.node(i).name;
    auto r = write(i, key, "v", 0, caf::timespan{0});  // no time passes
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
    CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].status, op_status::ok);
    CAF_CHECK(holds(a, key, "v") && holds(b, key, "v"));
  }
}

CAF_TEST(a_partition_times_the_far_replica_out_and_anti_entropy_heals_it) {
  write(0, "before", "1");
  net.cut(0, 1);
  net.cut(1, 0);
  auto r = write(0, "during", "2");  // quorum of two needs both; 2 s pass
  CAF_REQUIRE_EQUAL(r.size(), 1u);
  CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
  CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
  CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::timeout);
  CAF_CHECK_EQUAL(r[0].status, op_status::unavailable);
  CAF_CHECK(holds(a, "during", "2"));  // the replica that succeeded stays written
  CAF_CHECK(!holds(b, "during", "2"));
  net.heal(true);
  CAF_CHECK(!holds(b, "during", "2"));            // the write sent across the partition was lost
  caf::anon_send(a.anti_entropy, atom::round_v);  // one anti-entropy round on the first node
  net.exec_all();
  CAF_CHECK(holds(b, "during", "2"));
  CAF_CHECK(holds(b, "before", "1"));
  CAF_CHECK_EQUAL(a.stats->repaired.load(), 1u);
  CAF_CHECK_EQUAL(a.stats->failed_rounds.load(), 0u);
}

// A node whose PEER died: writes name its replica unavailable at once (no simulated time
// passes, so no timeout could), and the policy decides (quorum of two fails, one succeeds).
CAF_TEST(a_dead_node_is_unavailable_at_once_and_the_policy_decides) {
  caf::anon_send_exit(b.peer, caf::exit_reason::kill);
  net.exec_all();  // the down message crosses over; the first node's PEER tells its coordinator
  auto r = write(0, "k", "v", 0, caf::timespan{0});
  CAF_REQUIRE_EQUAL(r.size(), 1u);
  CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
  CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
  CAF_CHECK_EQUAL(r[0].replicas[1].node, "n2");
  CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::unavailable);
  CAF_CHECK_EQUAL(r[0].status, op_status::unavailable);  // quorum of two: both needed
  auto one = write(0, "k", "v2", uint8_t(success_policy::one) + 1, caf::timespan{0});
  CAF_REQUIRE_EQUAL(one.size(), 1u);
  CAF_CHECK_EQUAL(one[0].status, op_status::ok);  // policy one: the live replica is enough
  CAF_CHECK(holds(a, "k", "v2"));
}

CAF_TEST_FIXTURE_SCOPE_END()

// Merge and PEER on the deterministic fixture: n3 shares group 1 with n1 and leaves. Its
// keys move to n1 (merge), then it marks itself gone and stops (PEER); a second leave that
// would empty a group is refused.
CAF_TEST(a_leaving_node_hands_its_keys_to_its_group_and_stops) {
  sim_cluster net{3, 1s, {1, 2, 1}};
  std::vector<std::string> keys;
  for (int k = 0; k < 40; ++k) {
    kv_op o;
    o.kind = op_kind::put;
    o.key = "k" + std::to_string(k);
    o.id = storage::make_id("default", o.key);
    o.data = "v";
    o.policy = uint8_t(success_policy::all) + 1;
    auto r = net.exec(0, op_batch{o});
    std::string why;
    for (const auto& x : r[0].replicas) why += " " + x.node + ":" + to_string(x.status);
    CAF_REQUIRE_EQUAL(to_string(r[0].status) + why, "ok" + why);
    keys.push_back(o.key);
  }
  auto held = [&](size_t i) { return net.node(i).engine->stats().keys; };
  CAF_REQUIRE(held(2) > 0 && held(0) + held(2) == keys.size());  // group 1 split in two
  auto admin = [&](size_t i, const std::string& cmd) {
    caf::scoped_actor self{net.planet_of(i).sys};
    std::string out;
    auto h = self->request(net.node(i).peer, caf::infinite, atom::admin_v, cmd);
    net.exec_all();
    h.receive([&](std::string& r) { out = r; }, [&](caf::error&) { out = "error"; });
    return out;
  };
  CAF_CHECK_EQUAL(admin(1, R"({"cmd": "leave"})"),
                  R"({"error":"leaving would leave group 2 with no backend"})");
  CAF_CHECK(admin(2, R"({"cmd": "leave"})").find(R"("leaving":"n3")") != std::string::npos);
  for (int i = 0; i < 5 && net.node(2).stats->leave_left.load() != 0; ++i)
    net.pass(2s);  // merge's steps, and its passes until one ends with nothing left
  CAF_CHECK_EQUAL(held(2), 0u);
  CAF_CHECK_EQUAL(held(0), keys.size());
  CAF_CHECK_EQUAL(net.node(2).stats->leave_left.load(), 0);
  for (int tick = 0; tick < 2; ++tick) {  // gossip marks it gone, the next tick stops it
    caf::anon_send(net.node(2).peer, atom::tick_v);
    net.exec_all();
  }
  CAF_CHECK(net.node(2).left);
}
