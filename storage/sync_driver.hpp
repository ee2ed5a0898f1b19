// SyncDriver: carries out a SyncPolicy for an engine. Writers take a ticket after each
// write; with `always`, after_write() returns once an fsync that began after that write has
// finished, and concurrent writers share that one fsync (group commit). With `interval`, a
// background thread syncs every interval. (A leader that waited for more writers before
// its fsync covered more per fsync but was slower overall here: see docs/benchmarks.md.) A failed
// fsync is sticky: every later write fails too, because after a failed fsync the kernel may have
// dropped the dirty pages.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "storage/engine.hpp"

namespace apsis::storage {

class SyncDriver {
 public:
  SyncDriver(SyncPolicy policy, std::function<Status()> sync_fn);
  ~SyncDriver();
  SyncDriver(const SyncDriver&) = delete;
  SyncDriver& operator=(const SyncDriver&) = delete;

  /// Call after each write is complete, under the writer's own lock.
  uint64_t ticket();
  /// Call after releasing the writer's lock; waits for durability as the policy says.
  Status after_write(uint64_t ticket);
  /// Syncs everything written so far, now.
  Status sync_all();
  /// The sticky error of a failed fsync, or ok.
  Status error();
  uint64_t syncs();
  /// The highest ticket known durable.
  uint64_t synced();

 private:
  Status sync_through(uint64_t ticket);
  void interval_loop();

  SyncPolicy policy_;
  std::function<Status()> sync_fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t issued_ = 0;
  uint64_t synced_ = 0;
  uint64_t syncs_ = 0;
  bool syncing_ = false;
  bool stop_ = false;
  Status error_;
  std::thread interval_thread_;
};

}  // namespace apsis::storage
