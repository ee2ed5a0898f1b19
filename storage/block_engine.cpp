#include "storage/block_engine.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "storage/engine_dir.hpp"
#include "storage/record_codec.hpp"

namespace apsis::storage {

namespace {

constexpr uint64_t index_magic = 0x31494b4c42535041ull;  // "APSBLKI1"
constexpr uint64_t data_magic = 0x31444b4c42535041ull;   // "APSBLKD1"
constexpr size_t header_size = 128;  // both files start with one 128-byte header

uint64_t entry_offset(uint32_t slot, int copy) {
  return header_size + uint64_t(slot) * 2 * BlockEngine::entry_size +
         copy * BlockEngine::entry_size;
}

std::string data_header() {
  std::string h(header_size, '\0');
  codec::put_u64(h.data(), data_magic);
  codec::put_u64(h.data() + 8, codec::hash64(std::string_view(h.data(), 8)));
  return h;
}

}  // namespace

Status BlockEngine::open(const EngineOptions& opts, std::unique_ptr<Engine>* out) {
  std::unique_ptr<BlockEngine> e(new BlockEngine(opts));
  APSIS_TRY(claim_dir(opts, &e->lock_));
  APSIS_TRY(e->recover());
  BlockEngine* raw = e.get();
  e->sync_ = std::make_unique<SyncDriver>(opts.sync, [raw] {
    APSIS_TRY(raw->data_->sync());
    return raw->index_->sync();
  });
  *out = std::move(e);
  return Status::ok();
}

BlockEngine::~BlockEngine() {
  if (!sync_) return;
  // A clean stop: persist the free-block chain and mark the files clean.
  Status s = sync_->sync_all();
  std::unique_lock<std::shared_mutex> l(mu_);
  for (auto& p : pending_) free_.insert(free_.end(), p.blocks.begin(), p.blocks.end());
  pending_.clear();
  std::sort(free_.begin(), free_.end());
  char next[8];
  for (size_t i = 0; s && i < free_.size(); ++i) {
    codec::put_u64(next, i + 1 < free_.size() ? free_[i + 1] : 0);
    s = data_->write(free_[i] * block_size, std::string_view(next, 8));
  }
  if (s) s = data_->sync();
  if (s) s = write_header(true);
  if (!s) opts_.log(LogLevel::error, opts_.dir + ": close: " + s.to_string());
}

// Index header: magic, seq, slots, blocks, free head, clean flag, checksum.
Status BlockEngine::write_header(bool clean) {
  std::string h(header_size, '\0');
  codec::put_u64(h.data(), index_magic);
  codec::put_u64(h.data() + 8, seq_);
  codec::put_u64(h.data() + 16, by_slot_.size());
  codec::put_u64(h.data() + 24, blocks_);
  codec::put_u64(h.data() + 32, clean && !free_.empty() ? free_.front() : 0);
  codec::put_u32(h.data() + 40, clean ? 1 : 0);
  codec::put_u64(h.data() + 120, codec::hash64(std::string_view(h.data(), 120)));
  APSIS_TRY(index_->write(0, h));
  return index_->sync();
}

static void encode_entry(uint64_t seq, const Id& id, uint64_t first, uint32_t length,
                         const Version& v, char* out) {
  std::memset(out, 0, BlockEngine::entry_size);
  codec::put_u64(out + 8, seq);
  std::memcpy(out + 16, id.bytes.data(), Id::size);
  codec::put_u64(out + 80, first);
  codec::put_u32(out + 88, length);
  codec::put_u64(out + 96, v.stamp);
  codec::put_u64(out + 104, v.node);
  codec::put_u64(out, codec::hash64(std::string_view(out + 8, BlockEngine::entry_size - 8)));
}

Status BlockEngine::recover() {
  std::string ipath = join_path(opts_.dir, "index.apb"), dpath = join_path(opts_.dir, "data.apb");
  bool fresh = !opts_.env->exists(ipath) && !opts_.env->exists(dpath);
  APSIS_TRY(opts_.env->open(ipath, true, &index_));
  APSIS_TRY(opts_.env->open(dpath, true, &data_));
  if (fresh) {
    APSIS_TRY(data_->write(0, data_header()));
    APSIS_TRY(data_->sync());
    APSIS_TRY(write_header(false));
    return opts_.env->sync_dir(opts_.dir);
  }
  uint64_t free_head = 0;
  bool clean = false;
  APSIS_TRY(read_headers(ipath, dpath, &free_head, &clean));
  std::vector<bool> used(clean ? 0 : blocks_, false);
  uint64_t lost = 0;
  APSIS_TRY(load_slots(ipath, clean, &used, &lost));
  if (clean) {
    std::string scratch;
    for (uint64_t b = free_head, n = 0; b != 0 && n < blocks_; ++n) {
      if (b >= blocks_) return Status::corruption(dpath + ": free chain leaves the file");
      free_.push_back(b);
      std::string_view v;
      APSIS_TRY(data_->read(b * block_size, 8, &v, &scratch));
      b = codec::get_u64(v.data());
    }
  } else {
    for (uint64_t b = 1; b < blocks_; ++b)
      if (!used[b]) free_.push_back(b);
    opts_.log(LogLevel::info, opts_.dir + ": unclean stop: verified " +
                                  std::to_string(map_.size()) + " records, rebuilt " +
                                  std::to_string(free_.size()) + " free blocks" +
                                  (lost ? ", " + std::to_string(lost) + " entries lost" : ""));
  }
  std::reverse(free_.begin(), free_.end());  // allocate low blocks first
  return write_header(false);                // dirty until the next clean close
}

Status BlockEngine::read_headers(const std::string& ipath, const std::string& dpath,
                                 uint64_t* free_head, bool* clean) {
  uint64_t isize = 0, dsize = 0;
  APSIS_TRY(index_->size(&isize));
  APSIS_TRY(data_->size(&dsize));
  std::string iscratch, dscratch;
  std::string_view h, dh;
  if (isize < header_size || dsize < header_size)
    return Status::corruption(opts_.dir + ": block files shorter than their headers");
  APSIS_TRY(index_->read(0, header_size, &h, &iscratch));
  APSIS_TRY(data_->read(0, header_size, &dh, &dscratch));
  if (codec::get_u64(h.data()) != index_magic ||
      codec::get_u64(h.data() + 120) != codec::hash64(h.substr(0, 120)))
    return Status::corruption(ipath + ": not an apsis block index (bad header)");
  if (dh.substr(0, 16) != std::string_view(data_header()).substr(0, 16))
    return Status::corruption(dpath + ": not an apsis block data file (bad header)");
  seq_ = codec::get_u64(h.data() + 8);
  *free_head = codec::get_u64(h.data() + 32);
  *clean = codec::get_u32(h.data() + 40) == 1;
  blocks_ = std::max<uint64_t>(1, dsize / block_size);
  return Status::ok();
}

bool BlockEngine::decode_entry(std::string_view raw, Entry* e) {
  const char* p = raw.data();
  if (codec::get_u64(p) != codec::hash64(raw.substr(8))) return false;
  e->seq = codec::get_u64(p + 8);
  std::memcpy(e->id.bytes.data(), p + 16, Id::size);
  e->first = codec::get_u64(p + 80);
  e->length = codec::get_u32(p + 88);
  e->version = {codec::get_u64(p + 96), codec::get_u64(p + 104)};
  return true;
}

// Entries: the intact copy with the higher seq wins; after an unclean stop, its chain must
// also hold an intact record, or the other copy is tried.
Status BlockEngine::load_slots(const std::string& ipath, bool clean, std::vector<bool>* used,
                               uint64_t* lost) {
  uint64_t isize = 0;
  APSIS_TRY(index_->size(&isize));
  // A new key's second copy is written only at its first overwrite: round up, pad zeros.
  uint64_t slots = (isize - header_size + 2 * entry_size - 1) / (2 * entry_size);
  std::string_view view;
  std::string scratch, all;
  if (isize > header_size)
    APSIS_TRY(index_->read(header_size, isize - header_size, &view, &scratch));
  all.assign(view);
  all.resize(slots * 2 * entry_size, '\0');
  for (uint32_t s = 0; s < slots; ++s) {
    Entry copies[2];
    for (int c = 0; c < 2; ++c) {
      std::string_view raw(all.data() + (uint64_t(s) * 2 + c) * entry_size, entry_size);
      copies[c].copy = c;
      if (decode_entry(raw, &copies[c])) {
        seq_ = std::max(seq_, copies[c].seq);
      } else if (raw.find_first_not_of('\0') != std::string_view::npos) {
        opts_.log(LogLevel::warn, ipath + ": slot " + std::to_string(s) + " copy " +
                                      std::to_string(c) + " is torn or corrupt, ignored");
      }
    }
    if (copies[1].seq > copies[0].seq) std::swap(copies[0], copies[1]);
    const Entry* chosen = nullptr;
    for (const Entry& e : copies) {
      if (e.seq == 0) continue;
      if (clean || chain_intact(e, used)) {
        chosen = &e;
        break;
      }
      opts_.log(LogLevel::warn, opts_.dir + ": slot " + std::to_string(s) + ": entry seq " +
                                    std::to_string(e.seq) +
                                    " points at a torn or corrupt record, dropped");
      ++*lost;
    }
    by_slot_.push_back(chosen ? chosen->id : Id{});  // an empty slot keeps its place
    if (chosen) map_[chosen->id] = Slot{s, *chosen};
  }
  return Status::ok();
}

bool BlockEngine::chain_intact(const Entry& e, std::vector<bool>* used) {
  std::string rec;
  std::vector<uint64_t> chain;
  codec::Header hdr;
  if (!read_chain(e, &rec, &chain) || !codec::decode_header(rec, &hdr) ||
      !codec::checksum_ok(rec, hdr) || hdr.id != e.id)
    return false;
  for (uint64_t b : chain) (*used)[b] = true;
  return true;
}

Status BlockEngine::read_chain(const Entry& e, std::string* out, std::vector<uint64_t>* blocks) {
  out->clear();
  uint64_t b = e.first;
  size_t need = (e.length + block_payload - 1) / block_payload;
  std::string scratch;
  for (size_t i = 0; i < need; ++i) {
    if (b == 0 || b >= blocks_) return Status::corruption("block chain broken");
    std::string_view v;
    APSIS_TRY(data_->read(b * block_size, block_size, &v, &scratch));
    if (blocks) blocks->push_back(b);
    size_t take = std::min<size_t>(block_payload, e.length - out->size());
    out->append(v.data() + 8, take);
    b = codec::get_u64(v.data());
  }
  return Status::ok();
}

std::vector<uint64_t> BlockEngine::allocate(size_t n) {
  release_pending();
  std::vector<uint64_t> out;
  while (out.size() < n && !free_.empty()) out.push_back(free_.back()), free_.pop_back();
  while (out.size() < n) out.push_back(blocks_++);
  return out;
}

void BlockEngine::release_pending() {
  uint64_t durable = opts_.sync.mode == SyncPolicy::Mode::never ? UINT64_MAX : sync_->synced();
  auto keep = std::remove_if(pending_.begin(), pending_.end(), [&](Pending& p) {
    if (p.ticket > durable) return false;
    free_.insert(free_.end(), p.blocks.begin(), p.blocks.end());
    return true;
  });
  pending_.erase(keep, pending_.end());
}

Status BlockEngine::write_chain(std::string_view rec, uint64_t* first) {
  size_t n = (rec.size() + block_payload - 1) / block_payload;
  std::vector<uint64_t> blocks = allocate(n);
  // Contiguous runs go out in one write.
  std::string run;
  uint64_t run_start = 0;
  for (size_t i = 0; i < n; ++i) {
    if (run.empty()) run_start = blocks[i];
    char blk[block_size] = {0};
    codec::put_u64(blk, i + 1 < n ? blocks[i + 1] : 0);
    std::memcpy(blk + 8, rec.data() + i * block_payload,
                std::min(block_payload, rec.size() - i * block_payload));
    run.append(blk, block_size);
    if (i + 1 == n || blocks[i + 1] != blocks[i] + 1) {
      Status s = data_->write(run_start * block_size, run);
      if (!s) {
        free_.insert(free_.end(), blocks.begin(), blocks.end());
        return s;
      }
      run.clear();
    }
  }
  *first = blocks[0];
  return Status::ok();
}

Status BlockEngine::put(const Record& r) {
  Status s;
  put_batch(&r, 1, &s);
  return s;
}

// One lock and one ticket for the whole batch; the blocks the batch frees become reusable
// only once that ticket is durable.
uint64_t BlockEngine::write_batch(const Record* records, size_t n, Status* results) {
  std::vector<std::string> encoded(n);
  for (size_t i = 0; i < n; ++i) {
    results[i] = validate(records[i], opts_.limits);
    if (results[i]) encoded[i] = codec::encode(records[i]);
  }
  uint64_t ticket;
  {
    std::unique_lock<std::shared_mutex> l(mu_);
    std::vector<uint64_t> freed;
    size_t written = 0;
    for (size_t i = 0; i < n; ++i) {
      if (results[i]) results[i] = put_locked(records[i], encoded[i], &freed);
      written += results[i].is_ok();
    }
    ticket = sync_->ticket(written);
    if (!freed.empty()) pending_.push_back(Pending{ticket, std::move(freed)});
  }
  return ticket;
}

Status BlockEngine::put_locked(const Record& r, const std::string& rec,
                               std::vector<uint64_t>* freed) {
  APSIS_TRY(sync_->error());
  auto it = map_.find(r.id);
  if (it != map_.end()) {
    bool write = false;
    APSIS_TRY(version_check(it->second.entry.version, r.version, &write));
    if (!write) return Status::ok();
  }
  uint64_t first = 0;
  APSIS_TRY(write_chain(rec, &first));
  uint32_t slot = it != map_.end() ? it->second.slot : uint32_t(by_slot_.size());
  // Overwrite the other copy: a torn write leaves the current one intact.
  int copy = it != map_.end() ? 1 - it->second.entry.copy : 0;
  char e[entry_size];
  encode_entry(++seq_, r.id, first, uint32_t(rec.size()), r.version, e);
  APSIS_TRY(index_->write(entry_offset(slot, copy), std::string_view(e, entry_size)));
  if (it != map_.end()) {  // the old chain's blocks
    uint64_t b = it->second.entry.first;
    size_t blocks = (it->second.entry.length + block_payload - 1) / block_payload;
    std::string scratch;
    for (size_t i = 0; i < blocks && b != 0 && b < blocks_; ++i) {
      freed->push_back(b);
      std::string_view v;
      if (!data_->read(b * block_size, 8, &v, &scratch)) break;
      b = codec::get_u64(v.data());
    }
  } else {
    by_slot_.push_back(r.id);
  }
  Slot& s = map_[r.id];
  s.slot = slot;
  s.entry = Entry{seq_, r.id, first, uint32_t(rec.size()), r.version, copy};
  return Status::ok();
}

Status BlockEngine::read_locked(const Id& id, std::string* bytes) {
  auto it = map_.find(id);
  if (it == map_.end()) return Status::not_found();
  APSIS_TRY(read_chain(it->second.entry, bytes, nullptr));
  return Status::ok();
}

Status BlockEngine::get(const Id& id, Record* out) {
  std::string bytes;
  {
    std::shared_lock<std::shared_mutex> l(mu_);
    APSIS_TRY(read_locked(id, &bytes));
  }
  Status s = codec::decode(bytes, out);
  if (!s || out->id != id)
    return Status::corruption("block record of " + id.hex() + ": " + s.message());
  if (out->tombstone || out->meta().expired(now_ms())) return Status::not_found();
  return Status::ok();
}

Status BlockEngine::lookup(const Id& id, RecordMeta* out) {
  std::string bytes;
  {
    std::shared_lock<std::shared_mutex> l(mu_);
    APSIS_TRY(read_locked(id, &bytes));
  }
  Status s = codec::decode_meta(bytes, out);
  if (!s) return Status::corruption("block record of " + id.hex() + ": " + s.message());
  return Status::ok();
}

// Both copies of the slot are zeroed, the older one first (a torn erase leaves the current
// entry, never an older one whose blocks may be reused), and the slot stays empty.
Status BlockEngine::erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) {
  *erased = 0;
  uint64_t ticket;
  {
    std::unique_lock<std::shared_mutex> l(mu_);
    std::vector<uint64_t> freed;
    const std::string zero(entry_size, '\0');
    for (const auto& [id, v] : which) {
      auto it = map_.find(id);
      if (it == map_.end() || (v.stamp != 0 && it->second.entry.version != v)) continue;
      const Slot s = it->second;
      APSIS_TRY(index_->write(entry_offset(s.slot, 1 - s.entry.copy), zero));
      APSIS_TRY(index_->write(entry_offset(s.slot, s.entry.copy), zero));
      std::vector<uint64_t> chain;
      std::string rec;
      if (read_chain(s.entry, &rec, &chain)) freed.insert(freed.end(), chain.begin(), chain.end());
      by_slot_[s.slot] = Id{};
      map_.erase(it);
      ++*erased;
    }
    ticket = sync_->ticket();
    if (!freed.empty()) pending_.push_back(Pending{ticket, std::move(freed)});
  }
  if (*erased == 0) return Status::ok();
  return sync();
}

Status BlockEngine::iterate(const IterateOptions& opts, const IterateFn& fn) {
  constexpr size_t batch = 256;
  for (size_t from = 0;; from += batch) {
    std::vector<Record> chunk;
    {
      std::shared_lock<std::shared_mutex> l(mu_);
      if (from >= by_slot_.size()) return Status::ok();
      for (size_t s = from; s < std::min(from + batch, by_slot_.size()); ++s) {
        auto it = map_.find(by_slot_[s]);
        if (it == map_.end()) continue;
        const Entry& e = it->second.entry;
        if (!(opts.begin <= e.id && e.id <= opts.end && opts.min_version <= e.version &&
              e.version <= opts.max_version))
          continue;
        std::string bytes;
        Record r;
        if (!read_chain(e, &bytes, nullptr) || !codec::decode(bytes, &r, opts.with_payload)) {
          if (opts.on_corrupt) opts.on_corrupt(e.id);
          continue;
        }
        if (matches(opts, r.id, r.version, r.tombstone)) chunk.push_back(std::move(r));
      }
    }
    for (const auto& r : chunk)
      if (!fn(r)) return Status::ok();
  }
}

Status BlockEngine::sync() { return sync_->sync_all(); }

EngineStats BlockEngine::stats() {
  std::shared_lock<std::shared_mutex> l(mu_);
  EngineStats s;
  s.keys = map_.size();
  s.files = 2;
  s.disk_bytes = blocks_ * block_size + header_size + by_slot_.size() * 2 * entry_size;
  size_t pending = 0;
  for (const auto& p : pending_) pending += p.blocks.size();
  s.dead_bytes = (free_.size() + pending) * block_size;
  s.index_bytes = map_.size() * (sizeof(Slot) + sizeof(Id) + 32);
  s.syncs = sync_->syncs();
  s.synced_writes = sync_->synced();
  return s;
}

}  // namespace apsis::storage
