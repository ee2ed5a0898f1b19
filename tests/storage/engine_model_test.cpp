// Every engine through one suite: a randomized model test against an in-memory map (put,
// overwrite, stale put, replay, remove, reopen, compact, get, lookup, iterate), bad
// arguments, expiry, and concurrent writers beside compaction.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <thread>

#include "storage/engine.hpp"
#include "storage/unsynced.hpp"
#include "tests/storage/test_util.hpp"

namespace apsis::storage {
namespace {

using testing::TempDir;

class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  EngineOptions options() {
    EngineOptions o;
    o.kind = GetParam();
    o.dir = dir_.sub("engine");
    o.sync.mode = SyncPolicy::Mode::never;
    o.blob_file_size = 16 << 10;  // small files: rotation and compaction happen often
    o.compact_dead_fraction = 0.3;
    o.limits.max_value_size = 64 << 10;
    o.log = [](LogLevel, const std::string&) {};
    return o;
  }
  bool persistent() const { return GetParam() != "memory"; }
  void reopen(std::unique_ptr<Engine>& e) {
    if (!persistent()) return;
    e.reset();
    e = testing::open_or_die(options());
    ASSERT_TRUE(e);
  }

  TempDir dir_;
};

std::vector<uint64_t> seeds() {
  if (const char* s = std::getenv("APSIS_SEED")) return {std::strtoull(s, nullptr, 10)};
  return {1, 2, 3};
}

TEST_P(EngineTest, MatchesAModelUnderRandomOperations) {
  for (uint64_t seed : seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed) +
                 " (rerun with APSIS_SEED=" + std::to_string(seed) + ")");
    std::filesystem::remove_all(options().dir);  // each seed starts from an empty engine
    auto e = testing::open_or_die(options());
    ASSERT_TRUE(e);
    std::mt19937_64 rng(seed);
    std::map<Id, Record> model;  // the latest accepted record per id, tombstones included
    std::vector<std::string> keys;
    for (int i = 0; i < 150; ++i) keys.push_back("key-" + std::to_string(i));
    uint64_t clock = 1000;
    auto pick = [&] { return keys[rng() % keys.size()]; };
    auto value = [&] {
      size_t n = rng() % 10 == 0 ? 1000 + rng() % 3000 : rng() % 300;
      std::string v(n, '\0');
      for (auto& c : v) c = char(rng());
      return v;
    };
    const int ops = 3000;
    for (int op = 0; op < ops; ++op) {
      int kind = int(rng() % 100);
      std::string key = pick();
      Id id = make_id("default", key);
      auto it = model.find(id);
      if (kind < 45) {  // put or overwrite
        Record r = testing::make_record(key, value(), ++clock,
                                        rng() % 3 ? "" : R"({"n":)" + std::to_string(op) + "}");
        r.user_flags = uint32_t(rng());
        ASSERT_TRUE(e->put(r).is_ok()) << "op " << op;
        model[id] = r;
      } else if (kind < 52 && it != model.end()) {  // older version: refused
        Record r = testing::make_record(key, "stale", it->second.version.stamp - 1);
        ASSERT_TRUE(e->put(r).is_stale()) << "op " << op;
      } else if (kind < 55 && it != model.end()) {  // replay of the same version: harmless
        ASSERT_TRUE(e->put(it->second).is_ok()) << "op " << op;
      } else if (kind < 65) {  // remove
        Version v{++clock, 1};
        ASSERT_TRUE(e->remove(id, v, key).is_ok()) << "op " << op;
        model[id] = Record::make_tombstone(id, v, key);
      } else if (kind < 88) {  // get + lookup, after a prefetch hint (which changes nothing)
        Id absent = make_id("default", "never-written");
        e->prefetch({&id, &absent, &id}, true);
        e->prefetch({&id, &absent}, false);
        Record got;
        Status s = e->get(id, &got);
        if (it == model.end() || it->second.tombstone) {
          ASSERT_TRUE(s.is_not_found()) << "op " << op << ": " << s.to_string();
        } else {
          ASSERT_TRUE(s.is_ok()) << "op " << op << ": " << s.to_string();
          ASSERT_EQ(got.data, it->second.data);
          ASSERT_EQ(got.json, it->second.json);
          ASSERT_EQ(got.key, key);
          ASSERT_EQ(got.version, it->second.version);
          ASSERT_EQ(got.user_flags, it->second.user_flags);
        }
        RecordMeta meta;
        s = e->lookup(id, &meta);
        if (it == model.end()) {
          ASSERT_TRUE(s.is_not_found());
        } else {
          ASSERT_TRUE(s.is_ok()) << s.to_string();
          ASSERT_EQ(meta.version, it->second.version);
          ASSERT_EQ(meta.tombstone, it->second.tombstone);
          ASSERT_EQ(meta.data_size, it->second.data.size());
        }
      } else if (kind < 92) {
        reopen(e);
        ASSERT_TRUE(e);
      } else if (kind < 96) {
        ASSERT_TRUE(e->compact().is_ok());
      } else {  // iterate a random id range and version floor against the model
        IterateOptions io;
        io.begin = make_id("default", pick());
        io.end = make_id("default", pick());
        if (io.end < io.begin) std::swap(io.begin, io.end);
        io.min_version = {clock - rng() % 500, 0};
        io.include_tombstones = rng() % 2;
        std::map<Id, Version> seen;
        ASSERT_TRUE(e->iterate(io, [&](const Record& r) {
                       seen[r.id] = r.version;
                       return true;
                     }).is_ok());
        std::map<Id, Version> expect;
        for (auto& [mid, rec] : model) {
          if (mid < io.begin || io.end < mid || rec.version < io.min_version) continue;
          if (rec.tombstone && !io.include_tombstones) continue;
          expect[mid] = rec.version;
        }
        ASSERT_EQ(seen, expect) << "op " << op;
      }
    }
    // Finally, after one more reopen, everything at once.
    reopen(e);
    size_t live = 0;
    for (auto& [mid, rec] : model) {
      Record got;
      Status s = e->get(mid, &got);
      if (rec.tombstone) {
        EXPECT_TRUE(s.is_not_found());
      } else {
        ++live;
        ASSERT_TRUE(s.is_ok()) << s.to_string();
        EXPECT_EQ(got.data, rec.data);
      }
    }
    if (GetParam() != "sorted") {  // sorted's key count is RocksDB's estimate
      EXPECT_EQ(e->stats().keys, model.size());
    }
    EXPECT_GT(live, 0u);
  }
}

TEST_P(EngineTest, RefusesBadArgumentsAndStoresNothing) {
  auto e = testing::open_or_die(options());
  Record big_key = testing::make_record(std::string(4097, 'k'), "v", 1);
  Record big_value = testing::make_record("k", std::string((64 << 10) + 1, 'v'), 1);
  Record bad_json = testing::make_record("k", "v", 1, "{\"unterminated\": ");
  for (const Record* r : {&big_key, &big_value, &bad_json}) {
    Status s = e->put(*r);
    EXPECT_TRUE(s.is_invalid_argument()) << s.to_string();
    Record got;
    EXPECT_TRUE(e->get(r->id, &got).is_not_found());
  }
  EXPECT_EQ(e->stats().keys, 0u);
  const std::string json = R"({"fits": true})";
  Record ok = testing::make_record("k", std::string((64 << 10) - json.size(), 'v'), 1, json);
  EXPECT_TRUE(e->put(ok).is_ok());
}

TEST_P(EngineTest, PutBatchGivesEachRecordItsOwnResult) {
  auto e = testing::open_or_die(options());
  ASSERT_TRUE(e->put(testing::make_record("old", "v2", 20)).is_ok());
  std::vector<Record> batch{
      testing::make_record("a", "1", 1),
      testing::make_record("old", "stale", 10),      // older than stored
      testing::make_record("b", "2", 1, "{broken"),  // invalid json
      testing::make_record("a", "1 again", 2),       // same batch, newer
  };
  std::vector<Status> results(batch.size());
  e->put_batch(batch.data(), batch.size(), results.data());
  EXPECT_TRUE(results[0].is_ok()) << results[0].to_string();
  EXPECT_TRUE(results[1].is_stale()) << results[1].to_string();
  EXPECT_TRUE(results[2].is_invalid_argument()) << results[2].to_string();
  EXPECT_TRUE(results[3].is_ok()) << results[3].to_string();
  Record got;
  ASSERT_TRUE(e->get(make_id("default", "a"), &got).is_ok());
  EXPECT_EQ(got.data, "1 again");
  ASSERT_TRUE(e->get(make_id("default", "old"), &got).is_ok());
  EXPECT_EQ(got.data, "v2");
  EXPECT_TRUE(e->get(make_id("default", "b"), &got).is_not_found());
}

TEST_P(EngineTest, ExpiredRecordsReadAsAbsentButLookupShowsThem) {
  auto e = testing::open_or_die(options());
  Record r = testing::make_record("ttl", "v", 5);
  r.expiry_ms = now_ms() - 1;
  ASSERT_TRUE(e->put(r).is_ok());
  Record got;
  EXPECT_TRUE(e->get(r.id, &got).is_not_found());
  RecordMeta meta;
  ASSERT_TRUE(e->lookup(r.id, &meta).is_ok());
  EXPECT_TRUE(meta.expired(now_ms()));
  r.expiry_ms = now_ms() + 60000;
  r.version.stamp = 6;
  ASSERT_TRUE(e->put(r).is_ok());
  EXPECT_TRUE(e->get(r.id, &got).is_ok());
}

TEST_P(EngineTest, EraseForgetsOnlyTheNamedVersionAndStaysForgotten) {
  auto e = testing::open_or_die(options());
  Record live = testing::make_record("live", "v", 5);
  Record newer = testing::make_record("newer", "v", 9);
  Record tomb = Record::make_tombstone(make_id("default", "gone"), {7, 1}, "gone");
  for (const Record* r : {&live, &newer, &tomb}) ASSERT_TRUE(e->put(*r).is_ok());
  for (int i = 0; i < 50; ++i)  // neighbours that must stay
    ASSERT_TRUE(e->put(testing::make_record("n" + std::to_string(i), "x", 3)).is_ok());
  size_t erased = 0;
  // "newer" is named with an older version than it holds: a write that came after the
  // decision to erase, so it stays.
  ASSERT_TRUE(e->erase({{live.id, live.version},
                        {newer.id, {8, 1}},
                        {tomb.id, tomb.version},
                        {make_id("default", "absent"), {1, 1}}},
                       &erased)
                  .is_ok());
  EXPECT_EQ(erased, 2u);
  for (int round = 0; round < 2; ++round) {
    RecordMeta meta;
    EXPECT_TRUE(e->lookup(live.id, &meta).is_not_found()) << "round " << round;
    EXPECT_TRUE(e->lookup(tomb.id, &meta).is_not_found()) << "round " << round;
    ASSERT_TRUE(e->lookup(newer.id, &meta).is_ok());
    EXPECT_EQ(meta.version, newer.version);
    size_t seen = 0;
    ASSERT_TRUE(e->iterate({}, [&](const Record& r) {
                   EXPECT_NE(r.id, live.id);
                   EXPECT_NE(r.id, tomb.id);
                   return ++seen, true;
                 }).is_ok());
    EXPECT_GE(seen, 51u);
    if (GetParam() != "sorted") {  // RocksDB's key count is an estimate
      EXPECT_EQ(e->stats().keys, 51u);
    }
    reopen(e);
  }
  // An erased id can be written again from scratch, even with an older version.
  ASSERT_TRUE(e->put(testing::make_record("live", "again", 2)).is_ok());
  Record got;
  ASSERT_TRUE(e->get(live.id, &got).is_ok());
  EXPECT_EQ(got.data, "again");
}

// A scrub walk visits every record (tombstones too) once a round, in steps of any size.
TEST_P(EngineTest, ScrubWalksEveryRecordAndFindsNothingWrongInHealthyData) {
  auto engine = testing::open_or_die(options());
  for (int i = 0; i < 300; ++i)
    ASSERT_TRUE(engine->put(testing::make_record("s" + std::to_string(i), "v", 10)).is_ok());
  ASSERT_TRUE(engine->remove(make_id("default", "s7"), {20, 1}, "s7").is_ok());
  for (size_t step : {size_t(1), size_t(7), size_t(1000)}) {
    ScrubStep found;
    uint64_t cursor = 0;
    int steps = 0;
    do {
      ASSERT_TRUE(engine->scrub(&cursor, step, &found).is_ok());
    } while (cursor != 0 && ++steps < 100000);
    EXPECT_EQ(cursor, 0u);
    EXPECT_GE(found.checked, 300u) << "steps of " << step;
    EXPECT_LE(found.checked, 300u + 300u / 10) << "steps of " << step;  // a few twice at most
    EXPECT_TRUE(found.corrupt.empty());
  }
}

/// Pages through [begin, end] with pages of `max`, collecting the ids in the order given.
std::vector<Id> page_all(Engine& e, const Id& begin, const Id& end, size_t max) {
  std::vector<Id> out;
  Page page;
  page.next = begin;
  int pages = 0;
  do {
    EXPECT_TRUE(e.page(page.next, end, max, &page).is_ok());
    EXPECT_LE(page.records.size(), max);
    for (const auto& m : page.records) out.push_back(m.id);
  } while (page.more && ++pages < 100000);
  EXPECT_FALSE(page.more) << "a listing that never ends";
  return out;
}

// A listing pages through a range in id order, each record (tombstones too) exactly once,
// whatever the page size; a sub-range gives exactly the ids inside it.
TEST_P(EngineTest, PagesVisitEveryRecordOnceInIdOrder) {
  auto e = testing::open_or_die(options());
  std::vector<Id> all;
  std::map<Id, std::string> key_of;
  for (int i = 0; i < 700; ++i) {
    Record r = testing::make_record("p" + std::to_string(i), "v", 10);
    ASSERT_TRUE(e->put(r).is_ok());
    all.push_back(r.id);
    key_of[r.id] = r.key;
  }
  ASSERT_TRUE(e->remove(make_id("default", "p3"), {20, 1}, "p3").is_ok());
  std::sort(all.begin(), all.end());
  for (size_t max : {size_t(1), size_t(7), size_t(100), size_t(5000)})
    EXPECT_EQ(page_all(*e, Id::min(), Id::max(), max), all) << "pages of " << max;
  const Id lo = all[100], hi = all[400];
  std::vector<Id> inside(all.begin() + 100, all.begin() + 401);
  EXPECT_EQ(page_all(*e, lo, hi, 13), inside);
  Page page;
  ASSERT_TRUE(e->page(lo, lo, 10, &page).is_ok());
  ASSERT_EQ(page.records.size(), 1u);
  EXPECT_EQ(page.records[0].key, key_of[lo]);
  EXPECT_EQ(page.records[0].data_size, 1u);
  EXPECT_FALSE(page.more);
  reopen(e);
  EXPECT_EQ(page_all(*e, Id::min(), Id::max(), 50), all) << "after reopen";
}

// Records stored throughout a listing appear in it while other keys are written, removed
// and compacted away beside it.
TEST_P(EngineTest, PagesSeeEveryRecordStoredThroughoutBesideWrites) {
  auto e = testing::open_or_die(options());
  std::vector<Id> stable;
  for (int i = 0; i < 400; ++i) {
    Record r = testing::make_record("s" + std::to_string(i), "v", 10);
    ASSERT_TRUE(e->put(r).is_ok());
    stable.push_back(r.id);
  }
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 100000 && !done; ++i) {
      std::string key = "churn" + std::to_string(i % 300);
      (void)e->put(testing::make_record(key, std::string(200, 'x'), uint64_t(i + 1)));
      if (i % 3 == 0) (void)e->remove(make_id("default", key), {uint64_t(i + 2), 0}, key);
      if (i % 500 == 0) (void)e->compact();
    }
  });
  std::vector<Id> seen;
  for (int round = 0; round < 5; ++round) seen = page_all(*e, Id::min(), Id::max(), 9);
  done = true;
  writer.join();
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "an id listed twice";
  for (const Id& id : stable)
    EXPECT_TRUE(std::binary_search(seen.begin(), seen.end(), id)) << id.hex();
}

TEST_P(EngineTest, ConcurrentWritersBesideCompactionLoseNothing) {
  auto e = testing::open_or_die(options());
  constexpr int writers = 4, per_writer = 1500, keys_per_writer = 50;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread compactor([&] {
    for (int i = 0; i < 10000 && !done; ++i) {
      if (!e->compact()) failures++;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; ++i) {
        std::string key = "w" + std::to_string(w) + "-" + std::to_string(i % keys_per_writer);
        if (!e->put(testing::make_record(key, "value-" + std::to_string(i), uint64_t(i + 1))))
          failures++;
        Record got;
        if (!e->get(make_id("default", key), &got) || got.version.stamp < uint64_t(i + 1))
          failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  compactor.join();
  EXPECT_EQ(failures, 0);
  if (GetParam() == "blob") {
    EXPECT_GT(e->stats().compactions, 0u);
  }
  if (persistent()) {
    e.reset();
    e = testing::open_or_die(options());
  }
  for (int w = 0; w < writers; ++w) {
    for (int k = 0; k < keys_per_writer; ++k) {
      std::string key = "w" + std::to_string(w) + "-" + std::to_string(k);
      int last = per_writer - keys_per_writer + k;
      Record got;
      ASSERT_TRUE(e->get(make_id("default", key), &got).is_ok()) << key;
      EXPECT_EQ(got.data, "value-" + std::to_string(last)) << key;
    }
  }
}

// Engines with a directory.
class DiskEngineTest : public EngineTest {};
// Engines whose `always` policy runs through SyncDriver's group commit.
class GroupCommitTest : public EngineTest {};

TEST_P(GroupCommitTest, ConcurrentAlwaysWritersShareFsyncs) {
  EngineOptions o = options();
  o.sync.mode = SyncPolicy::Mode::always;
  auto e = testing::open_or_die(o);
  constexpr int threads_n = 16, each = 40;
  uint64_t before = e->stats().syncs;
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < each; ++i)
        ASSERT_TRUE(
            e->put(testing::make_record("g" + std::to_string(t) + "-" + std::to_string(i), "v", 1))
                .is_ok());
    });
  for (auto& t : threads) t.join();
  uint64_t syncs = e->stats().syncs - before;
  EXPECT_GT(syncs, 0u);
  EXPECT_LT(syncs, uint64_t(threads_n * each)) << "every write paid its own fsync";
  for (int t = 0; t < threads_n; ++t) {
    Record got;
    EXPECT_TRUE(e->get(make_id("default", "g" + std::to_string(t) + "-0"), &got).is_ok());
  }
}

// A frontend's round: batches written without waiting, then one fsync for all of them, by
// settle() or by when_settled() (the flusher thread); stats count the writes it covered.
TEST_P(GroupCommitTest, UnsyncedBatchesShareTheFsyncTheirCallerSettles) {
  EngineOptions o = options();
  o.sync.mode = SyncPolicy::Mode::always;
  auto e = testing::open_or_die(o);
  auto shared = std::shared_ptr<Engine>(std::move(e));
  EngineStats before = shared->stats();
  Unsynced owed;
  uint64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    Record r = testing::make_record("u" + std::to_string(i), "v", 1);
    Status st;
    uint64_t ticket = 0;
    shared->put_batch_unsynced(&r, 1, &st, &ticket);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_GT(ticket, last);
    last = ticket;
    owed.owe(shared, ticket);
  }
  EXPECT_EQ(shared->stats().syncs, before.syncs) << "a write waited for its own fsync";
  ASSERT_TRUE(owed.settle().is_ok());
  EXPECT_TRUE(owed.empty());
  EngineStats after = shared->stats();
  EXPECT_EQ(after.syncs, before.syncs + 1);
  EXPECT_EQ(after.synced_writes, before.synced_writes + 10);

  Record r = testing::make_record("async", "v", 1);
  Status st;
  uint64_t ticket = 0;
  shared->put_batch_unsynced(&r, 1, &st, &ticket);
  owed.owe(shared, ticket);
  std::promise<Status> settled;
  owed.when_settled([&](Status s) { settled.set_value(std::move(s)); });
  auto f = settled.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(f.get().is_ok());
  EXPECT_EQ(shared->stats().syncs, before.syncs + 2);
  EXPECT_EQ(shared->stats().synced_writes, before.synced_writes + 11);
}

// Under another policy there is nothing to wait for: nothing is owed.
TEST_P(GroupCommitTest, UnsyncedWritesOweNothingUnlessThePolicyIsAlways) {
  EngineOptions o = options();
  o.sync.mode = SyncPolicy::Mode::interval;
  auto e = testing::open_or_die(o);
  Record r = testing::make_record("k", "v", 1);
  Status st;
  uint64_t ticket = 7;
  e->put_batch_unsynced(&r, 1, &st, &ticket);
  EXPECT_TRUE(st.is_ok());
  EXPECT_EQ(ticket, 0u);
}

TEST_P(DiskEngineTest, IntervalPolicySyncsInTheBackground) {
  EngineOptions o = options();
  o.sync.mode = SyncPolicy::Mode::interval;
  o.sync.interval_ms = 20;
  auto e = testing::open_or_die(o);
  uint64_t before = e->stats().syncs;
  ASSERT_TRUE(e->put(testing::make_record("k", "v", 1)).is_ok());
  // Bounded wait: 250 polls of 20 ms, far more than one interval.
  for (int i = 0; i < 250 && e->stats().syncs == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(e->stats().syncs, before);
}

TEST_P(DiskEngineTest, ASecondOpenOfTheSameDirectoryIsRefused) {
  auto e = testing::open_or_die(options());
  std::unique_ptr<Engine> second;
  Status s = open_engine(options(), &second);
  EXPECT_EQ(s.code(), Status::Code::busy) << s.to_string();
}

TEST_P(DiskEngineTest, AnotherKindsDirectoryIsRefusedAndLeftAlone) {
  { auto e = testing::open_or_die(options()); }
  EngineOptions other = options();
  other.kind = GetParam() == "blob" ? "block" : "blob";
  std::unique_ptr<Engine> e;
  Status s = open_engine(other, &e);
  EXPECT_TRUE(s.is_invalid_argument()) << s.to_string();
  EXPECT_NE(s.message().find("not an apsis " + other.kind), std::string::npos) << s.message();
  EXPECT_TRUE(open_engine(options(), &e).is_ok());
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values("blob", "block", "fs", "sorted", "memory"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Engines, DiskEngineTest,
                         ::testing::Values("blob", "block", "fs", "sorted"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Engines, GroupCommitTest, ::testing::Values("blob", "block"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace apsis::storage
