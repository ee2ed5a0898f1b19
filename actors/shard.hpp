// SHARD: one id range of one backend's engine (see interfaces.hpp).
#pragma once

#include <memory>
#include <unordered_map>

#include "actors/interfaces.hpp"
#include "storage/engine.hpp"

namespace apsis {

struct shard_state {
  std::shared_ptr<storage::Engine> engine;
  /// The highest fencing token seen per key: a write carrying an older one is refused.
  std::unordered_map<storage::Id, uint64_t, storage::IdHash> fences;
  static inline const char* name = "shard";
};

shard_actor::behavior_type shard(shard_actor::stateful_pointer<shard_state> self,
                                 std::shared_ptr<storage::Engine> engine);

/// Which of n (< 2^32) shards owns an id: contiguous ranges of the id space, by its top
/// 32 bits.
inline size_t shard_index(const storage::Id& id, size_t n) {
  return static_cast<size_t>(((id.prefix() >> 32) * n) >> 32);
}

}  // namespace apsis
