#include "storage/blob_engine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "storage/engine_dir.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "index snapshots store slots in host order, which must be little-endian");

namespace apsis::storage {

namespace {

constexpr uint64_t file_magic = 0x31424f4c42535041ull;     // "APSBLOB1"
constexpr uint64_t snap_magic = 0x32504e5342535041ull;     // "APSBSNP2": slots at top-bit homes
constexpr uint64_t snap_magic_v1 = 0x31504e5342535041ull;  // "APSBSNP1": placed again at load
constexpr size_t file_header_size = 32;
constexpr char snapshot_name[] = "index.snap";
// Compaction moves records in runs of at most this many records or bytes under one lock.
constexpr size_t compact_run = 256;
constexpr size_t compact_run_bytes = 1 << 20;

std::string data_name(uint32_t no) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "data-%08u.blob", no);
  return buf;
}

bool parse_data_name(const std::string& name, uint32_t* no) {
  unsigned n = 0;
  char tail[8] = {0};
  if (name.size() != 18 || std::sscanf(name.c_str(), "data-%8u.%5s", &n, tail) != 2 ||
      std::strcmp(tail, "blob") != 0 || n == 0 || n > BlobIndex::max_file)
    return false;
  *no = n;
  return true;
}

std::string file_header(uint32_t no) {
  std::string h(file_header_size, '\0');
  codec::put_u64(h.data(), file_magic);
  codec::put_u32(h.data() + 8, no);
  codec::put_u64(h.data() + 16, now_ms());
  codec::put_u64(h.data() + 24, codec::hash64(std::string_view(h.data(), 24)));
  return h;
}

bool file_header_ok(std::string_view h, uint32_t no) {
  return h.size() >= file_header_size && codec::get_u64(h.data()) == file_magic &&
         codec::get_u32(h.data() + 8) == no &&
         codec::get_u64(h.data() + 24) == codec::hash64(h.substr(0, 24));
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

/// An intact record at off: header consistent and checksum right, within bytes.
bool intact_at(std::string_view bytes, uint64_t off, codec::Header* h) {
  if (off + codec::header_size > bytes.size()) return false;
  std::string_view rest = bytes.substr(off);
  return codec::decode_header(rest, h).is_ok() && codec::checksum_ok(rest, *h);
}

}  // namespace

BlobEngine::BlobEngine(const EngineOptions& opts) : opts_(opts) {}

Status BlobEngine::open(const EngineOptions& opts, std::unique_ptr<Engine>* out) {
  if (opts.blob_file_size < 4096 || opts.blob_file_size > BlobIndex::max_offset)
    return Status::invalid_argument("blob_file_size must be between 4 KiB and 1 TiB");
  std::unique_ptr<BlobEngine> e(new BlobEngine(opts));
  APSIS_TRY(claim_dir(opts, &e->lock_));
  APSIS_TRY(e->recover());
  BlobEngine* raw = e.get();
  e->sync_ = std::make_unique<SyncDriver>(opts.sync, [raw] { return raw->sync_active(); });
  e->maint_ = std::thread([raw] { raw->maintenance_loop(); });
  *out = std::move(e);
  return Status::ok();
}

BlobEngine::~BlobEngine() {
  if (!maint_.joinable()) return;  // open() failed: nothing to close
  {
    std::lock_guard<std::mutex> g(maint_mu_);
    stopping_ = true;
  }
  maint_cv_.notify_all();
  maint_.join();
  Status s = sync_->sync_all();
  if (s) {
    std::unique_lock<Mutex> l(mu_);
    DataFile& a = *files_[active_];
    s = a.file->truncate(a.end);  // drop the preallocated tail
    if (s) s = a.file->sync();
  }
  if (s) s = checkpoint();
  if (!s) log(LogLevel::error, opts_.dir + ": close: " + s.to_string());
  sync_.reset();
}

// -- lookups under mu_ ------------------------------------------------------

// Under mu_ no file goes away, so a raw pointer is enough (a shared_ptr copy here would
// bounce its reference count between threads on every probe).
BlobEngine::DataFile* BlobEngine::file_locked(uint32_t no) const {
  return no < files_.size() ? files_[no].get() : nullptr;
}

BlobIndex::Slot* BlobEngine::find_locked(const Id& id) {
  return index_.find(id.prefix(), [&](uint64_t loc) {
    DataFile* f = file_locked(BlobIndex::file_of(loc));
    std::string_view v;
    std::string scratch;
    return f && f->file->read(BlobIndex::offset_of(loc) + 56, Id::size, &v, &scratch).is_ok() &&
           std::memcmp(v.data(), id.bytes.data(), Id::size) == 0;
  });
}

Status BlobEngine::header_locked(uint64_t loc, codec::Header* h) {
  DataFile* f = file_locked(BlobIndex::file_of(loc));
  if (!f) return Status::corruption("index points at a missing file");
  std::string_view v;
  std::string scratch;
  APSIS_TRY(f->file->read(BlobIndex::offset_of(loc), codec::header_size, &v, &scratch));
  return codec::decode_header(v, h);
}

// -- writes -------------------------------------------------------------------

Status BlobEngine::put(const Record& r) {
  Status s;
  put_batch(&r, 1, &s);
  return s;
}

// One lock and one ticket for the whole batch.
uint64_t BlobEngine::write_batch(const Record* records, size_t n, Status* results) {
  thread_local std::string buf;
  thread_local std::vector<size_t> offsets;
  offsets.assign(n + 1, 0);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    results[i] = validate(records[i], opts_.limits);
    offsets[i] = total;
    if (results[i]) total += codec::encoded_size(records[i]);
  }
  offsets[n] = total;
  buf.resize(total);
  for (size_t i = 0; i < n; ++i)
    if (results[i]) codec::encode(records[i], buf.data() + offsets[i]);
  uint64_t ticket = 0;
  bool wake = false;
  {
    std::unique_lock<Mutex> l(mu_);
    uint32_t before = active_;
    size_t written = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!results[i]) continue;
      std::string_view rec(buf.data() + offsets[i], codec::encoded_size(records[i]));
      results[i] = put_locked(records[i].id, rec);
      written += results[i].is_ok();
    }
    ticket = sync_->ticket(written);
    wake = before != active_ || bytes_since_snapshot_ >= opts_.snapshot_every_bytes;
  }
  if (wake) maint_cv_.notify_all();
  if (buf.capacity() > (4u << 20)) std::string().swap(buf);  // a large value: not kept per thread
  return ticket;
}

Status BlobEngine::put_locked(const Id& id, std::string_view rec) {
  APSIS_TRY(sync_->error());
  BlobIndex::Slot* slot = find_locked(id);
  codec::Header old, incoming;
  APSIS_TRY(codec::decode_header(rec, &incoming));
  bool old_ok = slot && header_locked(slot->loc, &old).is_ok();
  if (old_ok) {
    bool write = false;
    APSIS_TRY(version_check(old.version, incoming.version, &write));
    if (!write) return Status::ok();
  }
  uint64_t loc = 0;
  APSIS_TRY(append_locked(rec, &loc));
  if (slot) {
    if (old_ok) files_[BlobIndex::file_of(slot->loc)]->dead += old.total_len;
    slot->loc = loc;
  } else {
    index_.insert(id.prefix(), loc);
  }
  return Status::ok();
}

Status BlobEngine::append_locked(std::string_view rec, uint64_t* loc) {
  DataFile* a = files_[active_].get();
  uint64_t cap = std::max<uint64_t>(opts_.blob_file_size, a->end);
  if (a->end + rec.size() > cap && a->end > file_header_size) {
    APSIS_TRY(rotate_locked(rec.size()));
    a = files_[active_].get();
  }
  APSIS_TRY(a->file->write(a->end, rec));
  *loc = BlobIndex::make_loc(a->no, a->end);
  a->end += rec.size();
  a->durable = false;
  bytes_since_snapshot_ += rec.size();
  return Status::ok();
}

Status BlobEngine::rotate_locked(uint64_t need) {
  DataFile& a = *files_[active_];
  if (active_ >= BlobIndex::max_file) return Status::io_error("blob: out of file numbers");
  APSIS_TRY(a.file->truncate(a.end));
  if (opts_.sync.mode != SyncPolicy::Mode::never) {
    APSIS_TRY(a.file->sync());
    a.durable = true;
  }
  FilePtr next;
  APSIS_TRY(create_file_locked(active_ + 1, std::max(opts_.blob_file_size, need + file_header_size),
                               &next));
  active_ = next->no;
  return Status::ok();
}

Status BlobEngine::create_file_locked(uint32_t no, uint64_t capacity, FilePtr* out) {
  auto f = std::make_shared<DataFile>();
  f->no = no;
  std::string path = join_path(opts_.dir, data_name(no));
  APSIS_TRY(opts_.env->open(path, true, &f->file));
  APSIS_TRY(f->file->truncate(0));
  APSIS_TRY(f->file->map(capacity, true));
  APSIS_TRY(f->file->write(0, file_header(no)));
  f->end = file_header_size;
  if (opts_.sync.mode != SyncPolicy::Mode::never) {
    APSIS_TRY(f->file->sync());
    APSIS_TRY(opts_.env->sync_dir(opts_.dir));
  }
  if (files_.size() <= no) files_.resize(no + 1);
  files_[no] = f;
  *out = f;
  return Status::ok();
}

Status BlobEngine::sync_active() {
  FilePtr a;
  {
    std::shared_lock<Mutex> l(mu_);
    a = files_[active_];
  }
  return a->file->sync();
}

Status BlobEngine::sync() { return sync_->sync_all(); }

// -- reads --------------------------------------------------------------------

Status BlobEngine::read_record(const Id& id, FilePtr* f, uint64_t* off, codec::Header* h,
                               std::string_view* view, std::string* scratch) {
  {
    std::shared_lock<Mutex> l(mu_);
    BlobIndex::Slot* slot = find_locked(id);
    if (!slot) return Status::not_found();
    *f = files_[BlobIndex::file_of(slot->loc)];
    *off = BlobIndex::offset_of(slot->loc);
  }
  // Records never change once written and *f keeps the mapping alive: no lock needed.
  auto where = [&] { return data_name((*f)->no) + " at offset " + std::to_string(*off); };
  APSIS_TRY((*f)->file->read(*off, codec::header_size, view, scratch));
  Status s = codec::decode_header(*view, h);
  if (s) s = (*f)->file->read(*off, h->total_len, view, scratch);
  if (s && !codec::checksum_ok(*view, *h)) s = Status::corruption("record checksum mismatch");
  if (!s) return Status::corruption(s.message() + " in " + where());
  return Status::ok();
}

// Asks for every cache line of [p, p + n).
static void prefetch_bytes(const char* p, size_t n) {
  for (uintptr_t a = uintptr_t(p) & ~uintptr_t(63); a < uintptr_t(p) + n; a += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(a));
}

// Two passes, so that the cache misses of a batch overlap: every id's index slot, then
// every record those slots point at (its header, or for gets its first 256 bytes: the
// whole of a small record, which the checksum reads).
void BlobEngine::prefetch(const std::vector<const Id*>& ids, bool whole) {
  // Only a hint: while a writer holds the lock, waiting for it (a futex sleep and a
  // context switch) would cost more than the misses it saves.
  std::shared_lock<Mutex> lock(mu_, std::try_to_lock);
  if (!lock) return;
  for (const Id* id : ids) index_.prefetch_home(id->prefix());
  for (const Id* id : ids) {
    uint64_t loc = index_.first_with_tag(id->prefix());
    DataFile* f = loc ? file_locked(BlobIndex::file_of(loc)) : nullptr;
    std::string_view v;
    std::string scratch;
    if (f && f->file->read(BlobIndex::offset_of(loc), codec::header_size, &v, &scratch).is_ok())
      prefetch_bytes(v.data(), whole ? 256 : codec::header_size);
  }
}

Status BlobEngine::get(const Id& id, Record* out) {
  FilePtr f;
  uint64_t off;
  codec::Header h;
  std::string_view view;
  std::string scratch;
  APSIS_TRY(read_record(id, &f, &off, &h, &view, &scratch));
  if (h.tombstone() || (h.expiry_ms && h.expiry_ms <= now_ms())) return Status::not_found();
  codec::fill(h, view, out);  // read_record checked the checksum
  return Status::ok();
}

Status BlobEngine::lookup(const Id& id, RecordMeta* out) {
  FilePtr f;
  uint64_t off;
  codec::Header h;
  std::string_view view;
  std::string scratch;
  APSIS_TRY(read_record(id, &f, &off, &h, &view, &scratch));
  *out = codec::meta_of(h, view);
  return Status::ok();
}

// -- scanning -----------------------------------------------------------------

// Visits every intact record of bytes from start on. A corrupt stretch is skipped up to
// the next intact record; a corrupt or torn tail ends the scan. f.end becomes the end of
// the last intact record. With report, what was skipped or cut is logged and counted dead.
template <class F>
void BlobEngine::scan(DataFile& f, std::string_view bytes, uint64_t start, F&& visit, bool report) {
  const char magic[4] = {'A', 'P', 'S', 'R'};
  uint64_t off = start;
  f.end = start;
  codec::Header h;
  while (off < bytes.size()) {
    if (intact_at(bytes, off, &h)) {
      visit(off, h, bytes.substr(off, h.total_len));
      off += h.total_len;
      f.end = off;
      continue;
    }
    // Resync: the next offset holding an intact record.
    uint64_t next = off + 1;
    for (;;) {
      const void* hit = next < bytes.size()
                            ? memmem(bytes.data() + next, bytes.size() - next, magic, sizeof magic)
                            : nullptr;
      if (!hit) {
        next = bytes.size();
        break;
      }
      next = uint64_t(static_cast<const char*>(hit) - bytes.data());
      if (intact_at(bytes, next, &h)) break;
      ++next;
    }
    if (next == bytes.size()) {  // the tail
      if (report && !all_zero(bytes.substr(off)))
        log(LogLevel::warn, opts_.dir + "/" + data_name(f.no) + ": cut " +
                                std::to_string(bytes.size() - off) + " bytes at offset " +
                                std::to_string(off) + ": torn or corrupt record(s) lost");
      return;
    }
    if (report) {
      log(LogLevel::warn, opts_.dir + "/" + data_name(f.no) + ": skipped " +
                              std::to_string(next - off) + " corrupt bytes at offset " +
                              std::to_string(off) + ": the record(s) there are lost");
      f.dead += next - off;
    }
    off = next;
  }
}

void BlobEngine::apply_replayed(const codec::Header& h, uint64_t loc) {
  BlobIndex::Slot* slot = find_locked(h.id);
  if (!slot) {
    index_.insert(h.id.prefix(), loc);
    return;
  }
  codec::Header old;
  if (!header_locked(slot->loc, &old).is_ok()) {
    slot->loc = loc;
    return;
  }
  // The newer version wins wherever the records sit (compaction copies keep theirs).
  if (old.version < h.version) {
    files_[BlobIndex::file_of(slot->loc)]->dead += old.total_len;
    slot->loc = loc;
  } else if (slot->loc != loc) {
    files_[BlobIndex::file_of(loc)]->dead += h.total_len;
  }
}

// -- open ---------------------------------------------------------------------

Status BlobEngine::recover() {
  std::vector<std::string> names;
  APSIS_TRY(opts_.env->list(opts_.dir, &names));
  std::vector<uint32_t> numbers;
  for (const auto& n : names) {
    uint32_t no;
    if (parse_data_name(n, &no)) numbers.push_back(no);
  }
  std::sort(numbers.begin(), numbers.end());

  // Phase 1: check every file header before changing anything.
  std::vector<uint32_t> torn;
  for (uint32_t no : numbers) {
    auto f = std::make_shared<DataFile>();
    f->no = no;
    std::string path = join_path(opts_.dir, data_name(no));
    APSIS_TRY(opts_.env->open(path, false, &f->file));
    uint64_t size = 0;
    APSIS_TRY(f->file->size(&size));
    std::string_view head;
    std::string scratch;
    if (size >= file_header_size) APSIS_TRY(f->file->read(0, file_header_size, &head, &scratch));
    if (!file_header_ok(head, no)) {
      bool newest = no == numbers.back();
      if (newest && (size < file_header_size || all_zero(head))) {
        torn.push_back(no);  // created, never written: a crash during rotation
        continue;
      }
      return Status::corruption(path + ": not an apsis blob data file (bad file header)");
    }
    if (size > file_header_size) APSIS_TRY(f->file->map(size, false));
    f->end = size;
    if (files_.size() <= no) files_.resize(no + 1);
    files_[no] = std::move(f);
  }
  for (uint32_t no : torn) {
    log(LogLevel::warn, opts_.dir + "/" + data_name(no) + ": removed, created but never written");
    APSIS_TRY(opts_.env->remove(join_path(opts_.dir, data_name(no))));
    numbers.pop_back();
  }

  // Phase 2: the snapshot, if it matches the files; phase 3: replay what it lacks.
  std::vector<uint64_t> replay_from(files_.size(), file_header_size);
  APSIS_TRY(load_snapshot(&replay_from));
  uint64_t replayed = 0;
  for (uint32_t no : numbers) {
    DataFile& f = *files_[no];
    uint64_t size = f.end;
    std::string_view bytes;
    std::string scratch;
    APSIS_TRY(f.file->read(0, size, &bytes, &scratch));
    scan(
        f, bytes, replay_from[no],
        [&](uint64_t off, const codec::Header& h, std::string_view) {
          apply_replayed(h, BlobIndex::make_loc(no, off));
          ++replayed;
        },
        true);
    if (f.end < size) APSIS_TRY(f.file->truncate(f.end));
    f.durable = true;
  }
  if (replayed)
    log(LogLevel::info, opts_.dir + ": replayed " + std::to_string(replayed) + " records");

  // The newest file becomes the active one.
  if (numbers.empty()) {
    FilePtr f;
    APSIS_TRY(create_file_locked(1, opts_.blob_file_size, &f));
    active_ = 1;
    return Status::ok();
  }
  active_ = numbers.back();
  DataFile& a = *files_[active_];
  return a.file->map(std::max(opts_.blob_file_size, a.end), true);
}

Status BlobEngine::load_snapshot(std::vector<uint64_t>* replay_from) {
  std::string path = join_path(opts_.dir, snapshot_name);
  if (!opts_.env->exists(path)) return Status::ok();
  std::string snap;
  APSIS_TRY(opts_.env->read_all(path, &snap));
  auto discard = [&](const std::string& why) {
    log(LogLevel::warn, path + ": ignored (" + why + "); replaying every data file");
    index_ = BlobIndex();
    std::fill(replay_from->begin(), replay_from->end(), file_header_size);
    return Status::ok();
  };
  const uint64_t magic = snap.size() < 32 ? 0 : codec::get_u64(snap.data());
  if (magic != snap_magic && magic != snap_magic_v1) return discard("bad header");
  uint64_t capacity = codec::get_u64(snap.data() + 8);
  uint32_t nfiles = codec::get_u32(snap.data() + 16);
  uint64_t expect = 24 + uint64_t(nfiles) * 24 + capacity * sizeof(BlobIndex::Slot) + 8;
  if (capacity > (1ull << 36) || snap.size() != expect) return discard("wrong size");
  std::string_view body(snap.data(), snap.size() - 8);
  if (codec::hash64(body) != codec::get_u64(snap.data() + body.size()))
    return discard("checksum mismatch");
  std::vector<uint64_t> ends(files_.size(), 0);
  const char* p = snap.data() + 24;
  for (uint32_t i = 0; i < nfiles; ++i, p += 24) {
    uint32_t no = codec::get_u32(p);
    uint64_t end = codec::get_u64(p + 8);
    DataFile* f = file_locked(no);
    if (!f) return discard(data_name(no) + " is missing");
    if (f->end < end) return discard(data_name(no) + " is shorter than the snapshot says");
    ends[no] = end;
  }
  std::vector<BlobIndex::Slot> slots(capacity);
  std::memcpy(slots.data(), p, capacity * sizeof(BlobIndex::Slot));
  for (const auto& s : slots) {
    if (s.loc == 0) continue;
    uint32_t no = BlobIndex::file_of(s.loc);
    if (no >= ends.size() || BlobIndex::offset_of(s.loc) + codec::header_size > ends[no])
      return discard("an entry points outside the data files");
  }
  if (!index_.adopt(std::move(slots), magic == snap_magic)) return discard("bad slot count");
  p = snap.data() + 24;
  for (uint32_t i = 0; i < nfiles; ++i, p += 24) {
    uint32_t no = codec::get_u32(p);
    files_[no]->dead = codec::get_u64(p + 16);
    (*replay_from)[no] = ends[no];
  }
  log(LogLevel::info, path + ": loaded " + std::to_string(index_.size()) + " entries");
  return Status::ok();
}

Status BlobEngine::checkpoint() {
  std::lock_guard<std::mutex> g(snapshot_mu_);
  std::string snap;
  std::vector<FilePtr> to_sync;
  {
    std::shared_lock<Mutex> l(mu_);
    std::vector<const DataFile*> live;
    for (const auto& f : files_)
      if (f) live.push_back(f.get());
    const auto& slots = index_.slots();
    snap.resize(24 + live.size() * 24 + slots.size() * sizeof(BlobIndex::Slot) + 8);
    char* p = snap.data();
    codec::put_u64(p, snap_magic);
    codec::put_u64(p + 8, slots.size());
    codec::put_u32(p + 16, uint32_t(live.size()));
    codec::put_u32(p + 20, 0);
    p += 24;
    for (const DataFile* f : live) {
      codec::put_u32(p, f->no);
      codec::put_u32(p + 4, 0);
      codec::put_u64(p + 8, f->end);
      codec::put_u64(p + 16, f->dead);
      p += 24;
    }
    std::memcpy(p, slots.data(), slots.size() * sizeof(BlobIndex::Slot));
    for (const auto& f : files_)
      if (f && !f->durable && f->no != active_) to_sync.push_back(f);
    bytes_since_snapshot_ = 0;
  }
  // The snapshot may only point at durable bytes.
  for (const auto& f : to_sync) {
    APSIS_TRY(f->file->sync());
    f->durable = true;
  }
  APSIS_TRY(sync_->sync_all());
  std::string_view body(snap.data(), snap.size() - 8);
  codec::put_u64(snap.data() + body.size(), codec::hash64(body));
  return opts_.env->write_atomic(join_path(opts_.dir, snapshot_name), snap, true);
}

// The index forgets the records and their bytes count as dead; a snapshot then makes that
// durable (replay starts after it, so the bytes are never read back).
Status BlobEngine::erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) {
  *erased = 0;
  {
    std::unique_lock<Mutex> l(mu_);
    for (const auto& [id, v] : which) {
      BlobIndex::Slot* slot = find_locked(id);
      codec::Header h;
      if (!slot || !header_locked(slot->loc, &h).is_ok() || (v.stamp != 0 && h.version != v))
        continue;
      files_[BlobIndex::file_of(slot->loc)]->dead += h.total_len;
      index_.erase(slot);
      ++*erased;
    }
  }
  return *erased ? checkpoint() : Status::ok();
}

// -- iteration and compaction --------------------------------------------------

Status BlobEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  bool stop = false;
  for (uint32_t no = 1; !stop; ++no) {
    FilePtr f;
    uint64_t end = 0;
    {
      std::shared_lock<Mutex> l(mu_);
      while (no < files_.size() && !files_[no]) ++no;
      if (no >= files_.size()) break;
      f = files_[no];
      end = f->end;
    }
    std::string_view bytes;
    std::string scratch;
    APSIS_TRY(f->file->read(0, end, &bytes, &scratch));
    DataFile shadow;  // scan() records its end here, not in the live file
    shadow.no = no;
    scan(
        shadow, bytes, file_header_size,
        [&](uint64_t off, const codec::Header& h, std::string_view rec) {
          if (stop || !matches(opts, h.id, h.version, h.tombstone())) return;
          {
            std::shared_lock<Mutex> l(mu_);
            BlobIndex::Slot* slot = find_locked(h.id);
            if (!slot || slot->loc != BlobIndex::make_loc(no, off)) return;  // superseded
          }
          Record r;
          if (codec::decode(rec, &r, opts.with_payload).is_ok()) stop = !fn(r);
        },
        false);
  }
  return Status::ok();
}

Status BlobEngine::page(Id begin, Id end, size_t max, Page* out) {
  out->records.clear();
  out->more = false;
  max = std::max<size_t>(max, 1);
  std::shared_lock<Mutex> l(mu_);
  std::vector<BlobIndex::Slot> slots = index_.smallest(begin.prefix(), end.prefix(), max);
  if (slots.size() > max) {
    // The page ends before the largest tag: its ids start the next one. (Were all max + 1
    // of one tag, which SHA-512 ids never are, the page takes them and moves past it.)
    const uint64_t cut = slots.back().tag;
    const bool one_tag = slots.front().tag == cut;
    out->more = !one_tag || cut != UINT64_MAX;
    out->next = Id::at_prefix(one_tag ? cut + 1 : cut);
    while (!one_tag && slots.back().tag == cut) slots.pop_back();
  }
  std::string_view v;
  std::string scratch;
  for (const auto& slot : slots) {
    codec::Header h;
    DataFile* f = file_locked(BlobIndex::file_of(slot.loc));
    if (!f || !header_locked(slot.loc, &h) ||
        !f->file->read(BlobIndex::offset_of(slot.loc), codec::header_size + h.key_len, &v,
                       &scratch))
      continue;  // unreadable: scrub's to report
    if (h.id < begin || end < h.id) continue;
    out->records.push_back(codec::meta_of(h, v));
  }
  std::sort(out->records.begin(), out->records.end(),
            [](const RecordMeta& a, const RecordMeta& b) { return a.id < b.id; });
  return Status::ok();
}

Status BlobEngine::scrub(uint64_t* cursor, size_t max, ScrubStep* out) {
  std::vector<std::pair<FilePtr, uint64_t>> todo;  // where each record is
  {
    std::shared_lock<Mutex> l(mu_);
    const auto& slots = index_.slots();
    size_t i = *cursor;
    for (; i < slots.size() && todo.size() < max; ++i)
      if (uint64_t loc = slots[i].loc; loc != 0 && BlobIndex::file_of(loc) < files_.size())
        todo.emplace_back(files_[BlobIndex::file_of(loc)], BlobIndex::offset_of(loc));
    *cursor = i < slots.size() ? i : 0;  // a rehash meanwhile shifts slots: harmless here
  }
  // Records never change once written, and each FilePtr keeps its mapping: no lock needed.
  std::string_view v;
  std::string scratch;
  for (const auto& [f, off] : todo) {
    if (!f) continue;
    ++out->checked;
    codec::Header h;
    Status s = f->file->read(off, codec::header_size, &v, &scratch);
    if (s) s = codec::decode_header(v, &h);
    if (s) s = f->file->read(off, h.total_len, &v, &scratch);
    if (s && codec::checksum_ok(v, h)) continue;
    // The id as the index knows it: the bytes find_locked() compares.
    if (!f->file->read(off + 56, Id::size, &v, &scratch)) continue;
    Id id;
    std::memcpy(id.bytes.data(), v.data(), Id::size);
    out->corrupt.push_back(id);
  }
  return Status::ok();
}

Status BlobEngine::compact() {
  std::lock_guard<std::mutex> g(compact_mu_);
  std::vector<uint32_t> candidates;
  {
    std::shared_lock<Mutex> l(mu_);
    for (const auto& f : files_) {
      if (!f || f->no == active_) continue;
      uint64_t payload = f->end - file_header_size;
      if (payload == 0 || double(f->dead) >= opts_.compact_dead_fraction * double(payload))
        candidates.push_back(f->no);
    }
  }
  for (uint32_t no : candidates) APSIS_TRY(compact_file(no));
  return Status::ok();
}

Status BlobEngine::compact_file(uint32_t no) {
  FilePtr f;
  {
    std::shared_lock<Mutex> l(mu_);
    if (!file_locked(no) || no == active_) return Status::ok();
    f = files_[no];
  }
  std::string_view bytes;
  std::string scratch;
  APSIS_TRY(f->file->read(0, f->end, &bytes, &scratch));
  Status status;
  uint64_t moved = 0;
  // Records are moved in runs under one lock each: a lock a record made the writers queue
  // behind it at every record (a futex wait and wake each), and cut their rate fivefold.
  struct Found {
    uint64_t off;
    Id id;
    std::string_view rec;
  };
  std::vector<Found> run;
  size_t run_bytes = 0;
  run.reserve(compact_run);
  auto move_run = [&] {
    std::unique_lock<Mutex> l(mu_);
    for (const Found& r : run) {
      BlobIndex::Slot* slot = find_locked(r.id);
      if (!slot || slot->loc != BlobIndex::make_loc(no, r.off)) continue;  // dead: drop it
      uint64_t loc;
      status = append_locked(r.rec, &loc);
      if (!status) break;
      slot->loc = loc, ++moved;
    }
    run.clear();
    run_bytes = 0;
  };
  DataFile shadow;
  shadow.no = no;
  scan(
      shadow, bytes, file_header_size,
      [&](uint64_t off, const codec::Header& h, std::string_view rec) {
        if (!status) return;
        run.push_back({off, h.id, rec});
        run_bytes += rec.size();
        if (run.size() == compact_run || run_bytes >= compact_run_bytes) move_run();
      },
      false);
  if (status && !run.empty()) move_run();
  APSIS_TRY(status);
  // The copies must be durable before the original goes.
  if (opts_.sync.mode != SyncPolicy::Mode::never) APSIS_TRY(sync_->sync_all());
  {
    std::unique_lock<Mutex> l(mu_);
    files_[no].reset();
    ++compactions_;
  }
  APSIS_TRY(checkpoint());  // so that no snapshot names the file we remove
  APSIS_TRY(opts_.env->remove(join_path(opts_.dir, data_name(no))));
  if (opts_.sync.mode != SyncPolicy::Mode::never) APSIS_TRY(opts_.env->sync_dir(opts_.dir));
  log(LogLevel::info, opts_.dir + ": compacted " + data_name(no) + ", moved " +
                          std::to_string(moved) + " live records");
  return Status::ok();
}

void BlobEngine::maintenance_loop() {
  std::unique_lock<std::mutex> l(maint_mu_);
  while (!stopping_) {
    maint_cv_.wait_for(l, std::chrono::seconds(1));
    if (stopping_) break;
    l.unlock();
    bool snapshot_due;
    {
      std::shared_lock<Mutex> g(mu_);
      snapshot_due = bytes_since_snapshot_ >= opts_.snapshot_every_bytes;
    }
    Status s = compact();
    if (s && snapshot_due) s = checkpoint();
    if (!s) log(LogLevel::error, opts_.dir + ": background maintenance: " + s.to_string());
    l.lock();
  }
}

EngineStats BlobEngine::stats() {
  std::shared_lock<Mutex> l(mu_);
  EngineStats s;
  s.keys = index_.size();
  s.index_bytes = index_.bytes();
  for (const auto& f : files_) {
    if (!f) continue;
    ++s.files;
    s.disk_bytes += f->end;
    s.dead_bytes += f->dead;
  }
  s.compactions = compactions_;
  s.syncs = sync_ ? sync_->syncs() : 0;
  s.synced_writes = sync_ ? sync_->synced() : 0;
  return s;
}

}  // namespace apsis::storage
