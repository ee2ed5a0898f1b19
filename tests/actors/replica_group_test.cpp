#include "actors/replica_group.hpp"

#include "actors/shard.hpp"
#include "messages/listing.hpp"

#include <algorithm>
#include <set>
#include <thread>
#include "tests/actors/actor_fixture.hpp"

namespace apsis {
namespace {

/// A node that never answers: frozen, or on the far side of a partition. (The unused
/// argument: CAF 0.17 binds a null pointer when spawning a function with none, which UBSan
/// reports.)
peer_actor::behavior_type silent_peer(peer_actor::pointer self, int) {
  return {
      [=](atom::join, std::string&, node_entry&) {
        return self->make_response_promise<route_table>();
      },
      [=](atom::gossip, route_table&) {},
      [=](atom::apply, uint32_t, op_batch&) { return self->make_response_promise<result_batch>(); },
      [=](atom::connect, std::string&, uint16_t) {},
      [=](atom::advertise, uint16_t) {},
      [=](atom::tick) {},
      [=](atom::purge, std::string&) { return uint32_t(0); },
      [=](atom::admin, std::string&) { return std::string("{}"); },
  };
}

group_route remote_route(uint32_t group, peer_actor peer) {
  group_route r{group, "node-" + std::to_string(group), 1, {}, true};
  r.peer = std::move(peer);
  return r;
}

struct ReplicaGroupTest : testing::ActorTest {
  std::shared_ptr<storage::Engine> e1 = memory_engine(), e2 = memory_engine();

  group_route route(uint32_t group, std::shared_ptr<storage::Engine> e, size_t shards) {
    group_route g{group, "node-" + std::to_string(group), 1, {}};
    for (size_t i = 0; i < shards; ++i) {
      g.cores.push_back(std::make_shared<ShardCore>(e, clock));
      g.shards.push_back(sys.spawn(shard, g.cores.back()));
    }
    return g;
  }
  replica_group_config config_of(std::vector<group_route> groups, success_policy policy) {
    replica_group_config c;
    c.groups = std::move(groups);
    c.policy = policy;
    c.read_policy = success_policy::one;  // most cases here follow one read; quorum reads below
    c.timeout = std::chrono::milliseconds(200);
    c.clock = clock;
    return c;
  }
  replica_group_actor coordinator(std::vector<group_route> groups, success_policy policy) {
    return sys.spawn(replica_group, config_of(std::move(groups), policy));
  }
  /// A record of `key` far in the future: a write from this test's clock finds it newer.
  static storage::Record newer_than_any(const std::string& key) {
    storage::Record r;
    r.id = storage::make_id("default", key);
    r.key = key;
    r.data = "newer";
    r.version = {uint64_t(1) << 62, 9};
    return r;
  }
  std::shared_ptr<Hlc> clock = std::make_shared<Hlc>(7);
};

TEST_F(ReplicaGroupTest, AWriteReachesEveryGroupWithOneEntryPerReplica) {
  auto c = coordinator({route(1, e1, 4), route(2, e2, 2)}, success_policy::all);
  op_batch ops;
  for (int i = 0; i < 20; ++i) ops.push_back(op(op_kind::put, "k" + std::to_string(i), "v"));
  auto r = ask<result_batch>(c, atom::exec_v, ops);
  ASSERT_EQ(r.size(), 20u);
  for (const auto& res : r) {
    EXPECT_EQ(res.status, op_status::ok);
    ASSERT_EQ(res.replicas.size(), 2u);
    EXPECT_EQ(res.replicas[0].group, 1u);
    EXPECT_EQ(res.replicas[1].group, 2u);
    EXPECT_EQ(res.replicas[0].version, res.replicas[1].version);  // one version everywhere
    EXPECT_EQ(res.version.node, 7u);
  }
  for (int i = 0; i < 20; ++i) {
    storage::Record a, b;
    ASSERT_TRUE(e1->get(storage::make_id("default", "k" + std::to_string(i)), &a).is_ok());
    ASSERT_TRUE(e2->get(storage::make_id("default", "k" + std::to_string(i)), &b).is_ok());
    EXPECT_EQ(a.version, b.version);
  }
}

TEST_F(ReplicaGroupTest, ASilentReplicaTimesOutAndThePolicyDecides) {
  group_route dead = remote_route(2, sys.spawn(silent_peer, 0));
  auto strict = coordinator({route(1, e1, 1), dead}, success_policy::all);
  auto lenient = coordinator({route(1, e1, 1), dead}, success_policy::one);
  auto h1 =
      self->request(strict, caf::infinite, atom::exec_v, op_batch{op(op_kind::put, "a", "1")});
  auto h2 =
      self->request(lenient, caf::infinite, atom::exec_v, op_batch{op(op_kind::put, "b", "2")});
  sched.run();
  sched.clock().advance_time(std::chrono::milliseconds(200));  // the silent replica's timeout
  sched.run();
  result_batch strict_r, lenient_r;
  h1.receive([&](result_batch& r) { strict_r = r; }, [&](caf::error&) { FAIL(); });
  h2.receive([&](result_batch& r) { lenient_r = r; }, [&](caf::error&) { FAIL(); });
  ASSERT_EQ(strict_r.size(), 1u);
  ASSERT_EQ(strict_r[0].replicas.size(), 2u);
  EXPECT_EQ(strict_r[0].replicas[0].status, op_status::ok);
  EXPECT_EQ(strict_r[0].replicas[1].status, op_status::timeout);
  EXPECT_EQ(strict_r[0].status, op_status::unavailable);
  ASSERT_EQ(lenient_r.size(), 1u);
  EXPECT_EQ(lenient_r[0].status, op_status::ok);
  // The replica that succeeded stays written even where the policy failed.
  storage::Record got;
  EXPECT_TRUE(e1->get(storage::make_id("default", "a"), &got).is_ok());
}

TEST_F(ReplicaGroupTest, AReadUnderOneAsksTheFirstGroupOnlyWhenItHasTheKey) {
  auto c = coordinator({route(1, e1, 2), route(2, e2, 2)}, success_policy::quorum);
  ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::put, "k", "v")});
  auto r =
      ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k"), op(op_kind::get, "nope")});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, op_status::ok);
  EXPECT_EQ(r[0].record.data, "v");
  ASSERT_EQ(r[0].replicas.size(), 1u);
  EXPECT_EQ(r[0].replicas[0].group, 1u);
  EXPECT_EQ(r[1].status, op_status::not_found);
}

TEST_F(ReplicaGroupTest, ReadLatestAnswersTheNewestAndRepairsOlderReplicas) {
  auto c = coordinator({route(1, e1, 2), route(2, e2, 2)}, success_policy::quorum);
  ask<result_batch>(c, atom::exec_v,
                    op_batch{op(op_kind::put, "k", "v1"), op(op_kind::put, "gone", "x")});
  // Group 2 alone took a newer write of k and a delete of "gone" (group 1 was away).
  storage::Record newer;
  newer.id = storage::make_id("default", "k");
  newer.key = "k";
  newer.data = "v2";
  newer.version = clock->next();
  ASSERT_TRUE(e2->put(newer).is_ok());
  const storage::Version deleted = clock->next();
  ASSERT_TRUE(e2->remove(storage::make_id("default", "gone"), deleted, "gone").is_ok());
  auto plain = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k")});
  EXPECT_EQ(plain[0].record.data, "v1");  // the first group's, stale

  kv_op k = op(op_kind::get, "k"), gone = op(op_kind::get, "gone");
  k.read = gone.read = uint8_t(success_policy::all) + 1;
  auto r = ask<result_batch>(c, atom::exec_v, op_batch{k, gone});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, op_status::ok);
  EXPECT_EQ(r[0].record.data, "v2");
  EXPECT_EQ(r[0].version, newer.version);
  ASSERT_EQ(r[0].replicas.size(), 2u);
  EXPECT_LT(r[0].replicas[0].version, r[0].replicas[1].version);
  EXPECT_EQ(r[1].status, op_status::not_found);
  EXPECT_EQ(r[1].version, deleted);
  // The older replica was repaired: group 1 now holds v2 and the tombstone.
  storage::Record got;
  ASSERT_TRUE(e1->get(storage::make_id("default", "k"), &got).is_ok());
  EXPECT_EQ(got.data, "v2");
  EXPECT_EQ(got.version, newer.version);
  storage::RecordMeta meta;
  ASSERT_TRUE(e1->lookup(storage::make_id("default", "gone"), &meta).is_ok());
  EXPECT_TRUE(meta.tombstone);
  EXPECT_EQ(meta.version, deleted);
}

TEST_F(ReplicaGroupTest, APerRequestPolicyOverridesTheSessions) {
  group_route dead = remote_route(2, sys.spawn(silent_peer, 0));
  auto c = coordinator({route(1, e1, 1), dead}, success_policy::one);
  kv_op strict = op(op_kind::put, "k", "v");
  strict.policy = uint8_t(success_policy::all) + 1;
  auto h =
      self->request(c, caf::infinite, atom::exec_v, op_batch{strict, op(op_kind::put, "k2", "v")});
  sched.run();
  sched.clock().advance_time(std::chrono::milliseconds(200));  // the silent replica's timeout
  sched.run();
  result_batch r;
  h.receive([&](result_batch& got) { r = got; }, [&](caf::error&) { FAIL(); });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, op_status::unavailable);  // all: the silent replica fails it
  EXPECT_EQ(r[1].status, op_status::ok);           // the session's one
}

TEST_F(ReplicaGroupTest, ARandomReadOrderSpreadsReadsOverTheGroups) {
  auto cfg = config_of({route(1, e1, 1), route(2, e2, 1)}, success_policy::all);
  cfg.read_order = read_order_kind::random;
  auto c = sys.spawn(replica_group, cfg);
  ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::put, "k", "v")});
  std::set<uint32_t> groups;
  for (int i = 0; i < 64; ++i) {
    auto r = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k")});
    ASSERT_EQ(r[0].status, op_status::ok);
    ASSERT_EQ(r[0].replicas.size(), 1u);
    groups.insert(r[0].replicas[0].group);
  }
  EXPECT_EQ(groups, (std::set<uint32_t>{1, 2}));  // chance of one group only: 2^-63
}

TEST_F(ReplicaGroupTest, ALatencyReadOrderAsksTheLocalOwnerBeforeASlowRemoteOne) {
  // The session lists a silent remote group first: in session order a read waits for its
  // timeout, in latency order the local owner answers at once.
  std::vector<group_route> routes{remote_route(1, sys.spawn(silent_peer, 0)), route(2, e2, 1)};
  auto cfg = config_of(routes, success_policy::one);
  cfg.read_order = read_order_kind::latency;
  auto c = sys.spawn(replica_group, cfg);
  auto h = self->request(c, caf::infinite, atom::exec_v, op_batch{op(op_kind::put, "k", "v")});
  sched.run();
  sched.clock().advance_time(std::chrono::milliseconds(200));
  sched.run();
  h.receive([](result_batch&) {}, [&](caf::error&) { FAIL(); });
  auto r = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k")});  // no time passes
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, op_status::ok);
  ASSERT_EQ(r[0].replicas.size(), 1u);
  EXPECT_EQ(r[0].replicas[0].group, 2u);
}

// The direct path must answer exactly as the actor does: conditions, payloads, entries.
TEST_F(ReplicaGroupTest, TheDirectPathAnswersAsTheActorDoes) {
  auto batch = [] {
    kv_op nx = op(op_kind::put, "k", "v1");
    nx.cond = op_cond::if_absent;
    kv_op nx_again = nx;
    nx_again.data = "v2";
    return op_batch{nx,
                    nx_again,
                    op(op_kind::get, "k"),
                    op(op_kind::lookup, "none"),
                    op(op_kind::remove, "k"),
                    op(op_kind::get, "k")};
  };
  auto by_actor =
      ask<result_batch>(coordinator({route(1, e1, 3)}, success_policy::all), atom::exec_v, batch());
  auto local = LocalCoordinator::make(config_of({route(1, e2, 3)}, success_policy::all));
  ASSERT_TRUE(local);
  op_batch ops = batch();
  result_batch direct = local->run(ops);
  ASSERT_EQ(direct.size(), by_actor.size());
  const op_status expected[] = {op_status::ok, op_status::condition_failed,
                                op_status::ok, op_status::not_found,
                                op_status::ok, op_status::not_found};
  for (size_t i = 0; i < direct.size(); ++i) {
    EXPECT_EQ(direct[i].status, expected[i]) << "op " << i;
    EXPECT_EQ(by_actor[i].status, expected[i]) << "op " << i;
    EXPECT_EQ(direct[i].existed, by_actor[i].existed) << "op " << i;
    ASSERT_EQ(direct[i].replicas.size(), 1u);
    EXPECT_EQ(direct[i].replicas[0].group, 1u);
  }
  EXPECT_EQ(direct[2].record.data, "v1");
  EXPECT_EQ(by_actor[2].record.data, "v1");
}

// A node alone skips the plan: its answers, replica entries included, are the plan's. An
// operation that names its group takes the planned path, so the two run side by side.
TEST_F(ReplicaGroupTest, ANodeAloneAnswersAsThePlannedPathDoes) {
  auto batch = [](bool named) {
    op_batch ops;
    for (int i = 0; i < 12; ++i) ops.push_back(op(op_kind::put, "k" + std::to_string(i), "v"));
    kv_op nx = op(op_kind::put, "k3", "again");
    nx.cond = op_cond::if_absent;
    kv_op stale = op(op_kind::put, "old", "older");
    stale.version = {1, 1};  // below the stored one: ordered before it, not failed
    ops.insert(ops.end(), {nx, stale, op(op_kind::get, "k5"), op(op_kind::get, "old"),
                           op(op_kind::lookup, "none"), op(op_kind::remove, "k7"),
                           op(op_kind::remove, "k7"), op(op_kind::get, "k7")});
    if (named)
      for (auto& o : ops) o.groups = {1};
    return ops;
  };
  storage::Record newer = newer_than_any("old");
  ASSERT_TRUE(e1->put(newer).is_ok());
  ASSERT_TRUE(e2->put(newer).is_ok());
  auto alone = LocalCoordinator::make(config_of({route(1, e1, 3)}, success_policy::all));
  auto planned = LocalCoordinator::make(config_of({route(1, e2, 3)}, success_policy::all));
  ASSERT_TRUE(alone && planned);
  op_batch a = batch(false), b = batch(true);
  result_batch fast = alone->run(a), slow = planned->run(b);
  ASSERT_EQ(fast.size(), slow.size());
  std::set<size_t> shards;
  for (const auto& o : batch(false)) shards.insert(shard_index(o.id, 3));
  EXPECT_EQ(shards.size(), 3u) << "the batch should span every shard";
  for (size_t i = 0; i < fast.size(); ++i) {
    SCOPED_TRACE("op " + std::to_string(i));
    EXPECT_EQ(fast[i].status, slow[i].status);
    EXPECT_EQ(fast[i].message, slow[i].message);
    EXPECT_EQ(fast[i].existed, slow[i].existed);
    EXPECT_EQ(fast[i].record.data, slow[i].record.data);
    EXPECT_EQ(fast[i].version.stamp != 0, slow[i].version.stamp != 0);
    ASSERT_EQ(fast[i].replicas.size(), 1u);
    ASSERT_EQ(slow[i].replicas.size(), 1u);
    EXPECT_EQ(fast[i].replicas[0].group, slow[i].replicas[0].group);
    EXPECT_EQ(fast[i].replicas[0].node, slow[i].replicas[0].node);
    EXPECT_EQ(fast[i].replicas[0].backend, slow[i].replicas[0].backend);
    EXPECT_EQ(fast[i].replicas[0].status, slow[i].replicas[0].status);
    EXPECT_EQ(fast[i].replicas[0].version, fast[i].version);
  }
  const size_t nx = 12, stale = 13, get_old = 15, removed = 17;
  EXPECT_EQ(fast[nx].status, op_status::condition_failed);
  EXPECT_EQ(fast[stale].status, op_status::ok);
  EXPECT_EQ(fast[get_old].record.data, "newer");
  EXPECT_TRUE(fast[removed].existed);
  EXPECT_FALSE(fast[removed + 1].existed);
  EXPECT_EQ(fast[removed + 2].status, op_status::not_found);
  // Reads alone, over every shard: one batch on one shard's core, the same answers.
  op_batch reads_a, reads_b;
  for (int i = 0; i < 12; ++i) reads_a.push_back(op(op_kind::get, "k" + std::to_string(i)));
  reads_a.push_back(op(op_kind::lookup, "old"));
  reads_b = reads_a;
  for (auto& o : reads_b) o.groups = {1};
  fast = alone->run(reads_a), slow = planned->run(reads_b);
  ASSERT_EQ(fast.size(), 13u);
  ASSERT_EQ(slow.size(), 13u);
  for (size_t i = 0; i < fast.size(); ++i) {
    SCOPED_TRACE("read " + std::to_string(i));
    EXPECT_EQ(fast[i].status, i == 7 ? op_status::not_found : op_status::ok);
    EXPECT_EQ(fast[i].status, slow[i].status);
    EXPECT_EQ(fast[i].record.data, slow[i].record.data);
    EXPECT_EQ(fast[i].json_size + fast[i].data_size, slow[i].json_size + slow[i].data_size);
    ASSERT_EQ(fast[i].replicas.size(), 1u);
    EXPECT_EQ(fast[i].replicas[0].status, slow[i].replicas[0].status);
  }
}

TEST_F(ReplicaGroupTest, ThereIsNoDirectPathToARemoteReplica) {
  group_route remote = remote_route(2, sys.spawn(silent_peer, 0));
  EXPECT_FALSE(LocalCoordinator::make(config_of({route(1, e1, 1), remote}, success_policy::one)));
  EXPECT_TRUE(
      LocalCoordinator::make(config_of({route(1, e1, 1), route(2, e2, 1)}, success_policy::one)));
}

// Many threads writing one key through the direct path: each write is stamped under the
// shard's lock, so none is refused as stale and the newest version is what stays.
TEST_F(ReplicaGroupTest, ConcurrentDirectWritersOfOneKeyAllSucceed) {
  auto local = LocalCoordinator::make(config_of({route(1, e1, 2)}, success_policy::all));
  ASSERT_TRUE(local);
  constexpr int threads = 4, writes = 2000;
  std::vector<storage::Version> newest(threads);
  std::vector<int> failed(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < writes; ++i) {
        op_batch ops{op(op_kind::put, "hot", std::to_string(t) + ":" + std::to_string(i))};
        result_batch r = local->run(ops);
        if (r.size() != 1 || r[0].status != op_status::ok)
          ++failed[t];
        else if (newest[t] < r[0].version)
          newest[t] = r[0].version;
      }
    });
  }
  for (auto& th : pool) th.join();
  storage::Version top;
  for (int t = 0; t < threads; ++t) {
    EXPECT_EQ(failed[t], 0) << "thread " << t;
    if (top < newest[t]) top = newest[t];
  }
  storage::Record got;
  ASSERT_TRUE(e1->get(storage::make_id("default", "hot"), &got).is_ok());
  EXPECT_EQ(got.version, top);
}

// A replica that already holds a newer version (a concurrent write won there) has not
// failed: newest wins, and this write is ordered before that one.
TEST_F(ReplicaGroupTest, AWriteFindingANewerVersionIsSupersededNotFailed) {
  storage::Record newer = newer_than_any("k");
  ASSERT_TRUE(e1->put(newer).is_ok());
  auto c = coordinator({route(1, e1, 1), route(2, e2, 1)}, success_policy::all);
  auto r = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::put, "k", "older")});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, op_status::ok);
  storage::Record got;
  ASSERT_TRUE(e1->get(newer.id, &got).is_ok());
  EXPECT_EQ(got.data, "newer");
  ASSERT_TRUE(e2->get(newer.id, &got).is_ok());
  EXPECT_EQ(got.data, "older");
}

// In a cluster each group is a ring: a key goes to the backend whose point is the greatest
// at or below its id, and a replica on a node seen as down fails at once.
TEST_F(ReplicaGroupTest, WithRingsEachKeyGoesToItsOwnerAndADownNodeFailsAtOnce) {
  group_route a = route(1, e1, 2), b = route(1, e2, 2);
  a.node = b.node = "me";
  b.backend = 2;
  auto c = coordinator({a, b}, success_policy::one);
  storage::Id low, high;
  high.bytes[0] = 0x80;
  route_table t;
  node_entry me{"me", 1, 1, "127.0.0.1", 1, 0, {{1, 1, {low}}, {2, 1, {high}}}, {}, {}, {}};
  node_entry far{"far",
                 1,
                 1,
                 "127.0.0.1",
                 2,
                 0,
                 {{5, 2, {low}}},
                 caf::actor_cast<caf::actor>(sys.spawn(silent_peer, 0)),
                 {},
                 {}};
  t.merge(me);
  t.merge(far);
  self->send(c, atom::routes_v, t, std::vector<std::string>{"far"});
  sched.run();
  op_batch ops;
  for (int i = 0; i < 40; ++i) ops.push_back(op(op_kind::put, "k" + std::to_string(i), "v"));
  auto r = ask<result_batch>(c, atom::exec_v, ops);  // no timer runs: "far" fails at once
  ASSERT_EQ(r.size(), 40u);
  size_t in_e1 = 0, in_e2 = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i].status, op_status::ok);  // policy one
    ASSERT_EQ(r[i].replicas.size(), 2u);
    EXPECT_EQ(r[i].replicas[1].node, "far");
    EXPECT_EQ(r[i].replicas[1].status, op_status::unavailable);
    storage::Record got;
    bool is_low = ops[i].id < high;
    EXPECT_EQ(e1->get(ops[i].id, &got).is_ok(), is_low) << i;
    EXPECT_EQ(e2->get(ops[i].id, &got).is_ok(), !is_low) << i;
    EXPECT_EQ(r[i].replicas[0].backend, is_low ? 1u : 2u);
    (is_low ? in_e1 : in_e2)++;
  }
  EXPECT_GT(in_e1, 0u);
  EXPECT_GT(in_e2, 0u);
  auto read = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k1")});
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].status, op_status::ok);
  EXPECT_EQ(read[0].record.data, "v");
}

// A read whose group does not answer in time asks the next group, and says so.
TEST_F(ReplicaGroupTest, AReadFailsOverToTheNextGroupWhenItsOwnTimesOut) {
  storage::Record r;
  r.id = storage::make_id("default", "k");
  r.key = "k";
  r.data = "from group 2";
  r.version = {5, 1};
  ASSERT_TRUE(e2->put(r).is_ok());
  auto c = coordinator({remote_route(1, sys.spawn(silent_peer, 0)), route(2, e2, 1)},
                       success_policy::one);
  auto h = self->request(c, caf::infinite, atom::exec_v, op_batch{op(op_kind::get, "k")});
  sched.run();
  sched.clock().advance_time(std::chrono::milliseconds(200));  // group 1's timeout
  sched.run();
  result_batch got;
  h.receive([&](result_batch& res) { got = std::move(res); }, [&](caf::error&) { FAIL(); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, op_status::ok);
  EXPECT_EQ(got[0].record.data, "from group 2");
  ASSERT_EQ(got[0].replicas.size(), 2u);
  EXPECT_EQ(got[0].replicas[0].status, op_status::timeout);
  EXPECT_EQ(got[0].replicas[1].group, 2u);
  EXPECT_EQ(got[0].replicas[1].status, op_status::ok);
}

// Under `one`, a miss passes to the next group, which may hold a write the first missed
// (the first group was down when it was acknowledged), and a newer tombstone stays a miss.
TEST_F(ReplicaGroupTest, AReadUnderOneFailsOverOnAMissButKeepsANewerDelete) {
  auto c = coordinator({route(1, e1, 1), route(2, e2, 1)}, success_policy::quorum);
  storage::Record r;
  r.id = storage::make_id("default", "only-in-2");
  r.key = "only-in-2";
  r.data = "v";
  r.version = clock->next();
  ASSERT_TRUE(e2->put(r).is_ok());
  storage::Record old = r;
  old.id = storage::make_id("default", "deleted-in-1");
  old.key = "deleted-in-1";
  old.version = clock->next();
  ASSERT_TRUE(e2->put(old).is_ok());
  const storage::Version deleted = clock->next();
  ASSERT_TRUE(e1->remove(old.id, deleted, old.key).is_ok());
  auto got =
      ask<result_batch>(c, atom::exec_v,
                        op_batch{op(op_kind::get, "only-in-2"), op(op_kind::get, "deleted-in-1"),
                                 op(op_kind::lookup, "nowhere")});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status, op_status::ok);
  EXPECT_EQ(got[0].record.data, "v");
  ASSERT_EQ(got[0].replicas.size(), 2u);
  EXPECT_EQ(got[0].replicas[0].status, op_status::not_found);
  EXPECT_EQ(got[0].replicas[1].status, op_status::ok);
  EXPECT_EQ(got[1].status, op_status::not_found);  // group 2's live copy is older
  EXPECT_EQ(got[1].version, deleted);
  EXPECT_EQ(got[2].status, op_status::not_found);
  EXPECT_EQ(got[2].replicas.size(), 2u);
}

// Under `quorum` a read asks every group, needs a majority of answers, and answers the newest.
TEST_F(ReplicaGroupTest, AQuorumReadAnswersTheNewestOfAMajority) {
  auto cfg =
      config_of({route(1, e1, 1), route(2, e2, 1), remote_route(3, sys.spawn(silent_peer, 0))},
                success_policy::one);
  cfg.read_policy = success_policy::quorum;
  auto c = sys.spawn(replica_group, cfg);
  storage::Record r;
  r.id = storage::make_id("default", "k");
  r.key = "k";
  r.data = "newer";
  r.version = clock->next();
  ASSERT_TRUE(e2->put(r).is_ok());  // group 1 missed it
  auto read = [&](uint8_t policy) {
    kv_op get = op(op_kind::get, "k");
    get.read = policy;
    auto h = self->request(c, caf::infinite, atom::exec_v, op_batch{get});
    sched.run();
    sched.clock().advance_time(std::chrono::milliseconds(200));  // group 3's timeout
    sched.run();
    result_batch out;
    h.receive([&](result_batch& got) { out = std::move(got); }, [&](caf::error&) { FAIL(); });
    return out;
  };
  auto q = read(0);  // the node's: quorum, 2 of 3
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].status, op_status::ok);
  EXPECT_EQ(q[0].record.data, "newer");
  ASSERT_EQ(q[0].replicas.size(), 3u);
  EXPECT_EQ(q[0].replicas[2].status, op_status::timeout);
  storage::Record repaired;  // group 1 got the newer version in the background
  ASSERT_TRUE(e1->get(r.id, &repaired).is_ok());
  EXPECT_EQ(repaired.data, "newer");
  auto all = read(uint8_t(success_policy::all) + 1);  // 3 of 3: the silent one fails it
  EXPECT_EQ(all[0].status, op_status::unavailable);
  EXPECT_NE(all[0].message.find("2 of 3"), std::string::npos) << all[0].message;
}

// In a cluster, reads under `one` whose replica is on this node are answered on the caller's
// thread from the routes the actor last published; anything else (a miss, a write, a wider
// policy, a remote replica first) is left to the actor.
TEST_F(ReplicaGroupTest, AClusterAnswersReadsOfItsOwnReplicasWithoutTheActor) {
  auto routes_with = [&](uint32_t my_group, uint32_t far_group, read_order_kind order) {
    group_route mine = route(my_group, e1, 1);
    mine.node = "me";
    replica_group_config cfg = config_of({mine}, success_policy::one);
    cfg.read_order = order;
    cfg.snapshot = std::make_shared<RouteSnapshot>();
    auto c = sys.spawn(replica_group, cfg);
    storage::Id low;
    route_table t;
    t.merge(node_entry{"me", 1, 1, "127.0.0.1", 1, 0, {{1, my_group, {low}}}, {}, {}, {}});
    t.merge(node_entry{"far",
                       1,
                       1,
                       "127.0.0.1",
                       2,
                       0,
                       {{5, far_group, {low}}},
                       caf::actor_cast<caf::actor>(sys.spawn(silent_peer, 0)),
                       {},
                       {}});
    self->send(c, atom::routes_v, t, std::vector<std::string>{});
    sched.run();
    return cfg.snapshot->get();
  };
  storage::Record k;
  k.id = storage::make_id("default", "k");
  k.key = "k";
  k.data = "v";
  k.version = storage::Version{1, 1};
  ASSERT_TRUE(e1->put(k).is_ok());
  auto here = routes_with(1, 2, read_order_kind::session);  // this node's group asked first
  ASSERT_TRUE(here);
  auto r = here->read_here(op_batch{op(op_kind::get, "k")});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].status, op_status::ok);
  EXPECT_EQ((*r)[0].record.data, "v");
  ASSERT_EQ((*r)[0].replicas.size(), 1u);
  EXPECT_EQ((*r)[0].replicas[0].node, "me");
  EXPECT_FALSE(here->read_here(op_batch{op(op_kind::get, "missing")}));  // the actor fails over
  EXPECT_FALSE(here->read_here(op_batch{op(op_kind::get, "k"), op(op_kind::get, "missing")}));
  kv_op quorum = op(op_kind::get, "k");
  quorum.read = uint8_t(success_policy::quorum) + 1;
  EXPECT_FALSE(here->read_here(op_batch{quorum}));
  EXPECT_FALSE(here->read_here(op_batch{op(op_kind::put, "k", "w")}));
  // The far node's group first in session order: its replica is asked, by the actor; by
  // latency this node's own comes first.
  EXPECT_FALSE(
      routes_with(2, 1, read_order_kind::session)->read_here(op_batch{op(op_kind::get, "k")}));
  EXPECT_TRUE(
      routes_with(2, 1, read_order_kind::latency)->read_here(op_batch{op(op_kind::get, "k")}));
  EXPECT_FALSE(
      routes_with(1, 2, read_order_kind::random)->read_here(op_batch{op(op_kind::get, "k")}));
}

// ---- A listing page over many stretches (split_listing / join_listing). ----

/// Sixteen points a backend: bytes[0] = 16 j + offset (the rest zero).
std::vector<storage::Id> points_at(uint8_t offset) {
  std::vector<storage::Id> out(16);
  for (size_t j = 0; j < out.size(); ++j) out[j].bytes[0] = uint8_t(16 * j + offset);
  return out;
}

storage::Id at_byte(uint8_t b) {
  storage::Id id;
  id.bytes[0] = b;
  return id;
}

struct ListingTest : ReplicaGroupTest {
  replica_group_actor c;
  std::vector<storage::Id> written;  ///< the ids of the keys put, ascending

  /// One group of two backends with interleaved points (`a` at 16 j + a_at, `b` at 16 j +
  /// b_at, so 32 stretches); `b` on a node that is down when b_remote; then n keys put
  /// (those whose owner is down fail).
  void start(uint8_t a_at, uint8_t b_at, bool b_remote, int n) {
    group_route a = route(1, e1, 1), b = route(1, e2, 1);
    a.node = b.node = "me";
    b.backend = 2;
    route_table t;
    node_entry me{"me", 1, 1, "127.0.0.1", 1, 0, {{1, 1, points_at(a_at)}}, {}, {}, {}};
    if (!b_remote) me.backends.push_back({2, 1, points_at(b_at)});
    t.merge(me);
    std::vector<std::string> down;
    if (b_remote) {
      t.merge(node_entry{"far", 1, 1, "127.0.0.1", 2, 0, {{5, 1, points_at(b_at)}}, {}, {}, {}});
      down.push_back("far");
    }
    c = coordinator(b_remote ? std::vector<group_route>{a} : std::vector<group_route>{a, b},
                    success_policy::one);
    self->send(c, atom::routes_v, t, down);
    sched.run();
    op_batch ops;
    for (int i = 0; i < n; ++i) ops.push_back(op(op_kind::put, "k" + std::to_string(i), "v"));
    auto r = ask<result_batch>(c, atom::exec_v, ops);
    ASSERT_EQ(r.size(), ops.size());
    for (size_t i = 0; i < r.size(); ++i)
      if (r[i].status == op_status::ok) written.push_back(ops[i].id);
    std::sort(written.begin(), written.end());
  }

  /// The page of at most `count` records examined per stretch from `from`.
  op_result page(const storage::Id& from, uint32_t count) {
    kv_op o;
    o.kind = op_kind::list;
    o.key = "default";
    o.id = from;
    list_request q;
    q.count = count;
    o.data = q.encode();
    auto r = ask<result_batch>(c, atom::exec_v, op_batch{o});
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? op_result{} : r[0];
  }

  static std::vector<storage::Id> ids_of(const op_result& r) {
    std::vector<storage::Id> ids;
    for (const auto& e : r.listed) ids.push_back(e.meta.id);
    return ids;
  }

  /// The written ids in [from, to).
  std::vector<storage::Id> written_in(const storage::Id& from, const storage::Id& to) const {
    return {std::lower_bound(written.begin(), written.end(), from),
            std::lower_bound(written.begin(), written.end(), to)};
  }
};

// A page asks its first 16 stretches at once and joins them: from the start of the ring,
// [min, 0x04) (the last point's) then 15 more, so it ends at 0x7c; the next page ends at 0xfc,
// and the last holds [0xfc, max]. (Ids compared with ==: gtest would print 64-byte dumps.)
TEST_F(ListingTest, APageJoinsTheNextSixteenStretchesInIdOrder) {
  start(4, 12, false, 1000);
  ASSERT_EQ(written.size(), 1000u);
  op_result r = page(storage::Id::min(), 1000);
  ASSERT_EQ(r.status, op_status::ok);
  EXPECT_TRUE(r.existed);
  EXPECT_TRUE(r.record.id == at_byte(0x7c));
  EXPECT_TRUE(ids_of(r) == written_in(storage::Id::min(), at_byte(0x7c)));
  std::set<uint32_t> asked;  // both backends answered a part of it
  for (const auto& x : r.replicas) asked.insert(x.backend);
  EXPECT_EQ(asked, (std::set<uint32_t>{1, 2}));
  op_result second = page(r.record.id, 1000);
  EXPECT_TRUE(second.existed);
  EXPECT_TRUE(second.record.id == at_byte(0xfc));
  EXPECT_TRUE(ids_of(second) == written_in(at_byte(0x7c), at_byte(0xfc)));
  op_result last = page(second.record.id, 1000);
  EXPECT_FALSE(last.existed);
  EXPECT_TRUE(ids_of(last) == written_in(at_byte(0xfc), storage::Id::max()));
}

// A page examines at most list_count_max records: as many stretches as that allows, each
// examining up to COUNT.
TEST_F(ListingTest, APageOfTheLargestCountsAsksFewerStretches) {
  start(4, 12, false, 1000);
  op_result one = page(storage::Id::min(), list_count_max);  // one stretch: [min, 0x04)
  EXPECT_TRUE(one.existed);
  EXPECT_TRUE(one.record.id == at_byte(0x04));
  op_result two = page(storage::Id::min(), list_count_max / 2);  // two: up to 0x0c
  EXPECT_TRUE(two.record.id == at_byte(0x0c));
  EXPECT_TRUE(ids_of(two) == written_in(storage::Id::min(), at_byte(0x0c)));
}

// A stretch that stops inside itself (its count reached) ends the page there: the next
// stretches' answers are not joined after a gap.
TEST_F(ListingTest, AStretchThatReachesItsCountEndsThePage) {
  start(4, 12, false, 1000);
  for (uint32_t count : {3u, 7u}) {
    std::vector<storage::Id> seen;
    storage::Id at = storage::Id::min();
    for (int pages = 0; pages < 1000; ++pages) {
      op_result r = page(at, count);
      ASSERT_EQ(r.status, op_status::ok);
      if (pages == 0) {
        EXPECT_EQ(r.listed.size(), count);  // [min, 0x04) holds more
      }
      for (const auto& id : ids_of(r)) seen.push_back(id);
      if (!r.existed) break;
      at = r.record.id;
    }
    EXPECT_TRUE(seen == written) << "count " << count;  // each key once, in id order
  }
}

// A stretch whose owner is down ends the page before it (after the first: the page so far
// is answered, and the next one starts at that stretch); a page that starts there fails.
TEST_F(ListingTest, AStretchThatFailsEndsThePageBeforeIt) {
  start(12, 4, true, 2000);  // [min, 0x04) is ours; [0x04, 0x0c) the down node's
  ASSERT_GT(written_in(storage::Id::min(), at_byte(0x04)).size(), 0u);
  op_result r = page(storage::Id::min(), 10000);
  ASSERT_EQ(r.status, op_status::ok);
  EXPECT_TRUE(r.existed);
  EXPECT_TRUE(r.record.id == at_byte(0x04));
  EXPECT_TRUE(ids_of(r) == written_in(storage::Id::min(), at_byte(0x04)));
  op_result next = page(r.record.id, 10000);
  EXPECT_EQ(next.status, op_status::unavailable);
  EXPECT_TRUE(next.listed.empty());
}

TEST(Decide, QuorumNeedsAMajorityAndAgreementExplainsFailure) {
  auto entry = [](op_status s) { return replica_entry{1, "n", 1, s, {}}; };
  std::vector<replica_entry> two_of_three{entry(op_status::ok), entry(op_status::ok),
                                          entry(op_status::timeout)};
  EXPECT_EQ(decide(success_policy::quorum, two_of_three), op_status::ok);
  EXPECT_EQ(decide(success_policy::all, two_of_three), op_status::unavailable);
  std::vector<replica_entry> all_nx{entry(op_status::condition_failed),
                                    entry(op_status::condition_failed)};
  EXPECT_EQ(decide(success_policy::one, all_nx), op_status::condition_failed);
  EXPECT_EQ(decide(success_policy::one, {}), op_status::unavailable);
}

}  // namespace
}  // namespace apsis
