#include "storage/memory_engine.hpp"

#include <mutex>
#include <vector>

namespace apsis::storage {

Status MemoryEngine::put(const Record& r) {
  APSIS_TRY(validate(r, limits_));
  std::unique_lock<std::shared_mutex> l(mu_);
  auto it = records_.find(r.id);
  if (it != records_.end()) {
    bool write = false;
    APSIS_TRY(version_check(it->second.version, r.version, &write));
    if (!write) return Status::ok();
    bytes_ -= it->second.key.size() + it->second.json.size() + it->second.data.size();
    it->second = r;
  } else {
    records_.emplace(r.id, r);
  }
  bytes_ += r.key.size() + r.json.size() + r.data.size();
  return Status::ok();
}

Status MemoryEngine::get(const Id& id, Record* out) {
  std::shared_lock<std::shared_mutex> l(mu_);
  auto it = records_.find(id);
  if (it == records_.end() || it->second.tombstone || it->second.meta().expired(now_ms()))
    return Status::not_found();
  *out = it->second;
  return Status::ok();
}

Status MemoryEngine::lookup(const Id& id, RecordMeta* out) {
  std::shared_lock<std::shared_mutex> l(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return Status::not_found();
  *out = it->second.meta();
  return Status::ok();
}

Status MemoryEngine::erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) {
  std::unique_lock<std::shared_mutex> l(mu_);
  *erased = 0;
  for (const auto& [id, v] : which) {
    auto it = records_.find(id);
    if (it == records_.end() || (v.stamp != 0 && it->second.version != v)) continue;
    bytes_ -= it->second.key.size() + it->second.json.size() + it->second.data.size();
    records_.erase(it);
    ++*erased;
  }
  return Status::ok();
}

Status MemoryEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  constexpr size_t batch = 256;  // bounded memory: never copy more than this at once
  Id from = opts.begin;
  for (bool first = true;; first = false) {
    std::vector<Record> chunk;
    bool done;
    {
      std::shared_lock<std::shared_mutex> l(mu_);
      auto it = first ? records_.lower_bound(from) : records_.upper_bound(from);
      for (; it != records_.end() && it->first <= opts.end && chunk.size() < batch; ++it) {
        from = it->first;
        if (!matches(opts, it->first, it->second.version, it->second.tombstone)) continue;
        chunk.push_back(it->second);
        if (!opts.with_payload) chunk.back().json.clear(), chunk.back().data.clear();
      }
      done = it == records_.end() || opts.end < it->first;
    }
    for (const auto& r : chunk)
      if (!fn(r)) return Status::ok();
    if (done) return Status::ok();
  }
}

EngineStats MemoryEngine::stats() {
  std::shared_lock<std::shared_mutex> l(mu_);
  EngineStats s;
  s.keys = records_.size();
  s.index_bytes = records_.size() * (sizeof(Record) + 48) + bytes_;
  return s;
}

}  // namespace apsis::storage
