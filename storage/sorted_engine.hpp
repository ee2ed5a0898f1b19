// SortedEngine (kind "sorted"): small, compressible records in sorted, compressed tables
// (Elliptics' "smack"), on RocksDB with LZ4 compression. The key is the 64-byte id, the
// value the shared record encoding (so reads check apsis's checksum too). fsync `always`
// maps to RocksDB's synced writes, which group-commit by themselves.
// Thread safety: striped per-id locks make each put's version check and write atomic.
#pragma once

#include <array>
#include <mutex>

#include "storage/engine.hpp"
#include "storage/sync_driver.hpp"

namespace rocksdb {
class DB;
}

namespace apsis::storage {

class SortedEngine final : public Engine {
 public:
  static Status open(const EngineOptions& opts, std::unique_ptr<Engine>* out);
  ~SortedEngine() override;
  Status put(const Record& r) override;
  void put_batch(const Record* records, size_t n, Status* results) override;
  Status get(const Id& id, Record* out) override;
  Status lookup(const Id& id, RecordMeta* out) override;
  Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) override;
  Status iterate(const IterateOptions& opts, const IterateFn& fn) override;
  bool iterates_in_order() const override { return true; }
  Status sync() override;
  Status compact() override;
  EngineStats stats() override;

 private:
  explicit SortedEngine(const EngineOptions& opts);
  Status read(const Id& id, std::string* bytes);

  EngineOptions opts_;
  std::unique_ptr<FileLock> lock_;
  struct DbDeleter {
    void operator()(rocksdb::DB* db) const;
  };
  std::unique_ptr<rocksdb::DB, DbDeleter> db_;
  std::array<std::mutex, 64> stripes_;
  std::unique_ptr<SyncDriver> sync_;
};

}  // namespace apsis::storage
