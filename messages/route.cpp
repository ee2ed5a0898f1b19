#include "messages/route.hpp"

#include "messages/listing.hpp"

#include <openssl/rand.h>

#include <algorithm>

#include <nlohmann/json.hpp>

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

std::string route_table::to_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, e] : nodes) {
    nlohmann::json backends = nlohmann::json::array();
    for (const auto& b : e.backends) {
      nlohmann::json points = nlohmann::json::array();
      for (const auto& p : b.points) points.push_back(p.hex());
      backends.push_back({{"backend", b.backend}, {"group", b.group}, {"points", points}});
    }
    out.push_back({{"name", name},
                   {"incarnation", e.incarnation},
                   {"version", e.version},
                   {"host", e.host},
                   {"port", e.port},
                   {"binary_port", e.binary_port},
                   {"forgotten", e.forgotten},
                   {"leaving", e.leaving},
                   {"backends", backends}});
  }
  return out.dump(1) + "\n";
}

bool route_table::from_json(const std::string& text, route_table* out, std::string* error) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_array()) return *error = "not a JSON array of nodes", false;
  try {
    for (const auto& n : doc) {
      node_entry e;
      e.name = n.at("name").get<std::string>();
      e.incarnation = n.at("incarnation").get<uint64_t>();
      e.version = n.at("version").get<uint64_t>();
      e.host = n.at("host").get<std::string>();
      e.port = n.at("port").get<uint16_t>();
      e.binary_port = n.at("binary_port").get<uint16_t>();
      e.forgotten = n.at("forgotten").get<bool>();
      e.leaving = n.value("leaving", false);  // absent in tables kept before it existed
      for (const auto& b : n.at("backends")) {
        backend_points bp{b.at("backend").get<uint32_t>(), b.at("group").get<uint32_t>(), {}};
        for (const auto& p : b.at("points"))
          if (!storage::Id::from_hex(p.get<std::string>(), &bp.points.emplace_back()))
            return *error = "node " + e.name + ": a ring point is not 128 hex digits", false;
        e.backends.push_back(std::move(bp));
      }
      out->nodes[e.name] = std::move(e);
    }
  } catch (const nlohmann::json::exception& x) {
    return *error = x.what(), false;
  }
  return true;
}

std::map<uint32_t, ring> ring::build(const route_table& t) {
  std::map<uint32_t, ring> rings;
  for (const auto& [name, node] : t.nodes)
    for (const auto& b : node.owns() ? node.backends : std::vector<backend_points>{})
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

storage::Id ring::range_end(const storage::Id& id) const {
  const owner* o = owner_of(id);
  auto it = std::upper_bound(points_.begin(), points_.end(), id,
                             [](const storage::Id& v, const auto& p) { return v < p.first; });
  while (it != points_.end() && o && it->second == *o) ++it;
  storage::Id end = storage::Id::max();
  if (it != points_.end()) previous_id(it->first, &end);
  return end;
}

std::vector<ring::owner> ring::owners() const {
  std::vector<owner> out;
  for (const auto& [point, o] : points_)
    if (std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  return out;
}

std::vector<double> ring::shares() const {
  std::vector<owner> who = owners();
  std::vector<double> out(who.size(), 0.0);
  // Each point owns up to the next one (the last wraps to the first); the top 64 bits of the
  // ids measure the arcs, exactly enough for shares.
  for (size_t i = 0; i < points_.size(); ++i) {
    uint64_t from = points_[i].first.prefix();
    uint64_t to = points_[(i + 1) % points_.size()].first.prefix();
    double arc = points_.size() == 1 ? 18446744073709551616.0 : double(to - from);
    size_t k = size_t(std::find(who.begin(), who.end(), points_[i].second) - who.begin());
    out[k] += arc / 18446744073709551616.0;
  }
  return out;
}

route_table gossip_delta(const route_table& t, const std::string& self, gossip_sent* sent) {
  route_table out;
  for (const auto& [name, e] : t.nodes) {
    auto stamp = std::make_pair(e.incarnation, e.version);
    auto it = sent->find(name);
    if (name != self && it != sent->end() && it->second == stamp) continue;
    out.nodes.emplace(name, e);
    (*sent)[name] = stamp;
  }
  return out;
}

std::vector<storage::Id> random_points(size_t n) {
  std::vector<storage::Id> points(n);
  for (auto& p : points) RAND_bytes(p.bytes.data(), int(p.bytes.size()));
  return points;
}

}  // namespace apsis
