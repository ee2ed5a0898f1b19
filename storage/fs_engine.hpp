// FsEngine (kind "fs"): one file per record under objects/<2 hex>/<2 hex>/<128-hex id>, as
// Elliptics' filesystem backend. A put replaces the file atomically (write a temporary,
// fsync, rename, fsync the directory); the file holds the shared record encoding, so every
// read checks its checksum. Leftover temporaries from a crash are removed at open.
// Thread safety: striped per-id locks make each put's version check and replace atomic.
#pragma once

#include <array>
#include <atomic>
#include <mutex>

#include "storage/engine.hpp"
#include "storage/sync_driver.hpp"

namespace apsis::storage {

class FsEngine final : public Engine {
 public:
  static Status open(const EngineOptions& opts, std::unique_ptr<Engine>* out);
  ~FsEngine() override;
  Status put(const Record& r) override;
  Status get(const Id& id, Record* out) override;
  Status lookup(const Id& id, RecordMeta* out) override;
  Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) override;
  Status iterate(const IterateOptions& opts, const IterateFn& fn) override;
  bool iterates_in_order() const override { return true; }
  Status sync() override;
  EngineStats stats() override;

 private:
  explicit FsEngine(const EngineOptions& opts) : opts_(opts) {}
  std::string dir_of(const Id& id) const;
  Status read(const Id& id, std::string* bytes);
  Status scan_at_open();

  EngineOptions opts_;
  std::string root_;
  std::unique_ptr<FileLock> lock_;
  std::array<std::mutex, 64> stripes_;
  std::atomic<uint64_t> keys_{0};
  std::unique_ptr<SyncDriver> sync_;
};

}  // namespace apsis::storage
