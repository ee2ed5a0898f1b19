#include "actors/replica_group.hpp"

#include "actors/shard.hpp"
#include "tests/actors/actor_fixture.hpp"

namespace apsis {
namespace {

/// A shard that never answers: a replica on a frozen or partitioned node.
shard_actor::behavior_type silent_shard(shard_actor::pointer self) {
  return {[=](atom::apply, op_batch&) { return self->make_response_promise<result_batch>(); }};
}

struct ReplicaGroupTest : testing::ActorTest {
  std::shared_ptr<storage::Engine> e1 = memory_engine(), e2 = memory_engine();

  group_route route(uint32_t group, std::shared_ptr<storage::Engine> e, size_t shards) {
    group_route g{group, "node-" + std::to_string(group), 1, {}};
    for (size_t i = 0; i < shards; ++i) g.shards.push_back(sys.spawn(shard, e));
    return g;
  }
  replica_group_actor coordinator(std::vector<group_route> groups, success_policy policy) {
    replica_group_config c;
    c.groups = std::move(groups);
    c.policy = policy;
    c.timeout = std::chrono::milliseconds(200);
    c.clock = std::make_shared<Hlc>(7);
    return sys.spawn(replica_group, std::move(c));
  }
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
  group_route dead{2, "node-2", 1, {sys.spawn(silent_shard)}, true};  // on a remote node
  auto strict = coordinator({route(1, e1, 1), dead}, success_policy::all);
  auto lenient = coordinator({route(1, e1, 1), dead}, success_policy::one);
  auto h1 = self->request(strict, caf::infinite, atom::exec_v, op_batch{op(op_kind::put, "a", "1")});
  auto h2 = self->request(lenient, caf::infinite, atom::exec_v, op_batch{op(op_kind::put, "b", "2")});
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

TEST_F(ReplicaGroupTest, ReadsAskTheFirstGroupOnly) {
  auto c = coordinator({route(1, e1, 2), route(2, e2, 2)}, success_policy::quorum);
  ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::put, "k", "v")});
  auto r = ask<result_batch>(c, atom::exec_v, op_batch{op(op_kind::get, "k"), op(op_kind::get, "nope")});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, op_status::ok);
  EXPECT_EQ(r[0].record.data, "v");
  ASSERT_EQ(r[0].replicas.size(), 1u);
  EXPECT_EQ(r[0].replicas[0].group, 1u);
  EXPECT_EQ(r[1].status, op_status::not_found);
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
