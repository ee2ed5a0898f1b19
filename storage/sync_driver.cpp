#include "storage/sync_driver.hpp"

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
  if (interval_thread_.joinable()) interval_thread_.join();
}

uint64_t SyncDriver::ticket() {
  std::lock_guard<std::mutex> g(mu_);
  return ++issued_;
}

Status SyncDriver::after_write(uint64_t ticket) {
  if (policy_.mode == SyncPolicy::Mode::always) return sync_through(ticket);
  return error();
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
