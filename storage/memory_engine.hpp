// MemoryEngine: records in an ordered map; nothing touches disk. For tests and
// cache-only namespaces. Thread safety: a shared mutex; iteration copies small batches.
#pragma once

#include <map>
#include <shared_mutex>

#include "storage/engine.hpp"

namespace apsis::storage {

class MemoryEngine final : public Engine {
 public:
  explicit MemoryEngine(const EngineOptions& opts) : limits_(opts.limits) {}
  Status put(const Record& r) override;
  Status get(const Id& id, Record* out) override;
  Status lookup(const Id& id, RecordMeta* out) override;
  Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) override;
  Status iterate(const IterateOptions& opts, const IterateFn& fn) override;
  bool iterates_in_order() const override { return true; }
  Status sync() override { return Status::ok(); }
  EngineStats stats() override;

 private:
  Limits limits_;
  std::shared_mutex mu_;
  std::map<Id, Record> records_;
  uint64_t bytes_ = 0;
};

}  // namespace apsis::storage
