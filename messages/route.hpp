// The route table: which backend of which node owns which part of each group's ring.
// Every backend has ring points, derived from a random seed (SHA-512 of the seed and the
// point's number, eight 8-byte points a hash) so that an entry carries 12 bytes for any
// number of points; backends from before seeds carry random 64-byte points instead. A point
// is its first 8 bytes (the rest zero); in a group, an id belongs to the backend with the
// greatest point <= id, wrapping around to the greatest point of all. Each node
// owns its own entry (its backends and points, a version that grows with every change and
// an incarnation that grows with every start), so merging two tables is per node: the
// newer entry wins. Nodes gossip what changed since they last told each other (gossip_delta),
// and the whole table on connecting and once a minute.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "messages/types.hpp"
#include "storage/id.hpp"

namespace apsis {

/// One backend of a node, with its ring points in its group.
struct backend_points {
  uint32_t backend = 0;
  uint32_t group = 0;
  std::vector<storage::Id> points;  ///< drawn one by one (backends from before seeds)
  uint64_t seed = 0;                ///< and `count` points derived from it
  uint32_t count = 0;

  size_t size() const { return points.size() + count; }
  /// Every point's place on the ring (its first 8 bytes, big-endian), in no order.
  std::vector<uint64_t> places() const;
};

/// As kept and served in JSON: {"backend", "group", "points": [hex], "seed": hex, "count"}.
void to_json(nlohmann::json& j, const backend_points& b);
/// Throws nlohmann::json's exceptions on a missing or mistyped field, and on a bad point.
void from_json(const nlohmann::json& j, backend_points& b);

/// Everything the cluster knows about one node, as that node says it.
struct node_entry {
  std::string name;
  uint64_t incarnation = 0;  ///< grows with every start of the node
  uint64_t version = 0;      ///< grows with every change within an incarnation
  std::string host;          ///< where its cluster port listens (and its binary port)
  uint16_t port = 0;
  uint16_t binary_port = 0;  ///< its binary protocol, for clients that route by key (0: unknown)
  std::vector<backend_points> backends;
  caf::actor peer;          ///< its PEER actor (a proxy when remote)
  caf::actor anti_entropy;  ///< its ANTI_ENTROPY actor
  caf::actor locks;         ///< its LOCK_MANAGER
  /// Removed by an operator while down (`apsis cluster forget`): its points own nothing and
  /// nobody dials it; a restart (a newer incarnation) brings it back.
  bool forgotten = false;
  /// Draining (`apsis cluster leave`): its points own nothing, so its keys move to the
  /// backends that remain; once empty it marks itself forgotten too (it has left) and stops.
  bool leaving = false;

  /// Whether it owns ring points: neither forgotten nor leaving.
  bool owns() const { return !forgotten && !leaving; }

  /// Whether this entry says something newer about the node than `other`.
  bool newer_than(const node_entry& other) const {
    return incarnation != other.incarnation ? incarnation > other.incarnation
                                            : version > other.version;
  }
};

struct route_table {
  std::map<std::string, node_entry> nodes;  ///< by node name

  /// Takes every entry of `other` that is newer; true if anything changed.
  bool merge(const route_table& other);
  /// Adds or replaces one node's entry if it is newer; true if it changed.
  bool merge(const node_entry& e);

  /// What the nodes say of themselves (no actor handles), as JSON: kept in the data
  /// directory, so that a restarted node knows its cluster before it has joined.
  std::string to_json() const;
  /// Reads to_json()'s text; false (and why) on anything else.
  static bool from_json(const std::string& text, route_table* out, std::string* error);
};

/// What one node last gossiped to another of each entry: name -> (incarnation, version).
using gossip_sent = std::map<std::string, std::pair<uint64_t, uint64_t>>;

/// What a node gossips to another (delta gossip): its own entry always (the receiver takes its
/// handles from it and hears it alive) and every other entry that changed since the last one
/// sent there; *sent is brought up to date. An empty *sent gives the whole table.
route_table gossip_delta(const route_table& t, const std::string& self, gossip_sent* sent);

/// A group's ring, derived from a route table: points' places sorted, each naming its owner
/// (12 bytes a point).
class ring {
 public:
  struct owner {
    std::string node;
    uint32_t backend = 0;
    friend bool operator==(const owner& a, const owner& b) {
      return a.node == b.node && a.backend == b.backend;
    }
  };
  /// Every group's ring in the table.
  static std::map<uint32_t, ring> build(const route_table& t);
  /// The owner of an id: greatest point <= id, wrapping. Null for an empty ring.
  const owner* owner_of(const storage::Id& id) const;
  /// The last id of the stretch that id's owner holds from id on: just before the next point
  /// of another owner, or Id::max() at the ring's end (a listing goes on from min there).
  storage::Id range_end(const storage::Id& id) const;
  /// Every owner with a point, in the table's order (node name, then its backends).
  const std::vector<owner>& owners() const { return d_->owners; }
  /// The share of the id space each owner holds (in owners()' order; the shares sum to 1).
  std::vector<double> shares() const;
  size_t size() const { return d_->places.size(); }
  /// What the ring holds in memory, in bytes (copies share it).
  size_t bytes() const;

 private:
  struct data {
    std::vector<uint64_t> places;  // sorted (ties by owner, in owners' order)
    std::vector<uint32_t> who;     // places[i]'s owner, an index into owners
    std::vector<owner> owners;
  };
  std::shared_ptr<const data> d_ = std::make_shared<data>();
};

/// n random ring points (OpenSSL's RAND_bytes).
std::vector<storage::Id> random_points(size_t n);
/// A random seed for a new backend's points.
uint64_t random_seed();
/// A seed as kept and served: 16 lowercase hex digits.
std::string seed_hex(uint64_t seed);
/// Reads seed_hex()'s text; false on anything else.
bool seed_from_hex(std::string_view hex, uint64_t* out);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, backend_points& x) {
  return f(caf::meta::type_name("backend_points"), x.backend, x.group, x.points, x.seed, x.count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_entry& x) {
  return f(caf::meta::type_name("node_entry"), x.name, x.incarnation, x.version, x.host, x.port,
           x.binary_port, x.backends, x.peer, x.anti_entropy, x.locks, x.forgotten, x.leaving);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_table& x) {
  return f(caf::meta::type_name("route_table"), x.nodes);
}

}  // namespace apsis
