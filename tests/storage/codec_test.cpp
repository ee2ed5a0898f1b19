#include <gtest/gtest.h>

#include "storage/engine.hpp"
#include "storage/record_codec.hpp"
#include "tests/storage/test_util.hpp"

namespace apsis::storage {
namespace {

TEST(Id, IsSha512OfNamespaceZeroKey) {
  // sha512("default\0k"), computed independently with Python's hashlib.
  EXPECT_EQ(make_id("default", "k").hex().substr(0, 16), "844ba1707a7fb1c3");
  EXPECT_NE(make_id("a", "bc"), make_id("ab", "c"));
  Id back;
  ASSERT_TRUE(Id::from_hex(make_id("x", "y").hex(), &back));
  EXPECT_EQ(back, make_id("x", "y"));
  EXPECT_FALSE(Id::from_hex("zz", &back));
}

TEST(Codec, RoundTripsEveryField) {
  Record r = testing::make_record("key", std::string("bin\0ary", 7), 42, R"({"a":1})");
  r.expiry_ms = 123456;
  r.user_flags = 0xdeadbeef;
  std::string enc = codec::encode(r);
  ASSERT_EQ(enc.size(), codec::header_size + 3 + 7 + 7);
  Record d;
  ASSERT_TRUE(codec::decode(enc, &d).is_ok());
  EXPECT_EQ(d.id, r.id);
  EXPECT_EQ(d.key, r.key);
  EXPECT_EQ(d.json, r.json);
  EXPECT_EQ(d.data, r.data);
  EXPECT_EQ(d.version, r.version);
  EXPECT_EQ(d.expiry_ms, r.expiry_ms);
  EXPECT_EQ(d.user_flags, r.user_flags);
  EXPECT_FALSE(d.tombstone);
}

TEST(Codec, DetectsEveryFlippedBitAndEveryTruncation) {
  std::string enc = codec::encode(testing::make_record("key", "value", 7, "[1]"));
  Record d;
  for (size_t i = 0; i < enc.size() * 8; ++i) {
    std::string bad = enc;
    bad[i / 8] ^= char(1 << (i % 8));
    EXPECT_FALSE(codec::decode(bad, &d).is_ok()) << "bit " << i;
  }
  for (size_t n = 0; n < enc.size(); ++n)
    EXPECT_TRUE(codec::decode(enc.substr(0, n), &d).is_corruption()) << "length " << n;
}

TEST(Validate, RefusesOversizedAndInvalidInput) {
  Limits limits;
  limits.max_value_size = 100;
  Record r = testing::make_record(std::string(4097, 'k'), "", 1);
  EXPECT_TRUE(validate(r, limits).is_invalid_argument());
  r = testing::make_record("k", std::string(101, 'v'), 1);
  EXPECT_TRUE(validate(r, limits).is_invalid_argument());
  r = testing::make_record("k", "v", 1, "{not json");
  Status s = validate(r, limits);
  EXPECT_TRUE(s.is_invalid_argument());
  EXPECT_NE(s.message().find("JSON"), std::string::npos);
  r = Record::make_tombstone(make_id("default", "k"), {1, 1});
  r.data = "x";
  EXPECT_TRUE(validate(r, limits).is_invalid_argument());
  EXPECT_TRUE(validate(testing::make_record("k", "v", 1, R"({"ok":true})"), limits).is_ok());
}

TEST(SyncPolicy, ParsesTheThreeFormsAndNamesBadInput) {
  SyncPolicy p;
  std::string err;
  ASSERT_TRUE(SyncPolicy::parse("interval:250", &p, &err));
  EXPECT_EQ(p.mode, SyncPolicy::Mode::interval);
  EXPECT_EQ(p.interval_ms, 250u);
  ASSERT_TRUE(SyncPolicy::parse("never", &p, &err));
  EXPECT_EQ(p.to_string(), "never");
  EXPECT_FALSE(SyncPolicy::parse("interval:0", &p, &err));
  EXPECT_FALSE(SyncPolicy::parse("interval:abc", &p, &err));
  EXPECT_FALSE(SyncPolicy::parse("sometimes", &p, &err));
  EXPECT_NE(err.find("sometimes"), std::string::npos);
}

TEST(Version, OrdersByStampThenNode) {
  EXPECT_LT((Version{1, 9}), (Version{2, 0}));
  EXPECT_LT((Version{2, 0}), (Version{2, 1}));
  EXPECT_EQ((Version{2, 1}), (Version{2, 1}));
}

}  // namespace
}  // namespace apsis::storage
