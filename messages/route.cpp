#include "messages/route.hpp"

#include <openssl/rand.h>

#include <algorithm>

namespace apsis {

bool route_table::merge(const node_entry& e) {
  auto it = nodes.find(e.name);
  if (it != nodes.end() && !e.newer_than(it->second)) return false;
  nodes[e.name] = e;
  return true;
}

bool route_table::merge(const route_table& other) {
  bool changed = false;
  for (const auto& [name, e] : other.nodes) changed = merge(e) || changed;
  return changed;
}

std::map<uint32_t, ring> ring::build(const route_table& t) {
  std::map<uint32_t, ring> rings;
  for (const auto& [name, node] : t.nodes)
    for (const auto& b : node.forgotten ? std::vector<backend_points>{} : node.backends)
      for (const auto& p : b.points) rings[b.group].points_.push_back({p, owner{name, b.backend}});
  for (auto& [group, r] : rings)
    std::sort(r.points_.begin(), r.points_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  return rings;
}

const ring::owner* ring::owner_of(const storage::Id& id) const {
  if (points_.empty()) return nullptr;
  // First point > id; the one before it is the greatest <= id, else wrap to the last.
  auto it = std::upper_bound(points_.begin(), points_.end(), id,
                             [](const storage::Id& v, const auto& p) { return v < p.first; });
  return it == points_.begin() ? &points_.back().second : &std::prev(it)->second;
}

std::vector<ring::owner> ring::owners() const {
  std::vector<owner> out;
  for (const auto& [point, o] : points_)
    if (std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  return out;
}

std::vector<storage::Id> random_points(size_t n) {
  std::vector<storage::Id> points(n);
  for (auto& p : points) RAND_bytes(p.bytes.data(), int(p.bytes.size()));
  return points;
}

}  // namespace apsis
