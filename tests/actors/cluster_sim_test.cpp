// Nodes on CAF's simulated network (tests/actors/sim_cluster.hpp), each case a few exact
// steps: healthy writes come back ok from both replicas; a partition times the far replica
// out and the policy decides, and after it heals (what was sent across it dropped)
// anti-entropy repairs the far replica; what one round pushes and counts; a delete reaching a
// replica that missed it; a dry-run `recover dc` pass that counts and changes nothing before
// a real one that repairs; a node that dies is unavailable at once (the policy decides) and
// rejoins when restarted; a node that leaves hands its keys over (merge) and stops (PEER).
// CAF's own test runner, since its DSL cannot run inside GoogleTest.
#define CAF_SUITE cluster_sim

#include <nlohmann/json.hpp>

#include <set>

#include "messages/listing.hpp"
#include "tests/actors/sim_cluster.hpp"

#include <caf/test/unit_test_impl.hpp>

using namespace apsis;
using namespace apsis::sim;

namespace {

struct fixture {
  sim_cluster net{2};
  sim_node& a = net.node(0);
  sim_node& b = net.node(1);
  /// Success policies a write may name (0: the node's, quorum).
  static constexpr uint8_t one = uint8_t(success_policy::one) + 1;
  static constexpr uint8_t all = uint8_t(success_policy::all) + 1;

  /// A put through node i; `passing` is the simulated time let pass meanwhile.
  result_batch write(size_t i, const std::string& key, const std::string& value, uint8_t policy = 0,
                     caf::timespan passing = 2s) {
    return net.exec(i, op_batch{key_op(op_kind::put, key, value, policy)}, passing);
  }

  static bool holds(const sim_node& n, const std::string& key, const std::string& value) {
    return value_at(n, key) == value;
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
    auto r = net.exec(0, op_batch{key_op(op_kind::put, key, value, all)});
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    std::string why;  // the replicas' statuses, should one fail
    for (const auto& x : r[0].replicas) why += " " + x.node + ":" + to_string(x.status);
    CAF_REQUIRE_EQUAL(to_string(r[0].status) + why, "ok" + why);
  }

  static std::string value_at(const sim_node& n, const std::string& key) {
    storage::Record r;
    storage::Status s = n.engine->get(storage::make_id("default", key), &r);
    return s.is_ok() ? r.data : s.is_not_found() ? "(none)" : s.to_string();
  }

  /// Every key a listing through node i finds, page by page (pages of 7 records), and the
  /// statuses of the replicas each page asked, in order.
  std::pair<std::set<std::string>, std::vector<std::string>> list(size_t i) {
    std::set<std::string> keys;
    std::vector<std::string> asked;
    kv_op page;
    page.kind = op_kind::list;
    page.key = "default";
    list_request q;
    q.count = 7;
    page.data = q.encode();
    for (int pages = 0; pages < 1000; ++pages) {
      auto r = net.exec(i, op_batch{page}, 2s);
      CAF_REQUIRE_EQUAL(r.size(), 1u);
      CAF_REQUIRE_EQUAL(r[0].status, op_status::ok);
      for (const auto& e : r[0].listed) keys.insert(e.meta.key);
      for (const auto& e : r[0].replicas) asked.push_back(e.node + ":" + to_string(e.status));
      if (!r[0].existed) break;
      page.id = r[0].record.id;
    }
    return {keys, asked};
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

// a holds "newer" at a later version and "mine" alone; b holds "theirs" alone. One round of
// a's pushes what b lacks or holds older, and counts all three as divergent; b's own keys
// wait for b's round.
CAF_TEST(a_round_pushes_what_the_other_side_lacks_or_holds_older) {
  put_both("same", "s");
  put_both("newer", "1");
  write_alone(0, key_op(op_kind::put, "newer", "2", one));
  write_alone(0, key_op(op_kind::put, "mine", "m", one));
  write_alone(1, key_op(op_kind::put, "theirs", "t", one));
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

// A change (INCR) is computed by one group's owner (the first in session order), whose
// record, version and all, the coordinator then writes to the other group: both replicas
// hold the same value at the same version, whichever node coordinated.
CAF_TEST(a_change_is_computed_once_and_its_record_written_to_every_group) {
  for (int k = 0; k < 4; ++k) {
    kv_op o = key_op(op_kind::change, "n");
    o.change.kind = value_change::incr;
    o.change.by = 1;
    auto r = net.exec(size_t(k % 2), op_batch{o});
    CAF_REQUIRE_EQUAL(r.size(), 1u);
    CAF_REQUIRE_EQUAL(r[0].replicas.size(), 2u);
    CAF_CHECK_EQUAL(r[0].replicas[0].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].replicas[1].status, op_status::ok);
    CAF_CHECK_EQUAL(r[0].replicas[0].version, r[0].replicas[1].version);
    CAF_CHECK_EQUAL(r[0].record.data, std::to_string(k + 1));
  }
  storage::RecordMeta ma, mb;
  CAF_REQUIRE(a.engine->lookup(storage::make_id("default", "n"), &ma).is_ok());
  CAF_REQUIRE(b.engine->lookup(storage::make_id("default", "n"), &mb).is_ok());
  CAF_CHECK_EQUAL(ma.version, mb.version);
  CAF_CHECK_EQUAL(value_at(a, "n"), "4");
  CAF_CHECK_EQUAL(value_at(b, "n"), "4");
  kv_op bad = key_op(op_kind::change, "word");
  put_both("word", "abc");
  bad.change.kind = value_change::incr;
  auto r = net.exec(1, op_batch{bad});
  CAF_CHECK_EQUAL(r[0].status, op_status::invalid);  // computed nowhere else, written nowhere
  CAF_CHECK_EQUAL(r[0].message, "value is not an integer or out of range");
  CAF_CHECK_EQUAL(r[0].replicas.size(), 1u);
  CAF_CHECK_EQUAL(value_at(b, "word"), "abc");
}

CAF_TEST(a_delete_reaches_a_replica_that_missed_it) {
  put_both("k", "v");
  write_alone(0, key_op(op_kind::remove, "k", {}, one));
  CAF_CHECK_EQUAL(value_at(b, "k"), "v");
  round(a);
  CAF_CHECK_EQUAL(value_at(b, "k"), "(none)");
  round(b);  // b's round does not bring the value back: a holds the newer tombstone
  CAF_CHECK_EQUAL(value_at(a, "k"), "(none)");
  CAF_CHECK_EQUAL(b.stats->repaired.load(), 0u);
}

CAF_TEST(a_dry_run_pass_counts_and_changes_nothing_then_a_real_one_repairs) {
  for (int i = 0; i < 5; ++i)
    write_alone(0, key_op(op_kind::put, "k" + std::to_string(i), "v", one));
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

// A listing asks one replica of each stretch (the first group's, n1); with that replica cut
// off, each page times out there and comes from the other group instead: every key both hold
// is listed; a key only the unreachable replica holds is not, until the partition heals.
CAF_TEST(a_listing_passes_to_the_other_group_when_a_replica_is_cut_off) {
  std::set<std::string> both;
  for (int i = 0; i < 30; ++i) {
    put_both("k" + std::to_string(i), "v");
    both.insert("k" + std::to_string(i));
  }
  write_alone(0, key_op(op_kind::put, "only-n1", "v", one));
  auto [healthy, asked] = list(1);
  CAF_CHECK_EQUAL(healthy.size(), 31u);
  CAF_CHECK(healthy.count("only-n1"));
  CAF_CHECK_EQUAL(asked.front(), "n1:ok");
  net.cut(0, 1);
  net.cut(1, 0);
  auto [cut, cut_asked] = list(1);
  CAF_CHECK(cut == both);
  CAF_CHECK_EQUAL(cut_asked.front(), "n1:timeout");
  CAF_CHECK_EQUAL(cut_asked.at(1), "n2:ok");
  net.heal(true);
  CAF_CHECK_EQUAL(list(1).first.size(), 31u);
}

CAF_TEST_FIXTURE_SCOPE_END()

// Merge and PEER on the deterministic fixture: n3 shares group 1 with n1 and leaves. Its
// keys move to n1 (merge), then it marks itself gone and stops (PEER); a second leave that
// would empty a group is refused.
CAF_TEST(a_leaving_node_hands_its_keys_to_its_group_and_stops) {
  sim_cluster net{3, 1s, {1, 2, 1}};
  std::vector<std::string> keys;
  for (int k = 0; k < 40; ++k) {
    kv_op o = key_op(op_kind::put, "k" + std::to_string(k), "v", fixture::all);
    auto r = net.exec(0, op_batch{o});
    std::string why;
    for (const auto& x : r[0].replicas) why += " " + x.node + ":" + to_string(x.status);
    CAF_REQUIRE_EQUAL(to_string(r[0].status) + why, "ok" + why);
    keys.push_back(o.key);
  }
  auto held = [&](size_t i) { return net.node(i).engine->stats().keys; };
  CAF_REQUIRE(held(2) > 0 && held(0) + held(2) == keys.size());  // group 1 split in two
  CAF_CHECK_EQUAL(net.admin(1, R"({"cmd": "leave"})"),
                  R"({"error":"leaving would leave group 2 with no backend"})");
  CAF_CHECK(net.admin(2, R"({"cmd": "leave"})").find(R"("leaving":"n3")") != std::string::npos);
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

// PEER: a killed node is down for the other at once (its replica is unavailable, not timed
// out); restarted as a new process, it joins again and takes writes.
CAF_TEST(a_killed_node_is_seen_down_and_rejoins_when_restarted) {
  sim_cluster net{2};
  auto put = [&](const std::string& key) {
    auto r = net.exec(0, op_batch{key_op(op_kind::put, key, "v", fixture::one)});
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
