// BlobIndex: the blob engine's in-memory index, 16 bytes a slot: an 8-byte tag (the id's
// first 8 bytes) and an 8-byte location (file number << 40 | offset; 0 = empty). The full
// 64-byte id stays on disk and is compared there, so tag collisions cost a read, never a
// wrong answer. Open addressing with linear probing, grown at 3/4 load. A tag's home slot is
// its top bits, so slots follow tag order but for probing's short displacements: a listing
// finds the smallest tags from a point on by reading a few slots past it (smallest()).
// Thread safety: none; the engine's lock guards it.
#pragma once

#include <cstdint>
#include <queue>
#include <utility>
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

  explicit BlobIndex(size_t capacity = 1024) : slots_(round_up(capacity), Slot{0, 0}) {
    shift_ = shift_for(slots_.size());
  }

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  size_t bytes() const { return slots_.size() * sizeof(Slot); }
  const std::vector<Slot>& slots() const { return slots_; }

  /// The first occupied slot with this tag for which match(loc) is true, or nullptr.
  template <class F>
  Slot* find(uint64_t tag, F&& match) {
    size_t mask = slots_.size() - 1;
    for (size_t i = home(tag);; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (s.loc == 0) return nullptr;
      if (s.tag == tag && match(s.loc)) return &s;
    }
  }

  /// The location of the first slot with this tag (0 if none): a hint, not a match.
  uint64_t first_with_tag(uint64_t tag) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = home(tag);; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.loc == 0 || s.tag == tag) return s.loc;
    }
  }
  void prefetch_home(uint64_t tag) const { __builtin_prefetch(&slots_[home(tag)]); }

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
      size_t home = this->home(slots_[i].tag);
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
  /// `placed`: the slots sit at their homes as this index places them (else, a snapshot
  /// written before homes were top bits, each is placed again).
  bool adopt(std::vector<Slot> slots, bool placed = true) {
    if (slots.empty() || (slots.size() & (slots.size() - 1))) return false;
    size_ = 0;
    shift_ = shift_for(slots.size());
    if (placed) {
      for (const auto& s : slots) size_ += s.loc != 0;
      slots_ = std::move(slots);
      return true;
    }
    slots_.assign(slots.size(), Slot{0, 0});
    for (const auto& s : slots)
      if (s.loc != 0) place(s.tag, s.loc), ++size_;
    return true;
  }

  /// The up to max + 1 occupied slots with the smallest tags in [from, to], by tag. Reads the
  /// slots from from's home on, until the first empty slot past the home of the last tag
  /// that can still count (every smaller tag sits between its home and that empty slot).
  std::vector<Slot> smallest(uint64_t from, uint64_t to, size_t max) const {
    auto later = [](const Slot& a, const Slot& b) { return a.tag < b.tag; };
    std::priority_queue<Slot, std::vector<Slot>, decltype(later)> heap(later);
    const size_t mask = slots_.size() - 1, start = home(from);
    const size_t last_home = start + ((home(to) - start) & mask);  // unwrapped
    for (size_t u = start; u < start + slots_.size(); ++u) {
      const Slot& s = slots_[u & mask];
      if (s.loc == 0) {
        if (u > last_home) break;
        if (heap.size() > max && u > start + ((home(heap.top().tag) - start) & mask)) break;
        continue;
      }
      if (s.tag < from || s.tag > to) continue;
      if (heap.size() <= max) {
        heap.push(s);
      } else if (s.tag < heap.top().tag) {
        heap.pop();
        heap.push(s);
      }
    }
    std::vector<Slot> out;
    for (; !heap.empty(); heap.pop()) out.push_back(heap.top());
    return {out.rbegin(), out.rend()};
  }

 private:
  static unsigned shift_for(size_t capacity) {
    unsigned bits = 0;
    while ((size_t(1) << bits) < capacity) ++bits;
    return 64 - bits;
  }
  size_t home(uint64_t tag) const { return size_t(tag >> shift_); }
  static size_t round_up(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
  }
  void place(uint64_t tag, uint64_t loc) {
    size_t mask = slots_.size() - 1;
    size_t i = home(tag);
    while (slots_[i].loc != 0) i = (i + 1) & mask;
    slots_[i] = Slot{tag, loc};
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2, Slot{0, 0});
    old.swap(slots_);
    shift_ = shift_for(slots_.size());
    for (const auto& s : old)
      if (s.loc != 0) place(s.tag, s.loc);
  }

  std::vector<Slot> slots_;
  unsigned shift_ = 0;  ///< home(tag) = tag >> shift_: the top log2(capacity) bits
  size_t size_ = 0;
};

}  // namespace apsis::storage
