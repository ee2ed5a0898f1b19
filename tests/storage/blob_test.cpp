// Blob engine specifics: index snapshots, compaction, garbage at open, sticky fsync
// failure, and the RAM the index costs per key.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "storage/blob_engine.hpp"
#include "storage/record_codec.hpp"
#include "storage/unsynced.hpp"
#include "tests/storage/fault_env.hpp"
#include "tests/storage/test_util.hpp"

namespace apsis::storage {
namespace {

namespace fs = std::filesystem;
using testing::FaultEnv;
using testing::TempDir;

struct BlobTest : ::testing::Test {
  TempDir dir;
  std::vector<std::string> logs;
  EngineOptions options(Env* env = nullptr) {
    EngineOptions o;
    o.kind = "blob";
    o.dir = dir.sub("blob");
    o.env = env;
    o.sync.mode = SyncPolicy::Mode::never;
    o.blob_file_size = 64 << 10;
    o.log = [this](LogLevel, const std::string& m) { logs.push_back(m); };
    return o;
  }
  bool logged(const std::string& text) const {
    for (const auto& l : logs)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
  static void put_n(Engine& e, int from, int to, uint64_t stamp) {
    for (int i = from; i < to; ++i)
      ASSERT_TRUE(
          e.put(testing::make_record("k" + std::to_string(i), "v" + std::to_string(i), stamp))
              .is_ok());
  }
  /// Every file's bytes, to show that a refused open changed nothing.
  std::map<std::string, std::string> contents() {
    std::map<std::string, std::string> out;
    for (const auto& p : fs::recursive_directory_iterator(dir.path())) {
      if (!p.is_regular_file()) continue;
      std::ifstream in(p.path(), std::ios::binary);
      out[p.path().string()] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    return out;
  }
};

TEST_F(BlobTest, ReopenLoadsTheSnapshotAndReplaysOnlyWhatCameAfter) {
  {
    auto e = testing::open_or_die(options());
    put_n(*e, 0, 1000, 1);
  }  // clean close writes the snapshot
  logs.clear();
  FaultEnv env;
  {
    auto e = testing::open_or_die(options(&env));
    EXPECT_TRUE(logged("loaded 1000 entries"));
    EXPECT_FALSE(logged("replayed"));
    put_n(*e, 1000, 1010, 1);
    env.budget = 0;  // crash: the close below writes no snapshot
  }
  logs.clear();
  auto e = testing::open_or_die(options());
  EXPECT_TRUE(logged("loaded 1000 entries"));
  EXPECT_TRUE(logged("replayed 10 records"));
  EXPECT_EQ(e->stats().keys, 1010u);
  Record got;
  ASSERT_TRUE(e->get(make_id("default", "k1005"), &got).is_ok());
  EXPECT_EQ(got.data, "v1005");
}

TEST_F(BlobTest, ACorruptSnapshotIsIgnoredAndEverythingReplayed) {
  {
    auto e = testing::open_or_die(options());
    put_n(*e, 0, 300, 1);
  }
  {
    std::fstream f(dir.sub("blob/index.snap"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  logs.clear();
  auto e = testing::open_or_die(options());
  EXPECT_TRUE(logged("index.snap: ignored"));
  EXPECT_TRUE(logged("replayed 300 records"));
  EXPECT_EQ(e->stats().keys, 300u);
}

TEST_F(BlobTest, CompactionReclaimsDeadFilesAndKeepsEveryLiveRecord) {
  auto e = testing::open_or_die(options());
  uint64_t written = 0;
  for (uint64_t round = 1; round <= 20; ++round) {
    put_n(*e, 0, 200, round);
    written += 200 * (codec::header_size + 8);  // ~ key "kNNN" + value "vNNN"
  }
  // The background thread may already have compacted some files; compact() does the rest.
  ASSERT_TRUE(e->compact().is_ok());
  EngineStats after = e->stats();
  EXPECT_GT(after.compactions, 0u);
  // 20 versions of each record were written; about one is left (plus the active file).
  EXPECT_LT(after.disk_bytes, written / 4) << "written " << written;
  e.reset();
  e = testing::open_or_die(options());
  for (int i = 0; i < 200; ++i) {
    Record got;
    ASSERT_TRUE(e->get(make_id("default", "k" + std::to_string(i)), &got).is_ok());
    EXPECT_EQ(got.version.stamp, 20u);
  }
}

TEST_F(BlobTest, GarbageDataFileIsRefusedWithItsNameAndLeftUntouched) {
  { auto e = testing::open_or_die(options()); }
  {
    std::ofstream f(dir.sub("blob/data-00000001.blob"), std::ios::binary | std::ios::trunc);
    f << "this is not an apsis file, but it is long enough to have a header";
  }
  auto before = contents();
  std::unique_ptr<Engine> e;
  Status s = open_engine(options(), &e);
  EXPECT_TRUE(s.is_corruption()) << s.to_string();
  EXPECT_NE(s.message().find("data-00000001.blob"), std::string::npos) << s.message();
  EXPECT_EQ(contents(), before);
}

TEST_F(BlobTest, ADirectoryOfSomethingElseIsRefusedAndLeftUntouched) {
  fs::create_directories(dir.sub("blob"));
  { std::ofstream(dir.sub("blob/notes.txt")) << "mine"; }
  auto before = contents();
  std::unique_ptr<Engine> e;
  Status s = open_engine(options(), &e);
  EXPECT_TRUE(s.is_invalid_argument()) << s.to_string();
  EXPECT_NE(s.message().find("notes.txt"), std::string::npos);
  EXPECT_EQ(contents(), before);
}

TEST_F(BlobTest, AnEmptyNewestFileFromACrashedRotationIsRemoved) {
  {
    auto e = testing::open_or_die(options());
    put_n(*e, 0, 10, 1);
  }
  { std::ofstream(dir.sub("blob/data-00000002.blob"), std::ios::binary); }
  auto e = testing::open_or_die(options());
  EXPECT_TRUE(logged("data-00000002.blob: removed"));
  EXPECT_EQ(e->stats().keys, 10u);
}

TEST_F(BlobTest, AFailedFsyncFailsThatWriteAndEveryLaterOne) {
  FaultEnv env;
  EngineOptions o = options(&env);
  o.sync.mode = SyncPolicy::Mode::always;
  auto e = testing::open_or_die(o);
  ASSERT_TRUE(e->put(testing::make_record("a", "1", 1)).is_ok());
  env.fail_sync = true;
  EXPECT_TRUE(e->put(testing::make_record("b", "2", 1)).is_io_error());
  env.fail_sync = false;  // the kernel may have dropped the pages: no retry can be trusted
  EXPECT_TRUE(e->put(testing::make_record("c", "3", 1)).is_io_error());
}

// A write whose fsync was left to its caller is not durable when that fsync fails: settle()
// and when_settled() both say so, and later writes fail as with put().
TEST_F(BlobTest, AFailedOwedFsyncIsReportedToItsSettler) {
  FaultEnv env;
  EngineOptions o = options(&env);
  o.sync.mode = SyncPolicy::Mode::always;
  std::shared_ptr<Engine> e = testing::open_or_die(o);
  Record r = testing::make_record("a", "1", 1);
  Status st;
  uint64_t ticket = 0;
  e->put_batch_unsynced(&r, 1, &st, &ticket);
  ASSERT_TRUE(st.is_ok());
  env.fail_sync = true;
  Unsynced owed;
  owed.owe(e, ticket);
  EXPECT_TRUE(owed.settle().is_io_error());
  owed.owe(e, ticket);
  Status async;
  owed.when_settled([&](Status s) { async = std::move(s); });  // sticky: answered at once
  EXPECT_TRUE(async.is_io_error()) << async.to_string();
  env.fail_sync = false;
  EXPECT_TRUE(e->put(testing::make_record("b", "2", 1)).is_io_error());
}

TEST_F(BlobTest, TheIndexCostsFewerThan64BytesPerKey) {
  auto e = testing::open_or_die(options());
  for (int i = 0; i < 200000; ++i)
    ASSERT_TRUE(e->put(testing::make_record("key" + std::to_string(i), "", 1)).is_ok());
  EngineStats s = e->stats();
  ASSERT_EQ(s.keys, 200000u);
  // 16-byte slots at a load between 3/8 and 3/4: 21 to 43 bytes per key.
  EXPECT_LE(double(s.index_bytes) / double(s.keys), 43.0);
}

// smallest() against a sort of every slot: random tags, and crowded ones (long probe runs,
// runs that wrap past the table's end), from many starting points.
TEST(BlobIndexTest, SmallestFindsTheSmallestTagsFromAnyPoint) {
  std::mt19937_64 rng(7);
  for (int crowd : {0, 1}) {
    BlobIndex index(16);
    std::vector<uint64_t> tags;
    for (int i = 0; i < 3000; ++i) {
      uint64_t t = rng();
      if (crowd) t = (t & 0xff) | (i % 2 ? ~0ull << 60 : 0ull);  // two crowds: top and bottom
      tags.push_back(t);
      index.insert(t, BlobIndex::make_loc(1, uint64_t(i) + 1));
    }
    std::sort(tags.begin(), tags.end());
    for (int q = 0; q < 200; ++q) {
      uint64_t from = q == 0 ? 0 : tags[rng() % tags.size()] - (rng() % 2);
      size_t max = 1 + rng() % 40;
      auto got = index.smallest(from, UINT64_MAX, max);
      auto first = std::lower_bound(tags.begin(), tags.end(), from);
      std::vector<uint64_t> want(first, first + std::min<size_t>(max + 1, tags.end() - first));
      std::vector<uint64_t> got_tags;
      for (const auto& s : got) got_tags.push_back(s.tag);
      ASSERT_EQ(got_tags, want) << "from " << from << " max " << max << " crowd " << crowd;
    }
  }
}

// A snapshot from before top-bit homes: its slots are placed again, and every key is found.
TEST(BlobIndexTest, AdoptsSlotsPlacedTheOldWay) {
  std::vector<BlobIndex::Slot> old(64, BlobIndex::Slot{0, 0});
  for (uint64_t i = 1; i <= 40; ++i) {
    uint64_t tag = i * 0x9e3779b97f4a7c15ull;
    size_t at = tag & 63;
    while (old[at].loc) at = (at + 1) & 63;
    old[at] = {tag, BlobIndex::make_loc(1, i)};
  }
  BlobIndex index;
  ASSERT_TRUE(index.adopt(old, false));
  EXPECT_EQ(index.size(), 40u);
  for (uint64_t i = 1; i <= 40; ++i) {
    uint64_t tag = i * 0x9e3779b97f4a7c15ull;
    EXPECT_EQ(index.first_with_tag(tag), BlobIndex::make_loc(1, i));
  }
}

}  // namespace
}  // namespace apsis::storage
