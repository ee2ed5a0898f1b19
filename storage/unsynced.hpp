// Unsynced: the fsyncs still owed for writes put with Engine::put_batch_unsynced(). A frontend
// connection collects them while it runs a round's batches and settles them before it writes
// the replies, so that the writes of every client in the round share one fsync per engine.
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "storage/engine.hpp"

namespace apsis::storage {

class Unsynced {
 public:
  /// Owes the engine's fsync through `ticket` (0: nothing).
  void owe(const std::shared_ptr<Engine>& engine, uint64_t ticket);
  /// Waits for every owed fsync and forgets them; the first failure otherwise (then the writes
  /// must not be acknowledged).
  Status settle();
  /// settle() without blocking: done(the first failure, or ok) is called once, from an
  /// engine's flusher thread or at once. What is owed after this call is owed anew.
  void when_settled(std::function<void(Status)> done);
  bool empty() const { return owed_.empty(); }

 private:
  std::vector<std::pair<std::shared_ptr<Engine>, uint64_t>> owed_;  ///< per engine, its highest
};

}  // namespace apsis::storage
