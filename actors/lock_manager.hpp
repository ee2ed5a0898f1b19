// LOCK_MANAGER: per-key leases (see interfaces.hpp). Tokens rise strictly, also across
// restarts (they start from the start time in ms << 20), so a shard that has seen a newer
// token refuses writes that carry an older one (fencing).
#pragma once

#include <deque>
#include <set>
#include <unordered_map>

#include "actors/interfaces.hpp"

namespace apsis {

struct lock_manager_state {
  struct holder {
    uint64_t token = 0;
    caf::actor_addr who;
  };
  struct waiter {
    caf::typed_response_promise<lease> promise;
    caf::actor_addr who;
    uint32_t lease_ms = 0;
  };
  std::unordered_map<std::string, holder> held;
  std::unordered_map<std::string, std::deque<waiter>> waiting;
  std::set<caf::actor_addr> monitored;
  uint64_t last_token = 0;
  // In a cluster: where each key's lease lives (its owner in the first group whose owner is
  // up).
  std::string node;  ///< this node's name
  route_table table;
  std::vector<std::pair<uint32_t, ring>> rings;  ///< by group (none: every lease is here)
  std::set<std::string> down;
  static inline const char* name = "lock-manager";
};

/// node: this node's name (to know which leases are its own in a cluster).
lock_manager_actor::behavior_type lock_manager(
    lock_manager_actor::stateful_pointer<lock_manager_state> self, std::string node);

}  // namespace apsis
