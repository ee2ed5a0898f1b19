#include "storage/sync_driver.hpp"

#include <algorithm>
#include <chrono>

namespace apsis::storage {

SyncDriver::SyncDriver(SyncPolicy policy, std::function<Status()> sync_fn)
    : policy_(policy), sync_fn_(std::move(sync_fn)) {
  if (policy_.mode == SyncPolicy::Mode::interval)
    interval_thread_ = std::thread([this] { interval_loop(); });
}

SyncDriver::~SyncDriver() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  flusher_cv_.notify_all();
  if (interval_thread_.joinable()) interval_thread_.join();
  if (flusher_.joinable()) flusher_.join();
}

uint64_t SyncDriver::ticket(uint64_t writes) {
  std::lock_guard<std::mutex> g(mu_);
  return issued_ += writes;
}

Status SyncDriver::after_write(uint64_t ticket) {
  if (policy_.mode == SyncPolicy::Mode::always) return sync_through(ticket);
  return error();
}

void SyncDriver::finish(uint64_t ticket, Status* results, size_t n) {
  Status durable = after_write(ticket);
  for (size_t i = 0; i < n && !durable; ++i)
    if (results[i]) results[i] = durable;
}

uint64_t SyncDriver::defer(uint64_t ticket, Status* results, size_t n) {
  if (policy_.mode == SyncPolicy::Mode::always) return ticket;
  finish(ticket, results, n);
  return 0;
}

void SyncDriver::when_durable(uint64_t ticket, std::function<void(Status)> done) {
  std::unique_lock<std::mutex> l(mu_);
  if (!error_.is_ok() || synced_ >= ticket) {
    Status s = error_;
    l.unlock();
    return done(s);
  }
  waiters_.emplace_back(ticket, std::move(done));
  if (!flusher_.joinable()) flusher_ = std::thread([this] { flusher_loop(); });
  // Woken only when it would act: a wake-up per waiter costs more than the fsync saves.
  if (waiters_.size() == 1 || waiters_.size() == gather_) flusher_cv_.notify_one();
}

void SyncDriver::flusher_loop() {
  std::unique_lock<std::mutex> l(mu_);
  size_t answered = 0;                                      // waiters the last fsync answered
  auto took = std::chrono::steady_clock::duration::zero();  // and how long it took
  for (;;) {
    flusher_cv_.wait(l, [&] { return stop_ || !waiters_.empty(); });
    if (waiters_.empty()) return;  // stopping, and no one waits
    // The writers just answered mostly write again within a round trip: waiting for them (for
    // at most as long as the last fsync took) lets one fsync cover them and those that came
    // during it, as Redis's event loop covers every client of a round, rather than the two
    // cohorts taking turns (15 writes an fsync -> 27 in tools/fsync-bench.sh).
    gather_ = answered;
    if (waiters_.size() < answered)
      flusher_cv_.wait_for(l, took, [&] { return stop_ || waiters_.size() >= answered; });
    gather_ = 0;
    uint64_t want = 0;
    for (const auto& w : waiters_) want = std::max(want, w.first);
    l.unlock();
    const auto began = std::chrono::steady_clock::now();
    sync_through(want);  // every write up to now: waiters that came meanwhile too
    took = std::chrono::steady_clock::now() - began;
    l.lock();
    auto done = std::stable_partition(waiters_.begin(), waiters_.end(), [&](const auto& w) {
      return error_.is_ok() && w.first > synced_;
    });
    std::vector<std::pair<uint64_t, std::function<void(Status)>>> ready(
        std::make_move_iterator(done), std::make_move_iterator(waiters_.end()));
    waiters_.erase(done, waiters_.end());
    answered = ready.size() + waiters_.size();  // everyone, once those answered come back
    Status s = error_;
    l.unlock();
    for (auto& w : ready) w.second(s);
    l.lock();
  }
}

Status SyncDriver::sync_all() {
  uint64_t t;
  {
    std::lock_guard<std::mutex> g(mu_);
    t = issued_;
  }
  return sync_through(t);
}

Status SyncDriver::error() {
  if (!failed_.load(std::memory_order_acquire)) return Status::ok();
  std::lock_guard<std::mutex> g(mu_);
  return error_;
}

uint64_t SyncDriver::syncs() {
  std::lock_guard<std::mutex> g(mu_);
  return syncs_;
}

uint64_t SyncDriver::synced() {
  std::lock_guard<std::mutex> g(mu_);
  return synced_;
}

Status SyncDriver::sync_through(uint64_t ticket) {
  std::unique_lock<std::mutex> l(mu_);
  while (error_.is_ok() && synced_ < ticket) {
    if (syncing_) {
      cv_.wait(l);
      continue;
    }
    // Leader: one fsync covers every write that took a ticket before it starts.
    syncing_ = true;
    uint64_t target = issued_;
    l.unlock();
    Status s = sync_fn_();
    l.lock();
    syncing_ = false;
    ++syncs_;
    if (s) {
      synced_ = std::max(synced_, target);
    } else {
      error_ = s;
      failed_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
  }
  return error_;
}

void SyncDriver::interval_loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(policy_.interval_ms);
    while (!stop_ && cv_.wait_until(l, deadline) != std::cv_status::timeout) {
    }
    if (stop_) break;
    uint64_t t = issued_;
    if (t > synced_ && error_.is_ok()) {
      l.unlock();
      sync_through(t);
      l.lock();
    }
  }
}

}  // namespace apsis::storage
