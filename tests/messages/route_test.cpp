#include "messages/route.hpp"

#include <gtest/gtest.h>

namespace apsis {
namespace {

storage::Id point(uint8_t first) {
  storage::Id id;
  id.bytes[0] = first;
  return id;
}

node_entry node(const std::string& name, uint64_t incarnation, uint64_t version,
                std::vector<backend_points> backends) {
  node_entry e;
  e.name = name;
  e.incarnation = incarnation;
  e.version = version;
  e.backends = std::move(backends);
  return e;
}

TEST(Ring, AnIdBelongsToTheGreatestPointAtOrBelowItWrappingAround) {
  route_table t;
  t.merge(node("a", 1, 1, {{1, 1, {point(0x10), point(0x80)}}}));
  t.merge(node("b", 1, 1, {{7, 1, {point(0x40)}}, {8, 2, {point(0x00)}}}));
  auto rings = ring::build(t);
  ASSERT_EQ(rings.size(), 2u);
  const ring& g1 = rings.at(1);
  EXPECT_EQ(g1.size(), 3u);
  auto owner = [&](uint8_t first) { return *g1.owner_of(point(first)); };
  EXPECT_EQ(owner(0x10), (ring::owner{"a", 1}));  // on a point
  EXPECT_EQ(owner(0x3f), (ring::owner{"a", 1}));
  EXPECT_EQ(owner(0x40), (ring::owner{"b", 7}));
  EXPECT_EQ(owner(0x90), (ring::owner{"a", 1}));
  EXPECT_EQ(owner(0x05), (ring::owner{"a", 1}));  // below every point: wraps to 0x80
  EXPECT_EQ(*rings.at(2).owner_of(point(0xff)), (ring::owner{"b", 8}));
  EXPECT_EQ(g1.owners().size(), 2u);
  EXPECT_EQ(ring{}.owner_of(point(1)), nullptr);
}

TEST(RouteTable, MergeKeepsTheNewerEntryOfEachNode) {
  route_table t;
  EXPECT_TRUE(t.merge(node("a", 1, 5, {})));
  EXPECT_FALSE(t.merge(node("a", 1, 5, {})));  // the same: nothing changes
  EXPECT_FALSE(t.merge(node("a", 1, 4, {})));  // older version
  EXPECT_TRUE(t.merge(node("a", 2, 1, {})));   // a restart beats any version before it
  EXPECT_EQ(t.nodes.at("a").incarnation, 2u);
  route_table other;
  other.merge(node("a", 1, 9, {}));
  other.merge(node("b", 1, 1, {}));
  EXPECT_TRUE(t.merge(other));
  EXPECT_EQ(t.nodes.at("a").incarnation, 2u);
  EXPECT_EQ(t.nodes.size(), 2u);
}

TEST(Ring, RandomPointsDiffer) {
  auto p = random_points(64);
  ASSERT_EQ(p.size(), 64u);
  std::sort(p.begin(), p.end());
  EXPECT_EQ(std::adjacent_find(p.begin(), p.end()), p.end());
}

}  // namespace
}  // namespace apsis
