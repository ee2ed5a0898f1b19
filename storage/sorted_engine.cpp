#include "storage/sorted_engine.hpp"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <unordered_map>

#include "storage/engine_dir.hpp"
#include "storage/record_codec.hpp"

namespace apsis::storage {

namespace {

Status from_rocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::ok();
  if (s.IsNotFound()) return Status::not_found();
  if (s.IsCorruption()) return Status::corruption("rocksdb: " + s.ToString());
  if (s.IsInvalidArgument()) return Status::invalid_argument("rocksdb: " + s.ToString());
  if (s.IsBusy() || s.IsTimedOut()) return Status::busy("rocksdb: " + s.ToString());
  return Status::io_error("rocksdb: " + s.ToString());
}

rocksdb::Slice key_of(const Id& id) {
  return rocksdb::Slice(reinterpret_cast<const char*>(id.bytes.data()), Id::size);
}

rocksdb::CompressionType best_compression() {
  auto supported = rocksdb::GetSupportedCompressions();
  for (auto c : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression, rocksdb::kZlibCompression})
    if (std::count(supported.begin(), supported.end(), c)) return c;
  return rocksdb::kNoCompression;
}

}  // namespace

void SortedEngine::DbDeleter::operator()(rocksdb::DB* db) const { delete db; }

SortedEngine::SortedEngine(const EngineOptions& opts) : opts_(opts) {}

Status SortedEngine::open(const EngineOptions& opts, std::unique_ptr<Engine>* out) {
  std::unique_ptr<SortedEngine> e(new SortedEngine(opts));
  APSIS_TRY(claim_dir(opts, &e->lock_));
  rocksdb::Options o;
  o.create_if_missing = true;
  o.compression = best_compression();
  o.IncreaseParallelism(2);
  o.paranoid_checks = true;
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* db = nullptr;
  APSIS_TRY(from_rocks(rocksdb::DB::Open(o, join_path(opts.dir, "db"), &db)));
  e->db_.reset(db);
  rocksdb::DB* raw = db;
  e->sync_ = std::make_unique<SyncDriver>(opts.sync, [raw] { return from_rocks(raw->SyncWAL()); });
  *out = std::move(e);
  return Status::ok();
}

SortedEngine::~SortedEngine() {
  if (!db_) return;
  Status s = sync_->sync_all();
  if (s) s = from_rocks(db_->Close());
  if (!s) opts_.log(LogLevel::error, opts_.dir + ": close: " + s.to_string());
  sync_.reset();
}

Status SortedEngine::read(const Id& id, std::string* bytes) {
  return from_rocks(db_->Get(rocksdb::ReadOptions(), key_of(id), bytes));
}

Status SortedEngine::put(const Record& r) {
  Status s;
  put_batch(&r, 1, &s);
  return s;
}

// One synced RocksDB WriteBatch for the whole batch (RocksDB group-commits it), under the
// stripes of every id in it, taken in order.
void SortedEngine::put_batch(const Record* records, size_t n, Status* results) {
  std::vector<size_t> stripes;
  for (size_t i = 0; i < n; ++i) stripes.push_back(records[i].id.bytes[63] & 63);
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  uint64_t ticket;
  {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (size_t s : stripes) locks.emplace_back(stripes_[s]);
    rocksdb::WriteBatch batch;
    std::vector<size_t> written;
    std::unordered_map<Id, Version, IdHash> in_batch;  // versions written earlier in this batch
    for (size_t i = 0; i < n; ++i) {
      const Record& r = records[i];
      results[i] = validate(r, opts_.limits);
      if (results[i]) results[i] = sync_->error();
      if (!results[i]) continue;
      bool write = true;
      auto it = in_batch.find(r.id);
      std::string old;
      codec::Header h;
      if (it != in_batch.end()) {
        results[i] = version_check(it->second, r.version, &write);
      } else if (Status s = read(r.id, &old); s && codec::decode_header(old, &h)) {
        results[i] = version_check(h.version, r.version, &write);
      } else if (!s && !s.is_not_found()) {
        results[i] = s;
      }
      if (!results[i] || !write) continue;
      batch.Put(key_of(r.id), codec::encode(r));
      in_batch[r.id] = r.version;
      written.push_back(i);
    }
    if (!written.empty()) {
      rocksdb::WriteOptions w;
      w.sync = opts_.sync.mode == SyncPolicy::Mode::always;
      Status s = from_rocks(db_->Write(w, &batch));
      for (size_t i : written) results[i] = s;
    }
    ticket = sync_->ticket(written.size());
  }
  if (opts_.sync.mode == SyncPolicy::Mode::always) return;  // the synced write was the fsync
  sync_->finish(ticket, results, n);
}

Status SortedEngine::get(const Id& id, Record* out) {
  std::string bytes;
  APSIS_TRY(read(id, &bytes));
  Status s = codec::decode(bytes, out);
  if (!s) return Status::corruption(s.message() + " for id " + id.hex());
  if (out->tombstone || out->meta().expired(now_ms())) return Status::not_found();
  return Status::ok();
}

Status SortedEngine::lookup(const Id& id, RecordMeta* out) {
  std::string bytes;
  APSIS_TRY(read(id, &bytes));
  Status s = codec::decode_meta(bytes, out);
  if (!s) return Status::corruption(s.message() + " for id " + id.hex());
  return Status::ok();
}

Status SortedEngine::erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) {
  *erased = 0;
  for (const auto& [id, v] : which) {
    std::lock_guard<std::mutex> g(stripes_[id.bytes[63] & 63]);
    std::string old;
    codec::Header h;
    if (!read(id, &old) || !codec::decode_header(old, &h) || (v.stamp != 0 && h.version != v))
      continue;
    rocksdb::WriteOptions w;
    w.sync = true;
    APSIS_TRY(from_rocks(db_->Delete(w, key_of(id))));
    ++*erased;
  }
  return Status::ok();
}

Status SortedEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a recovery scan must not evict the working set
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(key_of(opts.begin)); it->Valid(); it->Next()) {
    if (it->key().compare(key_of(opts.end)) > 0) break;
    std::string_view v(it->value().data(), it->value().size());
    codec::Header h;
    Record r;
    if (!codec::decode_header(v, &h) || !codec::decode(v, &r, opts.with_payload)) {
      Id id;
      if (opts.on_corrupt && it->key().size() == Id::size) {
        std::memcpy(id.bytes.data(), it->key().data(), Id::size);
        opts.on_corrupt(id);
      }
      continue;
    }
    if (!matches(opts, h.id, h.version, h.tombstone())) continue;
    if (!fn(r)) return Status::ok();
  }
  return from_rocks(it->status());
}

Status SortedEngine::sync() { return sync_->sync_all(); }

Status SortedEngine::compact() {
  return from_rocks(db_->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr));
}

EngineStats SortedEngine::stats() {
  EngineStats s;
  uint64_t v = 0;
  if (db_->GetIntProperty("rocksdb.estimate-num-keys", &v)) s.keys = v;
  if (db_->GetIntProperty("rocksdb.total-sst-files-size", &v)) s.disk_bytes = v;
  if (db_->GetIntProperty("rocksdb.estimate-table-readers-mem", &v)) s.index_bytes = v;
  if (db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &v)) s.index_bytes += v;
  if (db_->GetIntProperty("rocksdb.num-live-versions", &v)) s.files = v;
  s.syncs = sync_->syncs();
  s.synced_writes = sync_->synced();
  return s;
}

}  // namespace apsis::storage
