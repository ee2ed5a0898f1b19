// ANTI_ENTROPY (see interfaces.hpp): continuous recovery between the groups of a cluster.
// A round takes the next (local backend, replica in another group) pair, round robin:
//   1. digests: the ids both own are split into `buckets` by their first bits; each bucket's
//      digest is the XOR of a hash of every (id, version) in it. One engine scan, O(buckets)
//      memory; the other side computes the same and answers the buckets that differ.
//   2. keys: for at most `max_buckets` of those, the other side lists its (id, version).
//   3. push: every record of ours it lacks or holds older goes to it as a replica write
//      (the version travels with it, so the newer one wins there, and a replay is harmless).
// Each side pushes what it has newer when its own rounds reach the pair, so both converge.
// Scans block the scheduler thread they run on (one round at a time).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "actors/interfaces.hpp"
#include "storage/engine.hpp"

namespace apsis {

/// Progress, readable from any thread (node stats).
struct ae_stats {
  std::atomic<uint64_t> rounds{0}, buckets_compared{0}, buckets_differing{0}, keys_compared{0},
      divergent{0}, repaired{0}, failed_rounds{0};
};

struct ae_backend {
  uint32_t group = 0;
  std::shared_ptr<storage::Engine> engine;
};

struct ae_config {
  std::string node;                         ///< this node's name
  std::map<uint32_t, ae_backend> backends;  ///< local backend id -> group and engine
  std::chrono::milliseconds every{10000};   ///< between rounds; 0: only when sent tick
  std::chrono::milliseconds timeout{5000};
  size_t buckets = 1024;     ///< a power of two
  size_t max_buckets = 64;   ///< differing buckets listed and repaired per round
  size_t push_batch = 256;   ///< records per replica write
  std::shared_ptr<ae_stats> stats;
};

struct ae_state {
  ae_config cfg;
  route_table table;
  std::map<uint32_t, ring> rings;
  std::set<std::string> down;
  size_t cursor = 0;    ///< the next pair, round robin
  bool running = false;  ///< a round is in flight
  static inline const char* name = "anti-entropy";
};

anti_entropy_actor::behavior_type anti_entropy(anti_entropy_actor::stateful_pointer<ae_state> self,
                                               ae_config cfg);

}  // namespace apsis
