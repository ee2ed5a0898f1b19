// SHARD: one id range of one backend's engine (see interfaces.hpp).
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "actors/hlc.hpp"
#include "actors/interfaces.hpp"
#include "actors/metrics.hpp"
#include "storage/engine.hpp"
#include "storage/spin_first.hpp"
#include "storage/unsynced.hpp"

namespace apsis {

/// One id range of one engine: applies a batch in order, with conditions (NX, XX, CAS) and
/// fencing atomic per key. A mutex makes each batch atomic, so the shard actor and a
/// frontend's direct path (replica_group.hpp: LocalCoordinator) can share it from any thread.
/// A write that comes without a version is stamped here, under that mutex, so that writes
/// from many threads reach the engine in version order (none is refused as stale).
class ShardCore {
 public:
  ShardCore(std::shared_ptr<storage::Engine> engine, std::shared_ptr<Hlc> clock)
      : engine_(std::move(engine)), clock_(std::move(clock)) {}
  /// One result per operation; writes go to the engine as one put_batch. Under fsync `always`
  /// the wait for the fsync comes after the shard's lock is released: here, or, given `owed`,
  /// left to the caller, who must settle it before acknowledging (storage/unsynced.hpp).
  result_batch apply(op_batch& ops, storage::Unsynced* owed = nullptr);
  /// The engine it applies to (several shards share one).
  const storage::Engine* engine() const { return engine_.get(); }
  /// Where the shard actor samples its mailbox depth (null: nowhere).
  std::shared_ptr<MailboxGauge> mailbox;

 private:
  /// apply() under the lock, its fsync owed (*owed: the engine's ticket, 0 for none).
  result_batch apply_unsynced(op_batch& ops, uint64_t* owed);

  storage::SpinFirst<std::mutex> mu_;
  std::shared_ptr<storage::Engine> engine_;
  std::shared_ptr<Hlc> clock_;
  /// The highest fencing token seen per key: a write carrying an older one is refused.
  std::unordered_map<storage::Id, uint64_t, storage::IdHash> fences_;
};

struct shard_state {
  std::shared_ptr<ShardCore> core;
  static inline const char* name = "shard";
};

shard_actor::behavior_type shard(shard_actor::stateful_pointer<shard_state> self,
                                 std::shared_ptr<ShardCore> core);

/// Which of n (< 2^32) shards owns an id: contiguous ranges of the id space, by its top
/// 32 bits.
inline size_t shard_index(const storage::Id& id, size_t n) {
  return static_cast<size_t>(((id.prefix() >> 32) * n) >> 32);
}

}  // namespace apsis
