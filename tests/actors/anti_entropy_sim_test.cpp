// Anti-entropy, merge's neighbour, and PEER on the deterministic simulated network
// (tests/actors/sim_cluster.hpp), each case a few exact steps: what one round pushes and
// counts, a delete reaching a replica that missed it, a dry-run `recover dc` pass that counts
// and changes nothing before a real one that repairs, and a killed node that its peers see
// down and that rejoins on restart. CAF's own runner, as for cluster_sim_test.cpp.
#define CAF_SUITE anti_entropy_sim

#include <nlohmann/json.hpp>

#include "tests/actors/sim_cluster.hpp"

#include <caf/test/unit_test_impl.hpp>

using namespace apsis;
using namespace apsis::sim;

namespace {

struct fixture {
  sim_cluster net{2};
  sim_node& a = net.node(0);
  sim_node& b = net.node(1);

  static kv_op op(op_kind kind, const std::string& key, const std::string& value = {}) {
    kv_op o;
    o.kind = kind;
    o.key = key;
    o.id = storage::make_id("default", key);
    o.data = value;
    o.policy = uint8_t(success_policy::one) + 1;  // what the cut side misses stays missed
    return o;
  }

  /// A put or delete through node i, with the links cut both ways, so that only node i's
  /// replica takes it; time passes for the other replica's request to time out.
  void write_alone(size_t i, kv_op o) {
    net.cut(0, 1);
    net.cut(1, 0);
    auto r = net.exec(i, op_batch{std::move(o)}, 2s);
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(r[0].status, op_status::ok);
    net.heal(true);  // what was sent across is lost
  }

  /// A put that both replicas take.
  void put_both(const std::string& key, const std::string& value) {
    kv_op o = op(op_kind::put, key, value);
    o.policy = uint8_t(success_policy::all) + 1;
    auto r = net.exec(0, op_batch{o});
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(to_string(r[0].status), "ok");
  }

  static std::string value_at(const sim_node& n, const std::string& key) {
    storage::Record r;
    storage::Status s = n.engine->get(storage::make_id("default", key), &r);
    return s.is_ok() ? r.data : s.is_not_found() ? "(none)" : s.to_string();
  }

  void round(sim_node& n) {
    caf::anon_send(n.anti_entropy, atom::round_v);
    net.exec_all();
  }

  /// `apsis recover` on node i; its answer once the network has nothing left to run.
  nlohmann::json recover(size_t i, const std::string& cmd) {
    caf::scoped_actor self{net.planet_of(i).sys};
    auto h = self->request(net.node(i).anti_entropy, caf::infinite, atom::recover_v, cmd);
    net.exec_all();
    std::string out = "{}";
    h.receive([&](std::string& r) { out = r; }, [&](caf::error&) {});
    return nlohmann::json::parse(out);
  }
};

}  // namespace

CAF_TEST_FIXTURE_SCOPE(anti_entropy_sim_tests, fixture)

// a holds "newer" at a later version and "mine" alone; b holds "theirs" alone. One round of
// a's pushes what b lacks or holds older, and counts all three as divergent; b's own keys
// wait for b's round.
CAF_TEST(a_round_pushes_what_the_other_side_lacks_or_holds_older) {
  put_both("same", "s");
  put_both("newer", "1");
  write_alone(0, op(op_kind::put, "newer", "2"));
  write_alone(0, op(op_kind::put, "mine", "m"));
  write_alone(1, op(op_kind::put, "theirs", "t"));
  CAF_CHECK_EQUAL(value_at(b, "newer"), "1");
  round(a);
  CAF_CHECK_EQUAL(a.stats->rounds.load(), 1u);
  CAF_CHECK_EQUAL(a.stats->failed_rounds.load(), 0u);
  CAF_CHECK_EQUAL(a.stats->repaired.load(), 2u);  // "newer" and "mine"
  CAF_CHECK_EQUAL(a.stats->divergent.load(), 3u);
  CAF_CHECK_EQUAL(value_at(b, "newer"), "2");
  CAF_CHECK_EQUAL(value_at(b, "mine"), "m");
  CAF_CHECK_EQUAL(value_at(a, "theirs"), "(none)");  // a pushes; it does not pull
  round(b);
  CAF_CHECK_EQUAL(value_at(a, "theirs"), "t");
  CAF_CHECK_EQUAL(b.stats->repaired.load(), 1u);
  round(a);  // converged: nothing differs
  CAF_CHECK_EQUAL(a.stats->repaired.load(), 2u);
  CAF_CHECK_EQUAL(a.stats->rounds.load(), 2u);
}

CAF_TEST(a_delete_reaches_a_replica_that_missed_it) {
  put_both("k", "v");
  write_alone(0, op(op_kind::remove, "k"));
  CAF_CHECK_EQUAL(value_at(b, "k"), "v");
  round(a);
  CAF_CHECK_EQUAL(value_at(b, "k"), "(none)");
  round(b);  // b's round does not bring the value back: a holds the newer tombstone
  CAF_CHECK_EQUAL(value_at(a, "k"), "(none)");
  CAF_CHECK_EQUAL(b.stats->repaired.load(), 0u);
}

CAF_TEST(a_dry_run_pass_counts_and_changes_nothing_then_a_real_one_repairs) {
  for (int i = 0; i < 5; ++i) write_alone(0, op(op_kind::put, "k" + std::to_string(i), "v"));
  recover(0, R"({"action": "start", "mode": "dc", "dry_run": true})");
  auto dry = recover(0, R"({"action": "status"})");
  CAF_CHECK_EQUAL(dry.value("state", ""), "done");
  CAF_CHECK_EQUAL(dry.value("divergent", 0), 5);
  CAF_CHECK_EQUAL(dry.value("repaired", 0), 0);
  CAF_CHECK_EQUAL(value_at(b, "k0"), "(none)");
  recover(0, R"({"action": "start", "mode": "dc"})");
  auto real = recover(0, R"({"action": "status"})");
  CAF_CHECK_EQUAL(real.value("state", ""), "done");
  CAF_CHECK_EQUAL(real.value("repaired", 0), 5);
  for (int i = 0; i < 5; ++i) CAF_CHECK_EQUAL(value_at(b, "k" + std::to_string(i)), "v");
}

CAF_TEST_FIXTURE_SCOPE_END()

// PEER: a killed node is down for the other at once (its replica is unavailable, not timed
// out); restarted as a new process, it joins again and takes writes.
CAF_TEST(a_killed_node_is_seen_down_and_rejoins_when_restarted) {
  sim_cluster net{2};
  auto put = [&](const std::string& key) {
    auto r = net.exec(0, op_batch{fixture::op(op_kind::put, key, "v")});
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
    return r[0].replicas[1].status;
  };
  CAF_CHECK_EQUAL(put("before"), op_status::ok);
  net.kill(1);
  CAF_CHECK_EQUAL(put("while-dead"), op_status::unavailable);
  net.restart(1);
  CAF_CHECK_EQUAL(net.node(1).incarnation, 2u);
  CAF_CHECK_EQUAL(put("after"), op_status::ok);
  CAF_CHECK_EQUAL(fixture::value_at(net.node(1), "after"), "v");
  CAF_CHECK_EQUAL(fixture::value_at(net.node(1), "before"), "v");  // its disk kept it
}
