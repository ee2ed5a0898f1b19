// Crash tests: the last write cut at every byte offset, and bits flipped at random, then
// reopen. Acknowledged writes must survive; nothing wrong may ever be served.
// (sorted runs on RocksDB's own file layer and WAL recovery, outside our Env.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "storage/engine.hpp"
#include "tests/storage/fault_env.hpp"
#include "tests/storage/test_util.hpp"

namespace apsis::storage {
namespace {

namespace fs = std::filesystem;
using testing::FaultEnv;
using testing::TempDir;

struct Logs {
  std::vector<std::string> lines;
  LogFn fn() {
    return [this](LogLevel level, const std::string& m) {
      if (level >= LogLevel::warn) lines.push_back(m);
    };
  }
  bool mention(const std::string& word) const {
    for (const auto& l : lines)
      if (l.find(word) != std::string::npos) return true;
    return false;
  }
};

class CrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  EngineOptions options(const std::string& dir, Env* env, LogFn log) {
    EngineOptions o;
    o.kind = GetParam();
    o.dir = dir;
    o.env = env;
    o.sync.mode = SyncPolicy::Mode::always;
    o.blob_file_size = 64 << 10;
    o.log = std::move(log);
    return o;
  }
};

// The acknowledged state before the cut write: 30 keys, some overwritten, one removed.
std::map<std::string, std::string> write_base(Engine& e) {
  std::map<std::string, std::string> acked;
  for (int i = 0; i < 40; ++i) {
    std::string key = "key-" + std::to_string(i % 30);
    std::string value = "value-" + std::to_string(i) + std::string(i * 7, 'x');
    EXPECT_TRUE(e.put(testing::make_record(key, value, 100 + i)).is_ok());
    acked[key] = value;
  }
  EXPECT_TRUE(e.remove(make_id("default", "key-3"), {500, 1}, "key-3").is_ok());
  acked.erase("key-3");
  return acked;
}

TEST_P(CrashTest, LastWriteCutAtEveryByteOffsetLosesNothingAcknowledged) {
  const std::string target = "key-7";
  const std::string fresh_value = std::string(300, 'N');  // spans several blocks
  // Measure how many bytes the final put writes.
  uint64_t cost = 0;
  {
    TempDir dir;
    FaultEnv env;
    Logs logs;
    auto e = testing::open_or_die(options(dir.sub("e"), &env, logs.fn()));
    write_base(*e);
    uint64_t before = env.written;
    ASSERT_TRUE(e->put(testing::make_record(target, fresh_value, 1000)).is_ok());
    cost = env.written - before;
  }
  ASSERT_GT(cost, 0u);
  int torn_logged = 0;
  for (uint64_t cut = 0; cut <= cost; ++cut) {
    SCOPED_TRACE("cut after " + std::to_string(cut) + " of " + std::to_string(cost) + " bytes");
    TempDir dir;
    FaultEnv env;
    Logs logs;
    std::map<std::string, std::string> acked;
    {
      auto e = testing::open_or_die(options(dir.sub("e"), &env, logs.fn()));
      acked = write_base(*e);
      env.budget = cut;
      Status s = e->put(testing::make_record(target, fresh_value, 1000));
      if (cut < cost) {
        ASSERT_FALSE(s.is_ok());
        // A failed engine refuses further writes rather than acknowledging into a hole.
        EXPECT_FALSE(e->put(testing::make_record("after", "x", 1)).is_ok());
      } else {
        ASSERT_TRUE(s.is_ok()) << s.to_string();
        acked[target] = fresh_value;
      }
    }  // the "crashed" engine goes away without a clean close
    Logs reopen_logs;
    auto e = testing::open_or_die(options(dir.sub("e"), Env::posix(), reopen_logs.fn()));
    ASSERT_TRUE(e);
    for (const auto& [key, value] : acked) {
      Record got;
      Status s = e->get(make_id("default", key), &got);
      if (key == target && cut < cost) {
        // Unacknowledged: the old value or the new one, whole, and nothing else.
        ASSERT_TRUE(s.is_ok()) << s.to_string();
        EXPECT_TRUE(got.data == value || got.data == fresh_value);
        continue;
      }
      ASSERT_TRUE(s.is_ok()) << key << ": " << s.to_string();
      EXPECT_EQ(got.data, value) << key;
    }
    Record got;
    EXPECT_TRUE(e->get(make_id("default", "key-3"), &got).is_not_found());
    torn_logged += reopen_logs.mention("torn") || reopen_logs.mention("unfinished");
    // And the reopened engine takes writes again.
    ASSERT_TRUE(e->put(testing::make_record("after", "x", 2000)).is_ok());
  }
  // A cut inside the record leaves torn bytes, which open must report.
  EXPECT_GT(torn_logged, 0);
}

std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& p : fs::recursive_directory_iterator(dir))
    if (p.is_regular_file() && p.path().filename() != "LOCK") out.push_back(p.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_P(CrashTest, FlippedBitsAreNeverServedAsData) {
  TempDir pristine;
  std::map<std::string, std::string> acked;
  {
    auto e = testing::open_or_die(options(pristine.sub("e"), Env::posix(), {}));
    acked = write_base(*e);
  }
  std::mt19937_64 rng(42);
  int opened = 0, readable = 0;
  size_t scrub_found = 0;
  const int trials = 150;
  for (int t = 0; t < trials; ++t) {
    TempDir dir;
    fs::copy(pristine.sub("e"), dir.sub("e"), fs::copy_options::recursive);
    auto files = files_under(dir.sub("e"));
    std::string victim = files[rng() % files.size()];
    uint64_t size = fs::file_size(victim);
    if (size == 0) continue;
    uint64_t bit = rng() % (size * 8);
    SCOPED_TRACE("trial " + std::to_string(t) + ": bit " + std::to_string(bit) + " of " + victim);
    {
      std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(std::streamoff(bit / 8));
      char c = 0;
      f.read(&c, 1);
      c ^= char(1 << (bit % 8));
      f.seekp(std::streamoff(bit / 8));
      f.write(&c, 1);
    }
    std::unique_ptr<Engine> e;
    Status s =
        open_engine(options(dir.sub("e"), Env::posix(), [](LogLevel, const std::string&) {}), &e);
    if (!s) {  // refusing to open is allowed, with a clear reason
      EXPECT_FALSE(s.message().empty());
      continue;
    }
    ++opened;
    std::set<std::string> corrupt;  // what get() calls corrupt: scrub must name each one
    for (const auto& [key, value] : acked) {
      Record got;
      Status g = e->get(make_id("default", key), &got);
      if (g.is_ok()) {
        ASSERT_EQ(got.data, value) << key;  // never a wrong value
        ++readable;
      } else {
        EXPECT_TRUE(g.is_not_found() || g.is_corruption()) << g.to_string();
        if (g.is_corruption()) corrupt.insert(make_id("default", key).hex());
      }
    }
    if (t % 5 == 0) {  // a whole scrub walk, in small steps
      ScrubStep found;
      uint64_t cursor = 0;
      for (int step = 0; step < 10000 && (step == 0 || cursor != 0); ++step)
        ASSERT_TRUE(e->scrub(&cursor, 8, &found).is_ok());
      ASSERT_EQ(cursor, 0u);
      std::set<std::string> named;
      for (const auto& id : found.corrupt) named.insert(id.hex());
      for (const auto& id : corrupt) EXPECT_TRUE(named.count(id)) << "scrub missed " << id;
      EXPECT_GE(found.checked, acked.size() - corrupt.size());
      scrub_found += named.size();
    }
  }
  // The test means something only if most flips left most data readable.
  EXPECT_GT(opened, trials / 2);
  EXPECT_GT(readable, opened * int(acked.size()) / 2);
  EXPECT_GT(scrub_found, 0u);  // some flips hit a record that scrub found
}

INSTANTIATE_TEST_SUITE_P(Engines, CrashTest, ::testing::Values("blob", "block", "fs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace apsis::storage
