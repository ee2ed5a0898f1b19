#include "storage/sorted_engine.hpp"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <algorithm>

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
  APSIS_TRY(validate(r, opts_.limits));
  std::string enc = codec::encode(r);
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> g(stripes_[r.id.bytes[63] & 63]);
    APSIS_TRY(sync_->error());
    std::string old;
    Status s = read(r.id, &old);
    codec::Header h;
    if (s && codec::decode_header(old, &h)) {
      bool write = false;
      APSIS_TRY(version_check(h.version, r.version, &write));
      if (!write) return Status::ok();
    } else if (!s && !s.is_not_found()) {
      return s;
    }
    rocksdb::WriteOptions w;
    w.sync = opts_.sync.mode == SyncPolicy::Mode::always;
    APSIS_TRY(from_rocks(db_->Put(w, key_of(r.id), enc)));
    ticket = sync_->ticket();
  }
  return opts_.sync.mode == SyncPolicy::Mode::always ? sync_->error() : sync_->after_write(ticket);
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

Status SortedEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a recovery scan must not evict the working set
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(key_of(opts.begin)); it->Valid(); it->Next()) {
    if (it->key().compare(key_of(opts.end)) > 0) break;
    std::string_view v(it->value().data(), it->value().size());
    codec::Header h;
    if (!codec::decode_header(v, &h) || !matches(opts, h.id, h.version, h.tombstone())) continue;
    Record r;
    if (!codec::decode(v, &r, opts.with_payload)) continue;
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
  return s;
}

}  // namespace apsis::storage
