#include "actors/anti_entropy.hpp"

#include <spdlog/spdlog.h>

#include <unordered_map>

namespace apsis {

namespace {

using self_ptr = anti_entropy_actor::stateful_pointer<ae_state>;

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

/// Whether an id is in the range that node_b's backend and the range's backend A share.
bool in_range(const ae_state& st, const ae_range& r, const std::string& node_b, const storage::Id& id) {
  auto a = st.rings.find(r.group_a), b = st.rings.find(r.group_b);
  if (a == st.rings.end() || b == st.rings.end()) return false;
  const ring::owner* oa = a->second.owner_of(id);
  const ring::owner* ob = b->second.owner_of(id);
  return oa && ob && oa->node == r.node_a && oa->backend == r.backend_a && ob->node == node_b &&
         ob->backend == r.backend_b;
}

/// Every record of the local backend in the range, newest version per id (blob may show a
/// record twice during a compaction), with payload or not.
template <class F>
storage::Status scan(const ae_state& st, uint32_t backend, const ae_range& r,
                     const std::string& node_b, bool payload, F&& each) {
  auto it = st.cfg.backends.find(backend);
  if (it == st.cfg.backends.end()) return storage::Status::not_found("no backend " + std::to_string(backend));
  storage::IterateOptions io;
  io.with_payload = payload;
  io.include_tombstones = true;
  return it->second.engine->iterate(io, [&](const storage::Record& rec) {
    if (in_range(st, r, node_b, rec.id)) each(rec);
    return true;
  });
}

std::vector<uint64_t> digests(const ae_state& st, uint32_t backend, const ae_range& r,
                              const std::string& node_b) {
  std::vector<uint64_t> d(st.cfg.buckets, 0);
  scan(st, backend, r, node_b, false,
       [&](const storage::Record& rec) { d[bucket_of(rec.id, d.size())] ^= mix(rec.id, rec.version); });
  return d;
}

kv_op replica_write(storage::Record&& rec) {
  kv_op o;
  o.kind = rec.tombstone ? op_kind::remove : op_kind::put;
  o.id = rec.id;
  o.key = std::move(rec.key);
  o.json = std::move(rec.json);
  o.data = std::move(rec.data);
  o.user_flags = rec.user_flags;
  o.expiry_ms = rec.expiry_ms;
  o.version = rec.version;
  return o;
}

struct pair_task {
  uint32_t backend;  // local
  ae_range range;
  std::string node_b;
};

std::vector<pair_task> pairs(const ae_state& st) {
  std::vector<pair_task> out;
  for (const auto& [backend, b] : st.cfg.backends)
    for (const auto& [group, r] : st.rings) {
      if (group == b.group) continue;
      for (const auto& o : r.owners()) {
        if (o.node == st.cfg.node || st.down.count(o.node)) continue;
        auto n = st.table.nodes.find(o.node);
        if (n == st.table.nodes.end() || !n->second.recovery || !n->second.peer) continue;
        out.push_back({backend, ae_range{b.group, st.cfg.node, backend, group, o.backend}, o.node});
      }
    }
  return out;
}

void next_round(self_ptr self) {
  self->state.running = false;
  self->state.cfg.stats->rounds++;
  if (self->state.cfg.every.count() > 0) self->delayed_send(self, self->state.cfg.every, atom::tick_v);
}

/// Step 3: push what the other side lacks or holds older.
void push(self_ptr self, const pair_task& t, const std::vector<uint32_t>& buckets,
          std::vector<id_version>& theirs) {
  auto& st = self->state;
  std::unordered_map<storage::Id, storage::Version, storage::IdHash> their_version;
  for (const auto& iv : theirs) {
    auto& v = their_version[iv.id];
    if (v < iv.version) v = iv.version;
  }
  std::vector<bool> wanted(st.cfg.buckets, false);
  for (uint32_t b : buckets) if (b < wanted.size()) wanted[b] = true;
  std::unordered_map<storage::Id, storage::Record, storage::IdHash> ours;
  scan(st, t.backend, t.range, t.node_b, true, [&](const storage::Record& rec) {
    if (!wanted[bucket_of(rec.id, st.cfg.buckets)]) return;
    auto [it, fresh] = ours.emplace(rec.id, rec);
    if (!fresh && it->second.version < rec.version) it->second = rec;
  });
  st.cfg.stats->keys_compared += ours.size() + their_version.size();
  op_batch batch;
  std::vector<op_batch> batches;
  for (auto& [id, rec] : ours) {
    auto theirs_it = their_version.find(id);
    bool lacking = theirs_it == their_version.end() || theirs_it->second < rec.version;
    if (theirs_it != their_version.end() && rec.version < theirs_it->second) st.cfg.stats->divergent++;
    if (!lacking) continue;
    st.cfg.stats->divergent++;
    batch.push_back(replica_write(std::move(rec)));
    if (batch.size() == st.cfg.push_batch) batches.push_back(std::move(batch)), batch.clear();
  }
  for (const auto& [id, v] : their_version)  // theirs only: they push it in their rounds
    if (!ours.count(id)) st.cfg.stats->divergent++;
  if (!batch.empty()) batches.push_back(std::move(batch));
  if (batches.empty()) return next_round(self);
  auto peer = caf::actor_cast<peer_actor>(st.table.nodes.at(t.node_b).peer);
  auto left = std::make_shared<size_t>(batches.size());
  for (auto& b : batches) {
    self->request(peer, st.cfg.timeout, atom::apply_v, t.range.backend_b, std::move(b))
        .then(
            [=](result_batch& results) {
              for (const auto& r : results) self->state.cfg.stats->repaired += r.status == op_status::ok;
              if (--*left == 0) next_round(self);
            },
            [=](caf::error& err) {
              self->state.cfg.stats->failed_rounds++;
              spdlog::debug("anti-entropy: pushing to {}: {}", t.node_b, self->home_system().render(err));
              if (--*left == 0) next_round(self);
            });
  }
}

void round(self_ptr self) {
  auto& st = self->state;
  auto all = pairs(st);
  if (all.empty()) return next_round(self);
  pair_task t = all[st.cursor++ % all.size()];
  auto target = caf::actor_cast<anti_entropy_actor>(st.table.nodes.at(t.node_b).recovery);
  auto fail = [=](caf::error& err) {
    self->state.cfg.stats->failed_rounds++;
    spdlog::debug("anti-entropy: with {}: {}", t.node_b, self->home_system().render(err));
    next_round(self);
  };
  std::vector<uint64_t> mine = digests(st, t.backend, t.range, t.node_b);
  self->request(target, st.cfg.timeout, atom::digest_v, t.range, std::move(mine))
      .then(
          [=](std::vector<uint32_t>& differ) {
            auto& st = self->state;
            st.cfg.stats->buckets_compared += st.cfg.buckets;
            st.cfg.stats->buckets_differing += differ.size();
            if (differ.empty()) return next_round(self);
            if (differ.size() > st.cfg.max_buckets) differ.resize(st.cfg.max_buckets);
            self->request(target, st.cfg.timeout, atom::keys_v, t.range, differ)
                .then([=](std::vector<id_version>& theirs) { push(self, t, differ, theirs); }, fail);
          },
          fail);
}

}  // namespace

anti_entropy_actor::behavior_type anti_entropy(self_ptr self, ae_config cfg) {
  self->state.cfg = std::move(cfg);
  if (!self->state.cfg.stats) self->state.cfg.stats = std::make_shared<ae_stats>();
  if (self->state.cfg.every.count() > 0) self->delayed_send(self, self->state.cfg.every, atom::tick_v);
  return {
      [=](atom::routes, route_table& table, std::vector<std::string>& down) {
        auto& st = self->state;
        st.table = std::move(table);
        st.rings = ring::build(st.table);
        st.down = std::set<std::string>(down.begin(), down.end());
      },
      [=](atom::tick) {
        if (self->state.running) return;
        self->state.running = true;
        round(self);
      },
      [=](atom::digest, ae_range& r, std::vector<uint64_t>& theirs) {
        std::vector<uint64_t> mine = digests(self->state, r.backend_b, r, self->state.cfg.node);
        std::vector<uint32_t> differ;
        for (size_t i = 0; i < mine.size(); ++i)
          if (i >= theirs.size() || mine[i] != theirs[i]) differ.push_back(uint32_t(i));
        return differ;
      },
      [=](atom::keys, ae_range& r, std::vector<uint32_t>& buckets) {
        auto& st = self->state;
        std::vector<bool> wanted(st.cfg.buckets, false);
        for (uint32_t b : buckets) if (b < wanted.size()) wanted[b] = true;
        std::unordered_map<storage::Id, storage::Version, storage::IdHash> newest;
        scan(st, r.backend_b, r, st.cfg.node, false, [&](const storage::Record& rec) {
          if (!wanted[bucket_of(rec.id, st.cfg.buckets)]) return;
          auto& v = newest[rec.id];
          if (v < rec.version) v = rec.version;
        });
        std::vector<id_version> out;
        out.reserve(newest.size());
        for (const auto& [id, v] : newest) out.push_back({id, v});
        return out;
      },
  };
}

}  // namespace apsis
