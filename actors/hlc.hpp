// Hlc: the node's hybrid logical clock. Stamps are physical ms << 16 | a logical counter,
// strictly increasing across every caller, and never behind a stamp already observed (so a
// node whose clock runs slow still orders its writes after the ones it has seen).
// Thread safety: lock-free, for any thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "storage/record.hpp"

namespace apsis {

class Hlc {
 public:
  using physical_clock = uint64_t (*)();  ///< Unix ms
  /// `now`: the physical clock (a simulation's own, in tests).
  explicit Hlc(uint64_t node, physical_clock now = storage::now_ms) : node_(node), now_(now) {}

  /// A new version, newer than every version this clock issued or observed.
  storage::Version next() {
    uint64_t physical = now_() << 16;
    uint64_t last = last_.load(std::memory_order_relaxed);
    for (;;) {
      uint64_t stamp = physical > last ? physical : last + 1;
      if (last_.compare_exchange_weak(last, stamp, std::memory_order_relaxed))
        return {stamp, node_};
    }
  }

  /// Moves the clock past a version seen elsewhere.
  void observe(const storage::Version& v) {
    uint64_t last = last_.load(std::memory_order_relaxed);
    while (v.stamp > last && !last_.compare_exchange_weak(last, v.stamp)) {
    }
  }

  uint64_t node() const { return node_; }

 private:
  const uint64_t node_;
  const physical_clock now_;
  std::atomic<uint64_t> last_{0};
};

}  // namespace apsis
