// SyncDriver: carries out a SyncPolicy for an engine. Writers take a ticket after each
// write; with `always`, after_write() returns once an fsync that began after that write has
// finished, and concurrent writers share that one fsync (group commit). when_durable() is the
// same wait without blocking: a flusher thread fsyncs while the callers go on (a frontend's
// I/O threads keep reading, so the next fsync covers more), and before its next fsync waits,
// for at most the last fsync's length, until as many waiters are back as it had (a blocking
// leader that waited for more writers was slower overall: see docs/benchmarks.md). With
// `interval`, a background thread syncs every interval. A failed
// fsync is sticky: every later write fails too, because after a failed fsync the kernel may have
// dropped the dirty pages.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "storage/engine.hpp"

namespace apsis::storage {

class SyncDriver {
 public:
  SyncDriver(SyncPolicy policy, std::function<Status()> sync_fn);
  ~SyncDriver();
  SyncDriver(const SyncDriver&) = delete;
  SyncDriver& operator=(const SyncDriver&) = delete;

  /// Call after each batch of `writes` records is complete, under the writer's own lock.
  /// Tickets count the writes, so that synced() says how many are durable.
  uint64_t ticket(uint64_t writes = 1);
  /// Call after releasing the writer's lock; waits for durability as the policy says.
  Status after_write(uint64_t ticket);
  /// after_write() for a batch of n results: a failure replaces each ok result.
  void finish(uint64_t ticket, Status* results, size_t n);
  /// Engine::put_batch_unsynced()'s end: with `always`, the ticket the caller must settle
  /// (after_write) before acknowledging; otherwise finish() now and 0.
  uint64_t defer(uint64_t ticket, Status* results, size_t n);
  /// Calls done(error() or ok), from the flusher thread or at once, when ticket is durable.
  void when_durable(uint64_t ticket, std::function<void(Status)> done);
  /// Syncs everything written so far, now.
  Status sync_all();
  /// The sticky error of a failed fsync, or ok.
  Status error();
  uint64_t syncs();
  /// The highest ticket known durable: the writes made durable so far.
  uint64_t synced();

 private:
  Status sync_through(uint64_t ticket);
  void interval_loop();
  void flusher_loop();

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
  /// error_ is not ok (set once, never cleared): error() reads this without the mutex, since
  /// every write of every batch asks it.
  std::atomic<bool> failed_{false};
  std::thread interval_thread_;
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> waiters_;  ///< when_durable's
  std::thread flusher_;                 ///< started by the first when_durable()
  std::condition_variable flusher_cv_;  ///< the flusher waits on it for waiters
  size_t gather_ = 0;  ///< waiters the flusher waits for before its next fsync (0: none)
};

/// An engine that writes a batch under its lock and leaves durability to a SyncDriver (blob,
/// block): put_batch(), its unsynced form, settle() and when_settled(), made once from the
/// engine's write_batch() and its driver.
class GroupCommitEngine : public Engine {
 public:
  void put_batch(const Record* records, size_t n, Status* results) final {
    driver().finish(write_batch(records, n, results), results, n);
  }
  void put_batch_unsynced(const Record* records, size_t n, Status* results, uint64_t* owed) final {
    *owed = driver().defer(write_batch(records, n, results), results, n);
  }
  Status settle(uint64_t owed) final { return driver().after_write(owed); }
  void when_settled(uint64_t owed, std::function<void(Status)> done) final {
    driver().when_durable(owed, std::move(done));
  }

 protected:
  /// Writes a batch under the engine's lock; the ticket its durability waits for.
  virtual uint64_t write_batch(const Record* records, size_t n, Status* results) = 0;
  virtual SyncDriver& driver() = 0;
};

}  // namespace apsis::storage
