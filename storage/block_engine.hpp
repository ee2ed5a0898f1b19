// BlockEngine (kind "block"): Electra's layout with its defects fixed. index.apb holds fixed
// 128-byte entries, two per key (written alternately, so a torn entry write leaves the
// previous one); data.apb holds 128-byte blocks (8-byte next pointer + 120 payload bytes)
// chained into records, and a free-block chain. A put writes a new chain, then the entry;
// the old chain's blocks are reused only once the entry pointing away from them is durable.
// The full id is stored, records carry the shared checksummed encoding, and the fsync policy
// is honoured. After an unclean stop, open verifies every chain and rebuilds the free chain.
// Format: docs/storage-format.md. Thread safety: a shared mutex; writes are serialized.
#pragma once

#include <memory>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "storage/engine.hpp"
#include "storage/sync_driver.hpp"

namespace apsis::storage {

class BlockEngine final : public GroupCommitEngine {
 public:
  static constexpr size_t block_size = 128;
  static constexpr size_t block_payload = 120;
  static constexpr size_t entry_size = 128;

  static Status open(const EngineOptions& opts, std::unique_ptr<Engine>* out);
  ~BlockEngine() override;
  Status put(const Record& r) override;
  Status get(const Id& id, Record* out) override;
  Status lookup(const Id& id, RecordMeta* out) override;
  Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) override;
  Status iterate(const IterateOptions& opts, const IterateFn& fn) override;
  Status sync() override;
  EngineStats stats() override;

 private:
  struct Entry {
    uint64_t seq = 0;  ///< 0 = unused copy
    Id id;
    uint64_t first = 0;   ///< first block, 0 = none
    uint32_t length = 0;  ///< encoded record bytes
    Version version;
    int copy = 0;  ///< which of the slot's two copies holds it
  };
  struct Slot {
    uint32_t slot = 0;
    Entry entry;  ///< the current copy
  };

  explicit BlockEngine(const EngineOptions& opts) : opts_(opts) {}
  Status recover();
  /// Checks both files' headers; reads seq_, blocks_, the free chain's head and whether the
  /// last stop was clean.
  Status read_headers(const std::string& ipath, const std::string& dpath, uint64_t* free_head,
                      bool* clean);
  /// Fills map_ and by_slot_ from the index; after an unclean stop, marks the blocks of the
  /// records it keeps in *used and counts the entries it drops in *lost.
  Status load_slots(const std::string& ipath, bool clean, std::vector<bool>* used, uint64_t* lost);
  /// One index entry, if its checksum holds (seq 0: an unused copy).
  static bool decode_entry(std::string_view raw, Entry* e);
  /// Whether e's block chain holds its intact record; marks its blocks used if so.
  bool chain_intact(const Entry& e, std::vector<bool>* used);
  Status write_header(bool clean);
  Status read_chain(const Entry& e, std::string* out, std::vector<uint64_t>* blocks);
  Status write_chain(std::string_view rec, uint64_t* first);
  std::vector<uint64_t> allocate(size_t n);
  void release_pending();
  uint64_t write_batch(const Record* records, size_t n, Status* results) override;
  SyncDriver& driver() override { return *sync_; }
  Status put_locked(const Record& r, const std::string& rec, std::vector<uint64_t>* freed);
  Status read_locked(const Id& id, std::string* bytes);

  EngineOptions opts_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<File> index_;
  std::unique_ptr<File> data_;
  std::shared_mutex mu_;
  std::unordered_map<Id, Slot, IdHash> map_;
  std::vector<Id> by_slot_;
  std::vector<uint64_t> free_;  ///< reusable blocks
  struct Pending {
    uint64_t ticket;
    std::vector<uint64_t> blocks;
  };
  std::vector<Pending> pending_;  ///< freed, reusable once their ticket is durable
  uint64_t blocks_ = 1;           ///< block 0 is the data file header
  uint64_t seq_ = 0;
  std::unique_ptr<SyncDriver> sync_;
};

}  // namespace apsis::storage
