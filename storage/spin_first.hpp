// SpinFirst: a mutex that tries a few times before it blocks. The engine's and the shards'
// critical sections last a microsecond or two; two I/O threads writing at once made each
// other sleep on the futex (a context switch and a wake-up, several microseconds each).
#pragma once

namespace apsis::storage {

template <class Mutex>
class SpinFirst {
 public:
  void lock() {
    if (!spun([this] { return m_.try_lock(); })) m_.lock();
  }
  bool try_lock() { return m_.try_lock(); }
  void unlock() { m_.unlock(); }

  void lock_shared() {
    if (!spun([this] { return m_.try_lock_shared(); })) m_.lock_shared();
  }
  bool try_lock_shared() { return m_.try_lock_shared(); }
  void unlock_shared() { m_.unlock_shared(); }

 private:
  static constexpr int spins = 64;  ///< ~2-3 us of pauses

  template <class Attempt>
  static bool spun(Attempt attempt) {
    for (int i = 0; i < spins; ++i) {
      if (attempt()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();  // let the other hyperthread run; less power while spinning
#endif
    }
    return false;
  }

  Mutex m_;
};

}  // namespace apsis::storage
