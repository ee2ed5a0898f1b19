#include "actors/ae_scan.hpp"

#include <algorithm>
#include <tuple>

namespace apsis {

namespace {

/// A 64-bit hash of (id, version): the unit of a bucket's XOR digest.
uint64_t mix(const storage::Id& id, const storage::Version& v) {
  uint64_t x = id.prefix();
  for (size_t i = 8; i < 16; ++i) x = x * 131 + id.bytes[i];
  x ^= v.stamp * 0x9E3779B97F4A7C15ull ^ v.node * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 30, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 27, x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

size_t bucket_of(const storage::Id& id, size_t buckets) {
  int bits = __builtin_ctzll(buckets);
  return bits == 0 ? 0 : size_t(id.prefix() >> (64 - bits));
}

/// The ids of buckets first..last (inclusive): a chunk's scans skip every record outside.
std::pair<storage::Id, storage::Id> bucket_span(uint32_t first, uint32_t last, size_t buckets) {
  int bits = __builtin_ctzll(buckets);
  uint64_t lo = bits == 0 ? 0 : uint64_t(first) << (64 - bits);
  uint64_t hi = bits == 0 ? ~0ull : ((uint64_t(last) + 1) << (64 - bits)) - 1;
  storage::Id begin = storage::Id::min(), end = storage::Id::max();
  for (int i = 0; i < 8; ++i) {
    begin.bytes[size_t(i)] = uint8_t(lo >> (56 - 8 * i));
    end.bytes[size_t(i)] = uint8_t(hi >> (56 - 8 * i));
  }
  return {begin, end};
}

/// Whether an id is in the range that node_b's backend and the range's backend A share.
bool in_range(const ae_view& v, const ae_range& r, const std::string& node_b,
              const storage::Id& id) {
  auto a = v.rings.find(r.group_a), b = v.rings.find(r.group_b);
  if (a == v.rings.end() || b == v.rings.end()) return false;
  const ring::owner* oa = a->second.owner_of(id);
  const ring::owner* ob = b->second.owner_of(id);
  return oa && ob && oa->node == r.node_a && oa->backend == r.backend_a && ob->node == node_b &&
         ob->backend == r.backend_b;
}

/// Every record of the backend in the range (and written since its since_ms), with payload
/// or not; with a chunk, only its buckets' span of ids is read.
template <class F>
storage::Status scan(const ae_view& v, storage::Engine& e, const ae_range& r,
                     const std::string& node_b, bool payload, F&& each,
                     const std::vector<uint32_t>* chunk = nullptr) {
  storage::IterateOptions io;
  io.with_payload = payload;
  io.include_tombstones = true;
  io.min_version = storage::Version{r.since_ms << 16, 0};
  if (chunk && !chunk->empty()) {
    auto [lo, hi] = std::minmax_element(chunk->begin(), chunk->end());
    std::tie(io.begin, io.end) = bucket_span(*lo, *hi, v.buckets);
  }
  return e.iterate(io, [&](const storage::Record& rec) {
    if (in_range(v, r, node_b, rec.id)) each(rec);
    return true;
  });
}

}  // namespace

std::vector<uint64_t> digests(const ae_view& v, storage::Engine& e, const ae_range& r,
                              const std::string& node_b) {
  std::vector<uint64_t> d(v.buckets, 0);
  scan(v, e, r, node_b, false, [&](const storage::Record& rec) {
    d[bucket_of(rec.id, d.size())] ^= mix(rec.id, rec.version);
  });
  return d;
}

Versions versions_in(const ae_view& v, storage::Engine& e, const ae_range& r,
                     const std::string& node_b, const std::vector<uint32_t>& buckets) {
  std::vector<bool> wanted(v.buckets, false);
  for (uint32_t b : buckets)
    if (b < wanted.size()) wanted[b] = true;
  Versions out;
  scan(
      v, e, r, node_b, false,
      [&](const storage::Record& rec) {
        if (!wanted[bucket_of(rec.id, v.buckets)]) return;
        auto& newest = out[rec.id];
        if (newest < rec.version) newest = rec.version;
      },
      &buckets);
  return out;
}

push_plan plan_push(const ae_view& v, storage::Engine& e, const ae_range& r,
                    const std::string& node_b, const std::vector<uint32_t>& buckets,
                    const std::vector<id_version>& theirs, const push_limits& limits) {
  push_plan out;
  Versions their_version;
  for (const auto& iv : theirs) {
    auto& newest = their_version[iv.id];
    if (newest < iv.version) newest = iv.version;
  }
  // Versions first (no payload), then the payload of only what they lack.
  Versions ours = versions_in(v, e, r, node_b, buckets);
  out.compared = ours.size() + their_version.size();
  Versions lacking;
  for (const auto& [id, version] : ours) {
    auto it = their_version.find(id);
    if (it == their_version.end() || it->second < version)
      lacking.emplace(id, version), out.divergent++;
    else if (version < it->second)
      out.divergent++;
  }
  for (const auto& [id, version] : their_version)  // theirs only: they push it in their rounds
    if (!ours.count(id)) out.divergent++;
  if (limits.dry_run || lacking.empty()) return out;
  op_batch batch;
  size_t bytes = 0;
  uint64_t n = 0;
  scan(
      v, e, r, node_b, true,
      [&](const storage::Record& rec) {
        auto it = lacking.find(rec.id);
        if (it == lacking.end() || rec.version < it->second || out.truncated) return;
        lacking.erase(it);  // once, though blob may show it twice
        bytes += rec.key.size() + rec.json.size() + rec.data.size();
        ++n;
        batch.push_back(replica_write(storage::Record(rec)));
        if (batch.size() == limits.batch) out.batches.push_back(std::move(batch)), batch.clear();
        out.truncated = bytes >= limits.bytes || n >= std::max<uint64_t>(limits.records, 1);
      },
      &buckets);
  if (!batch.empty()) out.batches.push_back(std::move(batch));
  return out;
}

merge_scan scan_for_merge(const ae_view& v, storage::Engine& e, uint32_t backend, uint32_t group,
                          bool collect, const merge_limits& limits) {
  merge_scan out;
  auto r = v.rings.find(group);
  const ring* rg = r == v.rings.end() || r->second.size() == 0 ? nullptr : &r->second;
  const uint64_t now = storage::now_ms();
  const uint64_t grace_stamp = now > limits.grace_ms ? (now - limits.grace_ms) << 16 : 0;
  const uint64_t step = std::min<uint64_t>(limits.batch, std::max<uint64_t>(limits.rate, 1));
  size_t bytes = 0;
  storage::IterateOptions io;
  io.with_payload = collect;
  e.iterate(io, [&](const storage::Record& rec) {
    const ring::owner* o = rg ? rg->owner_of(rec.id) : nullptr;
    if (!o || (o->node == v.node && o->backend == backend)) {
      if (rec.tombstone && rec.version.stamp < grace_stamp)
        out.purge.emplace_back(rec.id, rec.version);
      out.full = out.purge.size() >= limits.batch;
      return !out.full;
    }
    if (!v.reachable.count(o->node)) {
      out.misplaced++;
      return true;
    }
    out.to_move++;
    if (!collect) return true;
    out.moves[{o->node, o->backend}].push_back(replica_write(storage::Record(rec)));
    bytes += rec.key.size() + rec.json.size() + rec.data.size();
    out.full = out.to_move >= step || bytes >= limits.bytes;
    return !out.full;
  });
  return out;
}

}  // namespace apsis
