#include "storage/id.hpp"
#include "storage/sha512_x8.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace apsis::storage {
namespace {

// A known answer: SHA-512("abc") from FIPS 180-2, appendix C.1 (the namespace "ab", its zero
// byte and the key "c" hash differently; this checks the lanes' digest itself).
TEST(Sha512x8, EveryLaneGivesTheKnownDigestOfAbc) {
  if (!sha512_x8_supported()) GTEST_SKIP() << "no AVX-512F on this CPU";
  const uint8_t abc[] = {'a', 'b', 'c'};
  const uint8_t* msgs[8];
  size_t lens[8];
  uint8_t digests[8][64];
  uint8_t* outs[8];
  for (int l = 0; l < 8; ++l) msgs[l] = abc, lens[l] = 3, outs[l] = digests[l];
  sha512_x8(msgs, lens, 8, outs);
  Id id;
  for (int l = 0; l < 8; ++l) {
    std::copy(digests[l], digests[l] + 64, id.bytes.begin());
    EXPECT_EQ(id.hex(),
              "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
              "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        << "lane " << l;
  }
}

// make_ids answers as make_id does, for batches of every size around the lanes' eight, keys
// of every length up to past one block (those go one by one), and namespaces empty or not.
TEST(MakeIds, MatchesMakeIdForEveryBatchSizeAndKeyLength) {
  std::mt19937 rng(42);
  for (std::string ns : {"", "default", "a-longer-namespace-name"}) {
    for (size_t n : {0, 1, 2, 7, 8, 9, 16, 17, 33}) {
      std::vector<std::string> keys(n);
      for (size_t i = 0; i < n; ++i) {
        keys[i].resize(rng() % 130);
        for (auto& c : keys[i]) c = char(rng());
      }
      std::vector<Id> got(n);
      std::vector<IdJob> jobs;
      for (size_t i = 0; i < n; ++i) jobs.push_back({keys[i], &got[i]});
      make_ids(ns, jobs.data(), n);
      for (size_t i = 0; i < n; ++i)
        EXPECT_EQ(got[i], make_id(ns, keys[i]))
            << "ns '" << ns << "', batch of " << n << ", key of " << keys[i].size() << " bytes";
    }
  }
  // Every length across the one-block limit, in one batch.
  std::vector<std::string> keys;
  for (size_t len = 0; len <= 120; ++len) keys.emplace_back(len, char('a' + len % 26));
  std::vector<Id> got(keys.size());
  std::vector<IdJob> jobs;
  for (size_t i = 0; i < keys.size(); ++i) jobs.push_back({keys[i], &got[i]});
  make_ids("default", jobs.data(), jobs.size());
  for (size_t i = 0; i < keys.size(); ++i)
    EXPECT_EQ(got[i], make_id("default", keys[i])) << keys[i].size() << " bytes";
}

}  // namespace
}  // namespace apsis::storage
