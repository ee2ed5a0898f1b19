// IoPool: the frontends' I/O threads, one io_context each. A connection is placed on one
// context for its whole life, so its handlers never run concurrently and need no strand;
// acceptors and signals live on the first. With the direct path (LocalCoordinator) these
// threads also do the storage work, so a second one lets a node use both cores of a small
// machine without an actor hop.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace apsis {

class IoPool {
 public:
  explicit IoPool(size_t threads) {
    for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
      contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
  }
  ~IoPool() {
    stop();
    join();
  }
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  /// Where acceptors and signal handlers run.
  boost::asio::io_context& main() { return *contexts_.front(); }
  /// Where the next connection runs (round robin).
  boost::asio::io_context& next() { return *contexts_[next_++ % contexts_.size()]; }
  size_t size() const { return contexts_.size(); }

  /// Runs every context but the first on its own thread, and the first on the caller's;
  /// returns when all have stopped.
  void run() {
    for (size_t i = 1; i < contexts_.size(); ++i)
      threads_.emplace_back([c = contexts_[i].get()] { c->run(); });
    contexts_.front()->run();
    join();
  }
  /// Runs every context on a thread of its own (for tests); stop() then join() ends them.
  void run_in_background() {
    for (auto& c : contexts_) threads_.emplace_back([c = c.get()] { c->run(); });
  }
  /// Stops every context once the handlers already posted to it have run (so a close
  /// posted before this still happens).
  void stop() {
    for (auto& c : contexts_) boost::asio::post(*c, [c = c.get()] { c->stop(); });
    guards_.clear();
  }
  void join() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> next_{0};
};

}  // namespace apsis
