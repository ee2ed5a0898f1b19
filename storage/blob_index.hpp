// BlobIndex: the blob engine's in-memory index, 16 bytes a slot: an 8-byte tag (the id's
// first 8 bytes) and an 8-byte location (file number << 40 | offset; 0 = empty). The full
// 64-byte id stays on disk and is compared there, so tag collisions cost a read, never a
// wrong answer. Open addressing with linear probing, grown at 3/4 load.
// Thread safety: none; the engine's lock guards it.
#pragma once

#include <cstdint>
#include <vector>

namespace apsis::storage {

class BlobIndex {
 public:
  struct Slot {
    uint64_t tag;
    uint64_t loc;  ///< 0 = empty
  };
  static_assert(sizeof(Slot) == 16, "slots must stay 16 bytes");

  static constexpr uint64_t make_loc(uint32_t file, uint64_t offset) {
    return uint64_t(file) << 40 | offset;
  }
  static constexpr uint32_t file_of(uint64_t loc) { return uint32_t(loc >> 40); }
  static constexpr uint64_t offset_of(uint64_t loc) { return loc & ((1ull << 40) - 1); }
  static constexpr uint64_t max_offset = (1ull << 40) - 1;
  static constexpr uint32_t max_file = (1u << 24) - 1;

  explicit BlobIndex(size_t capacity = 1024) : slots_(round_up(capacity), Slot{0, 0}) {}

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  size_t bytes() const { return slots_.size() * sizeof(Slot); }
  const std::vector<Slot>& slots() const { return slots_; }

  /// The first occupied slot with this tag for which match(loc) is true, or nullptr.
  template <class F>
  Slot* find(uint64_t tag, F&& match) {
    size_t mask = slots_.size() - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (s.loc == 0) return nullptr;
      if (s.tag == tag && match(s.loc)) return &s;
    }
  }

  /// The location of the first slot with this tag (0 if none): a hint, not a match.
  uint64_t first_with_tag(uint64_t tag) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.loc == 0 || s.tag == tag) return s.loc;
    }
  }
  void prefetch_home(uint64_t tag) const { __builtin_prefetch(&slots_[tag & (slots_.size() - 1)]); }

  /// Adds a slot (the caller has checked the id is not present). Invalidates Slot pointers.
  void insert(uint64_t tag, uint64_t loc) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    place(tag, loc);
    ++size_;
  }

  /// Removes a slot, shifting later slots of its probe run back (no tombstone slots).
  void erase(Slot* victim) {
    size_t mask = slots_.size() - 1;
    size_t hole = size_t(victim - slots_.data());
    for (size_t i = (hole + 1) & mask; slots_[i].loc != 0; i = (i + 1) & mask) {
      size_t home = slots_[i].tag & mask;
      // Move slot i into the hole if its home is not in (hole, i] (cyclically).
      bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
      if (!stays) {
        slots_[hole] = slots_[i];
        hole = i;
      }
    }
    slots_[hole] = Slot{0, 0};
    --size_;
  }

  /// Adopts a slot array read from a snapshot; false unless its size is a power of two.
  bool adopt(std::vector<Slot> slots) {
    if (slots.empty() || (slots.size() & (slots.size() - 1))) return false;
    size_ = 0;
    for (const auto& s : slots) size_ += s.loc != 0;
    slots_ = std::move(slots);
    return true;
  }

 private:
  static size_t round_up(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
  }
  void place(uint64_t tag, uint64_t loc) {
    size_t mask = slots_.size() - 1;
    size_t i = tag & mask;
    while (slots_[i].loc != 0) i = (i + 1) & mask;
    slots_[i] = Slot{tag, loc};
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2, Slot{0, 0});
    old.swap(slots_);
    for (const auto& s : old)
      if (s.loc != 0) place(s.tag, s.loc);
  }

  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace apsis::storage
