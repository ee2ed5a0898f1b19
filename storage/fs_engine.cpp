#include "storage/fs_engine.hpp"

#include <algorithm>

#include "storage/engine_dir.hpp"
#include "storage/record_codec.hpp"

namespace apsis::storage {

namespace {
bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
}  // namespace

Status FsEngine::open(const EngineOptions& opts, std::unique_ptr<Engine>* out) {
  std::unique_ptr<FsEngine> e(new FsEngine(opts));
  APSIS_TRY(claim_dir(opts, &e->lock_));
  e->root_ = join_path(opts.dir, "objects");
  APSIS_TRY(opts.env->make_dirs(e->root_));
  APSIS_TRY(e->scan_at_open());
  Env* env = opts.env;
  std::string dir = opts.dir;
  e->sync_ =
      std::make_unique<SyncDriver>(opts.sync, [env, dir] { return env->sync_filesystem(dir); });
  *out = std::move(e);
  return Status::ok();
}

FsEngine::~FsEngine() {
  if (sync_) {
    Status s = sync_->sync_all();
    if (!s) opts_.log(LogLevel::error, opts_.dir + ": close: " + s.to_string());
  }
}

std::string FsEngine::dir_of(const Id& id) const {
  std::string hex = id.hex();
  return join_path(join_path(root_, hex.substr(0, 2)), hex.substr(2, 2));
}

// Counts records and removes the temporaries a crash left behind.
Status FsEngine::scan_at_open() {
  std::vector<std::string> l1, l2, names;
  APSIS_TRY(opts_.env->list(root_, &l1));
  for (const auto& a : l1) {
    std::string da = join_path(root_, a);
    if (!is_hex(a, 2)) return Status::invalid_argument(da + ": unexpected entry in an fs engine");
    APSIS_TRY(opts_.env->list(da, &l2));
    for (const auto& b : l2) {
      std::string db = join_path(da, b);
      APSIS_TRY(opts_.env->list(db, &names));
      for (const auto& n : names) {
        std::string path = join_path(db, n);
        if (n.find(".tmp.") != std::string::npos) {
          opts_.log(LogLevel::warn, path + ": removed an unfinished write left by a crash");
          APSIS_TRY(opts_.env->remove(path));
        } else if (is_hex(n, 128)) {
          keys_++;
        }
      }
    }
  }
  return Status::ok();
}

Status FsEngine::read(const Id& id, std::string* bytes) {
  Status s = opts_.env->read_all(join_path(dir_of(id), id.hex()), bytes);
  return s.is_not_found() ? Status::not_found() : s;
}

Status FsEngine::put(const Record& r) {
  APSIS_TRY(validate(r, opts_.limits));
  std::string enc = codec::encode(r);
  std::string dir = dir_of(r.id);
  std::string path = join_path(dir, r.id.hex());
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> g(stripes_[r.id.bytes[63] & 63]);
    APSIS_TRY(sync_->error());
    std::string old;
    Status s = read(r.id, &old);
    bool existed = s.is_ok();
    RecordMeta meta;
    if (existed && codec::decode_meta(old, &meta).is_ok()) {
      bool write = false;
      APSIS_TRY(version_check(meta.version, r.version, &write));
      if (!write) return Status::ok();
    } else if (existed) {
      opts_.log(LogLevel::warn, path + ": replacing a corrupt record");
    } else if (!s.is_not_found()) {
      return s;
    }
    bool durable = opts_.sync.mode == SyncPolicy::Mode::always;
    s = opts_.env->write_atomic(path, enc, durable);
    if (s.is_not_found() || (!s && !opts_.env->is_dir(dir))) {
      APSIS_TRY(opts_.env->make_dirs(dir));
      if (durable) APSIS_TRY(opts_.env->sync_dir(root_));
      s = opts_.env->write_atomic(path, enc, durable);
    }
    APSIS_TRY(s);
    if (!existed) keys_++;
    ticket = sync_->ticket();
  }
  // `always` already fsynced above; `interval` syncs in the background.
  return opts_.sync.mode == SyncPolicy::Mode::always ? sync_->error() : sync_->after_write(ticket);
}

Status FsEngine::get(const Id& id, Record* out) {
  std::string bytes;
  APSIS_TRY(read(id, &bytes));
  Status s = codec::decode(bytes, out);
  if (!s) return Status::corruption(s.message() + " in " + join_path(dir_of(id), id.hex()));
  if (out->id != id) return Status::corruption("record under the wrong name: " + id.hex());
  if (out->tombstone || out->meta().expired(now_ms())) return Status::not_found();
  return Status::ok();
}

Status FsEngine::lookup(const Id& id, RecordMeta* out) {
  std::string bytes;
  APSIS_TRY(read(id, &bytes));
  Status s = codec::decode_meta(bytes, out);
  if (!s) return Status::corruption(s.message() + " in " + join_path(dir_of(id), id.hex()));
  return Status::ok();
}

Status FsEngine::erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) {
  *erased = 0;
  for (const auto& [id, v] : which) {
    std::lock_guard<std::mutex> g(stripes_[id.bytes[63] & 63]);
    std::string bytes;
    RecordMeta meta;
    if (!read(id, &bytes) || !codec::decode_meta(bytes, &meta) ||
        (v.stamp != 0 && meta.version != v))
      continue;
    std::string dir = dir_of(id);
    APSIS_TRY(opts_.env->remove(join_path(dir, id.hex())));
    APSIS_TRY(opts_.env->sync_dir(dir));
    keys_--;
    ++*erased;
  }
  return Status::ok();
}

Status FsEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  // Directory names are the id's leading hex digits: walking them sorted yields id order
  // and lets whole directories outside [begin, end] be skipped.
  std::string lo = opts.begin.hex(), hi = opts.end.hex();
  std::vector<std::string> l1, l2, names;
  APSIS_TRY(opts_.env->list(root_, &l1));
  std::sort(l1.begin(), l1.end());
  for (const auto& a : l1) {
    if (a < lo.substr(0, 2) || a > hi.substr(0, 2)) continue;
    std::string da = join_path(root_, a);
    if (!opts_.env->list(da, &l2)) continue;
    std::sort(l2.begin(), l2.end());
    for (const auto& b : l2) {
      if (a + b < lo.substr(0, 4) || a + b > hi.substr(0, 4)) continue;
      std::string db = join_path(da, b);
      if (!opts_.env->list(db, &names)) continue;
      std::sort(names.begin(), names.end());
      for (const auto& n : names) {
        Id id;
        if (!Id::from_hex(n, &id) || id < opts.begin || opts.end < id) continue;
        std::string bytes;
        Record r;
        if (!read(id, &bytes)) continue;
        if (!codec::decode(bytes, &r, opts.with_payload)) {
          if (opts.on_corrupt) opts.on_corrupt(id);
          continue;
        }
        if (!matches(opts, r.id, r.version, r.tombstone)) continue;
        if (!fn(r)) return Status::ok();
      }
    }
  }
  return Status::ok();
}

Status FsEngine::sync() { return sync_->sync_all(); }

EngineStats FsEngine::stats() {
  EngineStats s;
  s.keys = keys_;
  s.files = keys_;
  s.syncs = sync_->syncs();
  s.synced_writes = sync_->synced();
  return s;
}

}  // namespace apsis::storage
