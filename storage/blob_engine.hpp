// BlobEngine (kind "blob", the default): append-only data files of checksummed records
// (eblob/Bitcask lineage) and a compact in-memory index (BlobIndex, 16 bytes a slot).
// - The active file is preallocated and mapped: a put is a memcpy into the page cache,
//   so a killed process loses nothing; the fsync policy decides when it reaches the disk.
// - Files rotate at blob_file_size; a sealed file is fsynced (unless policy `never`).
// - Index snapshots (index.snap) at close and every snapshot_every_bytes: restart loads the
//   snapshot and replays only what was written after it.
// - Compaction copies the live records of a sealed file whose dead fraction passes
//   compact_dead_fraction into the active file, one file at a time (extra disk: one file's
//   live bytes), beside live writes; a background thread starts it.
// - At open, torn or corrupt bytes are skipped or cut with a log line saying what was lost.
// Format: docs/storage-format.md. Thread safety: all methods, from any thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "storage/blob_index.hpp"
#include "storage/engine.hpp"
#include "storage/record_codec.hpp"
#include "storage/spin_first.hpp"
#include "storage/sync_driver.hpp"

namespace apsis::storage {

class BlobEngine final : public GroupCommitEngine {
 public:
  static Status open(const EngineOptions& opts, std::unique_ptr<Engine>* out);
  ~BlobEngine() override;

  Status put(const Record& r) override;
  Status get(const Id& id, Record* out) override;
  void prefetch(const std::vector<const Id*>& ids, bool whole) override;
  Status lookup(const Id& id, RecordMeta* out) override;
  Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) override;
  Status iterate(const IterateOptions& opts, const IterateFn& fn) override;
  /// Reads the index's slots near begin's home (it is kept in tag order): cost by the page.
  Status page(Id begin, Id end, size_t max, Page* out) override;
  /// Walks the index's slots: the cursor is a slot number.
  Status scrub(uint64_t* cursor, size_t max, ScrubStep* out) override;
  Status sync() override;
  Status compact() override;
  EngineStats stats() override;
  /// Writes an index snapshot now.
  Status checkpoint();

 private:
  struct DataFile {
    uint32_t no = 0;
    std::unique_ptr<File> file;
    uint64_t end = 0;      ///< bytes of file header + intact records
    uint64_t dead = 0;     ///< bytes of superseded records and skipped corruption
    bool durable = false;  ///< fsynced since its last write
  };
  using FilePtr = std::shared_ptr<DataFile>;

  explicit BlobEngine(const EngineOptions& opts);
  Status recover();
  Status load_snapshot(std::vector<uint64_t>* replay_from);
  template <class F>
  void scan(DataFile& f, std::string_view bytes, uint64_t start, F&& visit, bool report);
  void apply_replayed(const codec::Header& h, uint64_t loc);

  uint64_t write_batch(const Record* records, size_t n, Status* results) override;
  SyncDriver& driver() override { return *sync_; }
  Status put_locked(const Id& id, std::string_view rec);
  DataFile* file_locked(uint32_t no) const;
  BlobIndex::Slot* find_locked(const Id& id);
  Status header_locked(uint64_t loc, codec::Header* h);
  Status append_locked(std::string_view rec, uint64_t* loc);
  Status rotate_locked(uint64_t need);
  Status create_file_locked(uint32_t no, uint64_t capacity, FilePtr* out);
  Status read_record(const Id& id, FilePtr* f, uint64_t* off, codec::Header* h,
                     std::string_view* view, std::string* scratch);
  Status sync_active();
  Status compact_file(uint32_t no);
  void maintenance_loop();
  void log(LogLevel level, const std::string& msg) const { opts_.log(level, msg); }

  EngineOptions opts_;
  std::unique_ptr<FileLock> lock_;
  using Mutex = SpinFirst<std::shared_mutex>;
  Mutex mu_;
  BlobIndex index_;
  std::vector<FilePtr> files_;  ///< by file number; null = absent
  uint32_t active_ = 0;
  uint64_t bytes_since_snapshot_ = 0;
  uint64_t compactions_ = 0;
  std::unique_ptr<SyncDriver> sync_;

  std::mutex compact_mu_;   ///< one compaction at a time
  std::mutex snapshot_mu_;  ///< one checkpoint at a time
  std::mutex maint_mu_;
  std::condition_variable maint_cv_;
  bool stopping_ = false;
  std::thread maint_;
};

}  // namespace apsis::storage
