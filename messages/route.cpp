#include "messages/route.hpp"

#include "messages/listing.hpp"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

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
    out.push_back({{"name", name},
                   {"incarnation", e.incarnation},
                   {"version", e.version},
                   {"host", e.host},
                   {"port", e.port},
                   {"binary_port", e.binary_port},
                   {"forgotten", e.forgotten},
                   {"leaving", e.leaving},
                   {"backends", e.backends}});
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
      try {
        n.at("backends").get_to(e.backends);
      } catch (const std::exception& x) {
        return *error = "node " + e.name + ": " + x.what(), false;
      }
      out->nodes[e.name] = std::move(e);
    }
  } catch (const nlohmann::json::exception& x) {
    return *error = x.what(), false;
  }
  return true;
}

void to_json(nlohmann::json& j, const backend_points& b) {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : b.points) points.push_back(p.hex());
  j = {{"backend", b.backend},
       {"group", b.group},
       {"points", points},
       {"seed", seed_hex(b.seed)},
       {"count", b.count}};
}

void from_json(const nlohmann::json& j, backend_points& b) {
  b.backend = j.at("backend").get<uint32_t>();
  b.group = j.at("group").get<uint32_t>();
  b.points.clear();
  for (const auto& p : j.at("points"))
    if (!storage::Id::from_hex(p.get<std::string>(), &b.points.emplace_back()))
      throw std::invalid_argument("a ring point is not 128 hex digits");
  // Absent in tables kept before seeds.
  if (!seed_from_hex(j.value("seed", std::string(16, '0')), &b.seed))
    throw std::invalid_argument("a ring seed is not 16 hex digits");
  b.count = j.value("count", 0u);
}

std::vector<uint64_t> backend_points::places() const {
  std::vector<uint64_t> out;
  out.reserve(size());
  for (const auto& p : points) out.push_back(p.prefix());
  // Hash j gives points 8j..8j+7: SHA-512(seed, j), both little-endian, cut in eight.
  for (uint32_t j = 0; uint64_t(j) * 8 < count; ++j) {
    unsigned char in[12], md[SHA512_DIGEST_LENGTH];
    for (int i = 0; i < 8; ++i) in[i] = uint8_t(seed >> (8 * i));
    for (int i = 0; i < 4; ++i) in[8 + i] = uint8_t(j >> (8 * i));
    SHA512(in, sizeof in, md);
    for (uint32_t k = 0; k < 8 && j * 8 + k < count; ++k) {
      uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v = (v << 8) | md[8 * k + i];
      out.push_back(v);
    }
  }
  return out;
}

std::map<uint32_t, ring> ring::build(const route_table& t) {
  std::map<uint32_t, data> built;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint32_t>>> placed;  // group -> points
  for (const auto& [name, node] : t.nodes) {
    if (!node.owns()) continue;
    for (const auto& b : node.backends) {
      if (b.size() == 0) continue;
      data& d = built[b.group];
      auto who = uint32_t(d.owners.size());
      d.owners.push_back(owner{name, b.backend});
      for (uint64_t place : b.places()) placed[b.group].emplace_back(place, who);
    }
  }
  std::map<uint32_t, ring> rings;
  for (auto& [group, points] : placed) {
    std::sort(points.begin(), points.end());
    data& d = built[group];
    d.places.reserve(points.size());
    d.who.reserve(points.size());
    for (const auto& [place, who] : points) {
      d.places.push_back(place);
      d.who.push_back(who);
    }
    rings[group].d_ = std::make_shared<const data>(std::move(d));
  }
  return rings;
}

const ring::owner* ring::owner_of(const storage::Id& id) const {
  const auto& places = d_->places;
  if (places.empty()) return nullptr;
  // A point is its place then zeros: it is <= id when its place is <= id's prefix. The first
  // place > id's prefix; the one before it is the greatest <= id, else wrap to the last.
  size_t k = size_t(std::upper_bound(places.begin(), places.end(), id.prefix()) - places.begin());
  return &d_->owners[d_->who[k == 0 ? places.size() - 1 : k - 1]];
}

storage::Id ring::range_end(const storage::Id& id) const {
  const auto& places = d_->places;
  if (places.empty()) return storage::Id::max();
  size_t k = size_t(std::upper_bound(places.begin(), places.end(), id.prefix()) - places.begin());
  const uint32_t o = d_->who[k == 0 ? places.size() - 1 : k - 1];
  while (k < places.size() && d_->who[k] == o) ++k;
  storage::Id end = storage::Id::max();
  if (k < places.size()) previous_id(storage::Id::at_prefix(places[k]), &end);
  return end;
}

std::vector<double> ring::shares() const {
  const auto& places = d_->places;
  std::vector<double> out(d_->owners.size(), 0.0);
  // Each point owns up to the next one (the last wraps to the first).
  for (size_t i = 0; i < places.size(); ++i) {
    uint64_t arc = places[(i + 1) % places.size()] - places[i];
    out[d_->who[i]] += places.size() == 1 ? 1.0 : double(arc) / 18446744073709551616.0;
  }
  return out;
}

size_t ring::bytes() const {
  size_t b = d_->places.capacity() * sizeof(uint64_t) + d_->who.capacity() * sizeof(uint32_t);
  for (const auto& o : d_->owners) b += sizeof(o) + o.node.capacity();
  return b;
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

uint64_t random_seed() {
  uint64_t seed = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed);
  return seed;
}

std::string seed_hex(uint64_t seed) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(seed));
  return hex;
}

bool seed_from_hex(std::string_view hex, uint64_t* out) {
  if (hex.size() != 16 || hex.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return false;
  *out = std::stoull(std::string(hex), nullptr, 16);
  return true;
}

}  // namespace apsis
