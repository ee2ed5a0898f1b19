// Listing's pieces: Redis globs, cursors (issued ones read back, others refused), a page
// request's encoding, id steps, and the export stream (round trip, and every refusal).
#include <gtest/gtest.h>

#include <algorithm>

#include "messages/export_format.hpp"
#include "messages/large.hpp"
#include "messages/listing.hpp"

namespace apsis {
namespace {

TEST(Glob, MatchesAsRedisDoes) {
  struct Case {
    const char *pattern, *key;
    bool match;
  } cases[] = {
      {"*", "", true},
      {"*", "anything", true},
      {"user:*", "user:1", true},
      {"user:*", "use", false},
      {"h?llo", "hello", true},
      {"h?llo", "hllo", false},
      {"h[ae]llo", "hallo", true},
      {"h[ae]llo", "hillo", false},
      {"h[^e]llo", "hallo", true},
      {"h[^e]llo", "hello", false},
      {"h[a-b]llo", "hbllo", true},
      {"h[a-b]llo", "hcllo", false},
      {"a\\*b", "a*b", true},
      {"a\\*b", "axb", false},
      {"*b*c", "abxbc", true},
      {"*b*c", "abxbd", false},
      {"k[", "k", false},
      {"", "", true},
      {"", "x", false},
      {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
  };
  for (const auto& c : cases)
    EXPECT_EQ(glob_match(c.pattern, c.key), c.match) << c.pattern << " ~ " << c.key;
  EXPECT_TRUE(glob_match(prefix_glob("a*[b]"), "a*[b]tail"));
  EXPECT_FALSE(glob_match(prefix_glob("a*"), "abc"));
}

TEST(Cursor, IssuedCursorsReadBackAndOthersAreRefused) {
  storage::Id start;
  std::string why;
  ASSERT_TRUE(parse_cursor("0", &start, &why));
  EXPECT_EQ(start, storage::Id::min());
  EXPECT_EQ(cursor_text(false, storage::Id::max()), "0");
  for (uint64_t prefix :
       {uint64_t(1) << 8, uint64_t(0x0123456789abcdef), ~uint64_t(0), uint64_t(0)}) {
    storage::Id next = storage::Id::at_prefix(prefix);
    next.bytes[40] = 7;  // beyond the cursor's bits: the cursor starts at or before it
    const std::string text = cursor_text(true, next);
    EXPECT_NE(text, "0");
    ASSERT_TRUE(parse_cursor(text, &start, &why)) << text << ": " << why;
    EXPECT_LE(start, next);
    EXPECT_EQ(start.prefix() >> 8, next.prefix() >> 8);
  }
  int refused = 0;
  for (uint64_t v = 1; v <= 1000; ++v) refused += !parse_cursor(std::to_string(v), &start, &why);
  EXPECT_GE(refused, 990) << "a cursor that was never issued is refused (but 1 in 255)";
  for (const char* bad : {"", "-1", "x", "1.5", "18446744073709551616", " 1"}) {
    EXPECT_FALSE(parse_cursor(bad, &start, &why)) << bad;
    EXPECT_EQ(why.rfind("invalid cursor", 0), 0u);
  }
}

TEST(ListRequest, RoundTripsAndRefusesGarbage) {
  list_request q;
  q.end = storage::Id::at_prefix(42);
  q.count = 77;
  q.payload = true;
  q.since = {123, 4};
  q.match = std::string("a\0*", 3);
  list_request back;
  ASSERT_TRUE(list_request::decode(q.encode(), &back));
  EXPECT_EQ(back.end, q.end);
  EXPECT_EQ(back.count, 77u);
  EXPECT_TRUE(back.payload);
  EXPECT_FALSE(back.tombstones);
  EXPECT_EQ(back.since, q.since);
  EXPECT_EQ(back.match, q.match);
  EXPECT_FALSE(list_request::decode(q.encode().substr(0, 84), &back));
  std::string bad_flags = q.encode();
  bad_flags[68] = 8;
  EXPECT_FALSE(list_request::decode(bad_flags, &back));
}

TEST(Ids, StepForwardAndBack) {
  storage::Id id = storage::Id::at_prefix(5), next, prev;
  id.bytes[63] = 0xff;
  ASSERT_TRUE(next_id(id, &next));
  EXPECT_EQ(next.bytes[63], 0);
  EXPECT_EQ(next.bytes[62], 1);
  ASSERT_TRUE(previous_id(next, &prev));
  EXPECT_EQ(prev, id);
  EXPECT_FALSE(next_id(storage::Id::max(), &next));
  EXPECT_FALSE(previous_id(storage::Id::min(), &prev));
}

listed_record record(std::string key, std::string data, std::string json = {}) {
  listed_record r;
  r.meta.key = std::move(key);
  r.meta.version = {7ull << 16 | 3, 2};
  r.meta.expiry_ms = 99;
  r.meta.user_flags = 5;
  r.data = std::move(data);
  r.json = std::move(json);
  return r;
}

std::string stream(const std::vector<listed_record>& records) {
  exportfmt::Writer w;
  std::string out = w.header("ns1", {});
  for (const auto& r : records) out += w.record(r);
  return out + w.trailer();
}

/// Reads a stream; the records, or false with *error.
bool read(const std::string& text, std::vector<exportfmt::Item>* items, std::string* error,
          std::string* ns = nullptr) {
  exportfmt::Reader r;
  exportfmt::Reader::Line kind;
  exportfmt::Item item;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    if (!r.next(std::string_view(text).substr(pos, nl - pos), &kind, &item, error)) return false;
    if (kind == exportfmt::Reader::Line::record) items->push_back(item);
    pos = nl + 1;
  }
  if (ns) *ns = r.ns();
  return r.complete() || (*error = "no trailer", false);
}

TEST(ExportStream, RoundTripsEveryByte) {
  listed_record deleted = record("gone", "");
  deleted.meta.tombstone = true;
  std::vector<listed_record> in = {record("plain", "value"),
                                   record(std::string("bin\xff\0key", 8), std::string("\0\1\2", 3)),
                                   record("j", "", "{\"b\": [1, 2.50]}"), deleted};
  std::vector<exportfmt::Item> out;
  std::string error, ns;
  ASSERT_TRUE(read(stream(in), &out, &error, &ns)) << error;
  EXPECT_EQ(ns, "ns1");
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].key, in[i].meta.key);
    EXPECT_EQ(out[i].data, in[i].data);
    EXPECT_EQ(out[i].json, in[i].json);  // the JSON part's text, not a re-serialization
    EXPECT_EQ(out[i].version, in[i].meta.version);
    EXPECT_EQ(out[i].deleted, in[i].meta.tombstone);
  }
  EXPECT_EQ(out[0].expiry_ms, 99u);
  EXPECT_EQ(out[0].user_flags, 5u);
}

TEST(ExportStream, RefusesTruncatedAlteredAndMalformedStreams) {
  const std::string good = stream({record("a", "1"), record("b", "2")});
  std::vector<exportfmt::Item> out;
  std::string error;
  const size_t last_line = good.rfind('\n', good.size() - 2) + 1;
  EXPECT_FALSE(read(good.substr(0, last_line), &out, &error));  // no trailer
  EXPECT_NE(error.find("no trailer"), std::string::npos);
  std::string altered = good;
  altered.replace(altered.find("\"a\""), 3, "\"x\"");
  EXPECT_FALSE(read(altered, &out, &error));
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
  std::string dropped = good;
  dropped.erase(dropped.find("{\"data\""),
                dropped.find('\n', dropped.find("{\"data\"")) + 1 - dropped.find("{\"data\""));
  EXPECT_FALSE(read(dropped, &out, &error));
  EXPECT_NE(error.find("records"), std::string::npos) << error;
  EXPECT_FALSE(read(good + "{}\n", &out, &error));
  EXPECT_NE(error.find("after the trailer"), std::string::npos);
  for (const char* bad : {"not json\n", "{\"apsis_export\": 2, \"ns\": \"x\"}\n", "[]\n"}) {
    EXPECT_FALSE(read(bad, &out, &error)) << bad;
    EXPECT_EQ(error.rfind("line 1: ", 0), 0u) << error;
  }
  const std::string header = stream({}).substr(0, stream({}).find('\n') + 1);
  for (const char* bad :
       {"{\"version\": \"1.0@1\"}", "{\"key\": \"k\"}", "{\"key\": \"k\", \"version\": \"x\"}",
        "{\"key\": \"k\", \"version\": \"1.0@1\", \"data\": \"***\"}",
        "{\"key\": \"k\", \"version\": \"1.0@1\", \"json\": {}}",
        "{\"key\": \"k\", \"version\": \"1.0@1\", \"expiry_ms\": -1}"}) {
    EXPECT_FALSE(read(header + bad + "\n", &out, &error)) << bad;
    EXPECT_EQ(error.rfind("line 2: ", 0), 0u) << error;
  }
}

TEST(ExportStream, CarriesALargeValueAsPartsAndRefusesAWrongOne) {
  const uint64_t size = 2 * large::chunk_size + 5;
  std::string bytes(size, 'x');
  bytes[large::chunk_size] = 'y';
  listed_record manifest = record("big", "");
  manifest.meta.user_flags = large::manifest_flag | 4;
  exportfmt::Writer w;
  std::string head = w.header("ns1", {});  // the writer chains lines in the order made
  head += w.large(manifest, size);
  std::string parts;
  for (uint64_t i = 0; i < 3; ++i)
    parts += w.part(i, std::string_view(bytes).substr(i * large::chunk_size, large::chunk_size));
  std::string small = w.record(record("after", "v"));
  const std::string good = head + parts + small + w.trailer();  // the trailer made last

  exportfmt::Reader r;
  exportfmt::Reader::Line kind;
  exportfmt::Item item;
  std::string error, got;
  std::vector<exportfmt::Reader::Line> kinds;
  for (size_t pos = 0; pos < good.size();) {
    const size_t nl = good.find('\n', pos);
    ASSERT_TRUE(r.next(std::string_view(good).substr(pos, nl - pos), &kind, &item, &error))
        << error;
    kinds.push_back(kind);
    if (kind == exportfmt::Reader::Line::record && item.large) {
      EXPECT_EQ(item.size, size);
      EXPECT_EQ(item.user_flags, 4u) << "bit 31 marks a manifest, not a user's flag";
    }
    if (kind == exportfmt::Reader::Line::part) got += item.data;
    pos = nl + 1;
  }
  EXPECT_TRUE(r.complete());
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), exportfmt::Reader::Line::part), 3);

  std::vector<exportfmt::Item> out;
  const std::string no_part = head + parts.substr(0, parts.rfind("{\"data\"")) + small;
  EXPECT_FALSE(read(no_part, &out, &error));
  EXPECT_NE(error.find("part 2 of a large value expected"), std::string::npos) << error;
  std::string shorter = head + parts;
  shorter.replace(shorter.find("{\"data\""), 9, "{\"data\":\"eHh4\",\"x\":\"");
  EXPECT_FALSE(read(shorter, &out, &error));
  EXPECT_NE(error.find("holds 3 bytes, not 1048576"), std::string::npos) << error;
  EXPECT_FALSE(read(w.header("ns1", {}) + parts, &out, &error));
  EXPECT_NE(error.find("no large value before it"), std::string::npos) << error;
  listed_record flagged = record("k", "v");
  flagged.meta.user_flags = large::manifest_flag;
  EXPECT_FALSE(read(stream({flagged}), &out, &error));
  EXPECT_NE(error.find("bit 31 is reserved"), std::string::npos) << error;
}

}  // namespace
}  // namespace apsis
