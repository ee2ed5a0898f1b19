#include "actors/shard.hpp"

#include "tests/actors/actor_fixture.hpp"
#include "tests/storage/fault_env.hpp"
#include "tests/storage/test_util.hpp"

namespace apsis {
namespace {

struct ShardTest : testing::ActorTest {
  std::shared_ptr<storage::Engine> engine = memory_engine();
  shard_actor shard_ =
      sys.spawn(shard, std::make_shared<ShardCore>(engine, std::make_shared<Hlc>(1)));
  uint64_t clock = 100;

  kv_op versioned(kv_op o) {
    o.version = {++clock, 1};
    return o;
  }
  op_result one(kv_op o) {
    auto r = ask<result_batch>(shard_, atom::apply_v, op_batch{versioned(std::move(o))});
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? op_result{} : r[0];
  }
};

// A write coordinated elsewhere, stamped ahead of this node's clock (the same millisecond,
// a higher counter), must not let the next local write be ordered before it.
TEST_F(ShardTest, AReplicatedVersionMovesTheNodesClockPastIt) {
  auto clock = std::make_shared<Hlc>(2);
  ShardCore core(memory_engine(), clock);
  kv_op replicated = op(op_kind::put, "k", "from another node");
  replicated.version = {(storage::now_ms() << 16) + 5000, 1};
  op_batch one{replicated};
  ASSERT_EQ(core.apply(one)[0].status, op_status::ok);
  op_batch local{op(op_kind::put, "k", "later, here")};
  result_batch r = core.apply(local);
  ASSERT_EQ(r[0].status, op_status::ok);
  EXPECT_LT(replicated.version, r[0].version);
}

TEST_F(ShardTest, IfAbsentWritesOnceAndIfPresentNeedsALiveRecord) {
  kv_op nx = op(op_kind::put, "k", "first");
  nx.cond = op_cond::if_absent;
  EXPECT_EQ(one(nx).status, op_status::ok);
  nx.data = "second";
  EXPECT_EQ(one(nx).status, op_status::condition_failed);
  kv_op xx = op(op_kind::put, "other", "x");
  xx.cond = op_cond::if_present;
  EXPECT_EQ(one(xx).status, op_status::condition_failed);
  op_result got = one(op(op_kind::get, "k"));
  ASSERT_EQ(got.status, op_status::ok);
  EXPECT_EQ(got.record.data, "first");
  EXPECT_EQ(one(op(op_kind::get, "other")).status, op_status::not_found);
}

TEST_F(ShardTest, CompareAndSwapSucceedsOnlyOnTheCurrentVersion) {
  op_result first = one(op(op_kind::put, "k", "v1"));
  kv_op cas = op(op_kind::put, "k", "v2");
  cas.cond = op_cond::if_version;
  cas.expected = {1, 1};  // not the stored version
  EXPECT_EQ(one(cas).status, op_status::condition_failed);
  cas.expected = first.version;
  EXPECT_EQ(one(cas).status, op_status::ok);
  EXPECT_EQ(one(cas).status, op_status::condition_failed);  // that version is gone now
  EXPECT_EQ(one(op(op_kind::get, "k")).record.data, "v2");
}

TEST_F(ShardTest, RemoveReportsWhetherALiveRecordWasThere) {
  one(op(op_kind::put, "k", "v"));
  op_result r = one(op(op_kind::remove, "k"));
  EXPECT_EQ(r.status, op_status::ok);
  EXPECT_TRUE(r.existed);
  r = one(op(op_kind::remove, "k"));
  EXPECT_FALSE(r.existed);
  EXPECT_EQ(one(op(op_kind::lookup, "k")).status, op_status::not_found);
}

TEST_F(ShardTest, ExpireChangesOnlyTheExpiryOfALiveRecord) {
  one(op(op_kind::put, "k", "payload"));
  kv_op e = op(op_kind::expire, "k");
  e.expiry_ms = storage::now_ms() + 60000;
  EXPECT_EQ(one(e).status, op_status::ok);
  op_result got = one(op(op_kind::get, "k"));
  EXPECT_EQ(got.record.data, "payload");
  EXPECT_EQ(got.record.expiry_ms, e.expiry_ms);
  EXPECT_EQ(one(op(op_kind::expire, "missing")).status, op_status::not_found);
  e.expiry_ms = storage::now_ms() - 1;  // in the past: the key is gone
  EXPECT_EQ(one(e).status, op_status::ok);
  EXPECT_EQ(one(op(op_kind::get, "k")).status, op_status::not_found);
}

TEST_F(ShardTest, WritesCarryingAnOlderFencingTokenAreRefused) {
  kv_op w = op(op_kind::put, "k", "by holder 5");
  w.fence = 5;
  EXPECT_EQ(one(w).status, op_status::ok);
  w.fence = 3;
  w.data = "by a holder whose lease ended";
  EXPECT_EQ(one(w).status, op_status::fenced);
  w.fence = 7;
  w.data = "by holder 7";
  EXPECT_EQ(one(w).status, op_status::ok);
  EXPECT_EQ(one(op(op_kind::get, "k")).record.data, "by holder 7");
}

TEST_F(ShardTest, LaterOperationsInABatchSeeEarlierOnes) {
  kv_op nx1 = versioned(op(op_kind::put, "k", "a"));
  nx1.cond = op_cond::if_absent;
  kv_op nx2 = versioned(op(op_kind::put, "k", "b"));
  nx2.cond = op_cond::if_absent;
  kv_op get = versioned(op(op_kind::get, "k"));
  auto r = ask<result_batch>(shard_, atom::apply_v, op_batch{nx1, nx2, get});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].status, op_status::ok);
  EXPECT_EQ(r[1].status, op_status::condition_failed);
  EXPECT_EQ(r[2].record.data, "a");
}

// A replica write older than what is stored is refused, and a read later in the same batch
// (a coordinator's outbox mixes clients' operations) sees what is stored, not the refused one
// (found by the partition simulation, with clocks that drift apart).
TEST_F(ShardTest, AnOlderReplicaWriteIsRefusedAndNotSeenByTheRestOfItsBatch) {
  kv_op newer = op(op_kind::put, "k", "newer");
  newer.version = {500, 2};
  ASSERT_EQ(ask<result_batch>(shard_, atom::apply_v, op_batch{newer})[0].status, op_status::ok);
  kv_op older = op(op_kind::put, "k", "older");
  older.version = {400, 3};
  kv_op gone = op(op_kind::remove, "k");
  gone.version = {450, 3};
  auto r = ask<result_batch>(shard_, atom::apply_v, op_batch{older, gone, op(op_kind::get, "k")});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].status, op_status::stale);
  EXPECT_EQ(r[1].status, op_status::stale);
  EXPECT_EQ(r[2].status, op_status::ok);
  EXPECT_EQ(r[2].record.data, "newer");
  EXPECT_EQ(r[2].version, newer.version);
}

// Under fsync `always`, a write is acknowledged only once durable: a failed fsync fails the
// batch's writes (not its reads); given an Unsynced, the wait is left to the caller.
TEST_F(ShardTest, AWriteIsAcknowledgedOnlyAfterItsFsync) {
  storage::testing::TempDir dir;
  storage::testing::FaultEnv env;
  storage::EngineOptions o;
  o.kind = "blob";
  o.dir = dir.sub("blob");
  o.env = &env;
  o.sync.mode = storage::SyncPolicy::Mode::always;
  o.log = [](storage::LogLevel, const std::string&) {};
  std::shared_ptr<storage::Engine> blob = storage::testing::open_or_die(o);
  ShardCore core(blob, std::make_shared<Hlc>(1));
  op_batch first{op(op_kind::put, "k", "v1")};
  ASSERT_EQ(core.apply(first)[0].status, op_status::ok);

  storage::Unsynced owed;
  op_batch deferred{op(op_kind::put, "k", "v2")};
  uint64_t syncs = blob->stats().syncs;
  ASSERT_EQ(core.apply(deferred, &owed)[0].status, op_status::ok);
  EXPECT_FALSE(owed.empty());
  EXPECT_EQ(blob->stats().syncs, syncs) << "the caller was to wait, not the shard";
  ASSERT_TRUE(owed.settle().is_ok());

  env.fail_sync = true;
  op_batch both{op(op_kind::put, "k", "v3"), op(op_kind::get, "k")};
  result_batch r = core.apply(both);
  EXPECT_EQ(r[0].status, op_status::io_error) << r[0].message;
  EXPECT_EQ(r[1].status, op_status::ok);
}

}  // namespace
}  // namespace apsis
