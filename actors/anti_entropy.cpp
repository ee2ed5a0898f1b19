#include "actors/anti_entropy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>
#include <unordered_map>

namespace apsis {

std::string pair_task::key() const {
  return std::to_string(range.group_a) + "/" + std::to_string(backend) + " ~ " +
         std::to_string(range.group_b) + "/" + node_b + "/" + std::to_string(range.backend_b);
}

std::chrono::milliseconds pause_for(uint64_t rate, uint64_t n) {
  return std::chrono::milliseconds(n * 1000 / std::max<uint64_t>(rate, 1));
}

namespace {

using self_ptr = ae_self;

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
bool in_range(const ae_state& st, const ae_range& r, const std::string& node_b,
              const storage::Id& id) {
  auto a = st.rings.find(r.group_a), b = st.rings.find(r.group_b);
  if (a == st.rings.end() || b == st.rings.end()) return false;
  const ring::owner* oa = a->second.owner_of(id);
  const ring::owner* ob = b->second.owner_of(id);
  return oa && ob && oa->node == r.node_a && oa->backend == r.backend_a && ob->node == node_b &&
         ob->backend == r.backend_b;
}

/// Every record of the local backend in the range (and written since its since_ms), with
/// payload or not.
template <class F>
storage::Status scan(const ae_state& st, uint32_t backend, const ae_range& r,
                     const std::string& node_b, bool payload, F&& each,
                     const std::vector<uint32_t>* chunk = nullptr) {
  auto it = st.cfg.backends.find(backend);
  if (it == st.cfg.backends.end())
    return storage::Status::not_found("no backend " + std::to_string(backend));
  storage::IterateOptions io;
  io.with_payload = payload;
  io.include_tombstones = true;
  io.min_version = storage::Version{r.since_ms << 16, 0};
  if (chunk && !chunk->empty()) {  // chunks list buckets in increasing order
    auto [lo, hi] = std::minmax_element(chunk->begin(), chunk->end());
    std::tie(io.begin, io.end) = bucket_span(*lo, *hi, st.cfg.buckets);
  }
  return it->second.engine->iterate(io, [&](const storage::Record& rec) {
    if (in_range(st, r, node_b, rec.id)) each(rec);
    return true;
  });
}

using Versions = std::unordered_map<storage::Id, storage::Version, storage::IdHash>;

/// Each id's newest version in these buckets of a range (blob may show a record twice).
Versions versions_in(const ae_state& st, uint32_t backend, const ae_range& r,
                     const std::string& node_b, const std::vector<uint32_t>& buckets) {
  std::vector<bool> wanted(st.cfg.buckets, false);
  for (uint32_t b : buckets)
    if (b < wanted.size()) wanted[b] = true;
  Versions out;
  scan(
      st, backend, r, node_b, false,
      [&](const storage::Record& rec) {
        if (!wanted[bucket_of(rec.id, st.cfg.buckets)]) return;
        auto& v = out[rec.id];
        if (v < rec.version) v = rec.version;
      },
      &buckets);
  return out;
}

std::vector<uint64_t> digests(const ae_state& st, uint32_t backend, const ae_range& r,
                              const std::string& node_b) {
  std::vector<uint64_t> d(st.cfg.buckets, 0);
  scan(st, backend, r, node_b, false, [&](const storage::Record& rec) {
    d[bucket_of(rec.id, d.size())] ^= mix(rec.id, rec.version);
  });
  return d;
}

}  // namespace

std::vector<pair_task> pairs(const ae_state& st, uint64_t since_ms) {
  std::vector<pair_task> out;
  for (const auto& [backend, b] : st.cfg.backends)
    for (const auto& [group, r] : st.rings) {
      if (group == b.group) continue;
      for (const auto& o : r.owners()) {
        if (o.node == st.cfg.node || st.down.count(o.node)) continue;
        auto n = st.table.nodes.find(o.node);
        if (n == st.table.nodes.end() || !n->second.anti_entropy || !n->second.peer) continue;
        out.push_back(
            {backend, ae_range{b.group, st.cfg.node, backend, group, o.backend, since_ms}, o.node});
      }
    }
  return out;
}

bool dc_pass_running(const ae_state& st) { return st.pass.running() && st.pass.mode == "dc"; }

namespace {

void end_round(self_ptr self, bool ok) {
  auto& st = self->state;
  bool for_pass = st.round && st.round->for_pass && dc_pass_running(st) &&
                  st.pass.done < st.pass.pairs.size() &&
                  st.round->task.key() == st.pass.pairs[st.pass.done].key();
  st.running = false;
  st.round.reset();
  (ok ? st.cfg.stats->rounds : st.cfg.stats->failed_rounds)++;
  if (for_pass) {
    if (!ok) st.pass.skipped.push_back(st.pass.pairs[st.pass.done].key() + " (failed)");
    st.pass.done++;
    save_pass(st);
  }
  if (dc_pass_running(st)) pass_next(self);
}

bool counts_for_pass(const ae_state& st) {
  return dc_pass_running(st) && st.round && st.round->for_pass;
}

/// After a chunk: the next one (at the rate), or the round's end.
void chunk_done(self_ptr self) {
  auto& st = self->state;
  ae_round& r = *st.round;
  if (r.truncated && r.accepted == 0) return end_round(self, false);  // it would loop: refused
  if (!r.truncated) r.offset += r.chunk;
  if (r.offset < r.differ.size())
    self->delayed_send(self, pause_for(st.cfg.rate, r.pushed), atom::step_v);
  else
    end_round(self, true);
}

/// Step 3 for one chunk of buckets: compare with what the other side listed, push what it
/// lacks or holds older (unless a dry run).
void push(self_ptr self, const std::vector<uint32_t>& buckets, std::vector<id_version>& theirs) {
  auto& st = self->state;
  ae_round& round = *st.round;
  const pair_task t = round.task;
  Versions their_version;
  for (const auto& iv : theirs) {
    auto& v = their_version[iv.id];
    if (v < iv.version) v = iv.version;
  }
  // Versions first (no payload), then the payload of only what they lack.
  Versions ours = versions_in(st, t.backend, t.range, t.node_b, buckets);
  uint64_t compared = ours.size() + their_version.size(), divergent = 0;
  Versions lacking;
  for (const auto& [id, v] : ours) {
    auto theirs_it = their_version.find(id);
    if (theirs_it == their_version.end() || theirs_it->second < v)
      lacking.emplace(id, v), divergent++;
    else if (v < theirs_it->second)
      divergent++;
  }
  for (const auto& [id, v] : their_version)  // theirs only: they push it in their rounds
    if (!ours.count(id)) divergent++;
  st.cfg.stats->keys_compared += compared;
  st.cfg.stats->divergent += divergent;
  if (counts_for_pass(st)) st.pass.keys_compared += compared, st.pass.divergent += divergent;
  op_batch batch;
  std::vector<op_batch> batches;
  size_t bytes = 0;
  uint64_t n = 0;
  round.truncated = false;
  if (!round.dry_run && !lacking.empty())
    scan(
        st, t.backend, t.range, t.node_b, true,
        [&](const storage::Record& rec) {
          auto it = lacking.find(rec.id);
          if (it == lacking.end() || rec.version < it->second || round.truncated) return;
          lacking.erase(it);  // once, though blob may show it twice
          bytes += rec.key.size() + rec.json.size() + rec.data.size();
          ++n;
          batch.push_back(replica_write(storage::Record(rec)));
          if (batch.size() == st.cfg.push_batch) batches.push_back(std::move(batch)), batch.clear();
          // The rest goes in the next step, on this chunk again: a step pushes at most a
          // second's worth at the rate, and push_bytes.
          round.truncated = bytes >= st.cfg.push_bytes || n >= std::max<uint64_t>(st.cfg.rate, 1);
        },
        &buckets);
  if (!batch.empty()) batches.push_back(std::move(batch));
  round.pushed = round.accepted = 0;
  if (batches.empty()) return chunk_done(self);
  auto peer = caf::actor_cast<peer_actor>(st.table.nodes.at(t.node_b).peer);
  auto left = std::make_shared<size_t>(batches.size());
  for (auto& b : batches) {
    round.pushed += b.size();
    self->request(peer, st.cfg.timeout, atom::apply_v, t.range.backend_b, std::move(b))
        .then(
            [=](result_batch& results) {
              uint64_t ok = 0;
              for (const auto& r : results) ok += r.status == op_status::ok;
              self->state.cfg.stats->repaired += ok;
              if (self->state.round) self->state.round->accepted += ok;
              if (counts_for_pass(self->state)) self->state.pass.repaired += ok;
              if (--*left == 0) chunk_done(self);
            },
            [=](caf::error& err) {
              spdlog::debug("anti-entropy: pushing to {}: {}", t.node_b,
                            self->home_system().render(err));
              if (--*left == 0) end_round(self, false);
            });
  }
}

/// Step 2 for the next chunk of differing buckets.
void step(self_ptr self) {
  auto& st = self->state;
  if (!st.round) return;
  ae_round& r = *st.round;
  std::vector<uint32_t> chunk(
      r.differ.begin() + long(r.offset),
      r.differ.begin() + long(std::min(r.differ.size(), r.offset + r.chunk)));
  auto target = caf::actor_cast<anti_entropy_actor>(st.table.nodes.at(r.task.node_b).anti_entropy);
  self->request(target, st.cfg.timeout, atom::keys_v, r.task.range, chunk)
      .then([=](std::vector<id_version>& theirs) { push(self, chunk, theirs); },
            [=](caf::error& err) {
              spdlog::debug("anti-entropy: keys from {}: {}", r.task.node_b,
                            self->home_system().render(err));
              end_round(self, false);
            });
}

}  // namespace

void start_round(self_ptr self, const pair_task& t, bool dry_run, bool for_pass) {
  auto& st = self->state;
  st.running = true;
  st.round = ae_round{t, {}, 0, 1, dry_run, for_pass, false, 0, 0};
  auto target = caf::actor_cast<anti_entropy_actor>(st.table.nodes.at(t.node_b).anti_entropy);
  std::vector<uint64_t> mine = digests(st, t.backend, t.range, t.node_b);
  self->request(target, st.cfg.timeout, atom::digest_v, t.range, std::move(mine))
      .then(
          [=](std::vector<uint32_t>& differ) {
            auto& st = self->state;
            st.cfg.stats->buckets_compared += st.cfg.buckets;
            st.cfg.stats->buckets_differing += differ.size();
            if (counts_for_pass(st)) st.pass.buckets_differing += differ.size();
            if (differ.empty() || !st.round) return end_round(self, true);
            uint64_t keys = st.cfg.backends.at(t.backend).engine->stats().keys;
            uint64_t per_bucket = std::max<uint64_t>(1, keys / st.cfg.buckets);
            st.round->chunk = size_t(std::max<uint64_t>(1, st.cfg.chunk_keys / per_bucket));
            st.round->differ = std::move(differ);
            step(self);
          },
          [=](caf::error& err) {
            spdlog::debug("anti-entropy: digests with {}: {}", t.node_b,
                          self->home_system().render(err));
            end_round(self, false);
          });
}

namespace {

/// A merge pass now: the saved `recover merge` pass if one runs, else a periodic one.
void merge_now(self_ptr self) {
  auto& st = self->state;
  bool recover = st.pass.running() && st.pass.mode == "merge";
  start_merge(self, recover && st.pass.dry_run, recover,
              recover ? st.pass.groups : std::vector<uint32_t>{});
}

/// Which backends hold ring points: a change means keys may have new owners.
std::string ring_signature(const route_table& t) {
  std::string sig;
  for (const auto& [name, e] : t.nodes)
    for (const auto& b : e.owns() ? e.backends : std::vector<backend_points>{})
      sig += name + "/" + std::to_string(b.backend) + "/" + std::to_string(b.group) + "/" +
             std::to_string(b.points.size()) + ";";
  return sig;
}

}  // namespace

void sample_mailbox(ae_self self) {
  if (auto& g = self->state.cfg.mailbox) g->sample_of(self);
}

anti_entropy_actor::behavior_type anti_entropy(self_ptr self, ae_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  if (!st.cfg.stats) st.cfg.stats = std::make_shared<ae_stats>();
  if (load_pass(st)) {
    save_pass(st);  // into the stats
    if (st.pass.running()) spdlog::info("anti-entropy: resuming the recover {} pass", st.pass.mode);
  }
  if (st.cfg.every.count() > 0) self->delayed_send(self, st.cfg.every, atom::round_v);
  if (st.cfg.merge_every.count() > 0) self->delayed_send(self, st.cfg.merge_every, atom::merge_v);
  if (st.cfg.scrub_rate > 0) self->delayed_send(self, st.cfg.scrub_pause, atom::scrub_v);
  return {
      [=](atom::routes, route_table& table, std::vector<std::string>& down) {
        auto& st = self->state;
        st.table = std::move(table);
        st.rings = ring::build(st.table);
        st.down = std::set<std::string>(down.begin(), down.end());
        std::string sig = ring_signature(st.table);
        bool changed = !st.ring_signature.empty() && sig != st.ring_signature;
        st.ring_signature = std::move(sig);
        if (changed) start_merge(self, false, false, {});
        // A pass saved by the last run of this node goes on once the cluster is known again.
        if (st.pass.running() && st.pass.mode == "merge" && !st.merge.active) merge_now(self);
        if (dc_pass_running(st) && !st.running) pass_next(self);
      },
      [=](atom::round) {
        auto& st = self->state;
        if (st.cfg.every.count() > 0) self->delayed_send(self, st.cfg.every, atom::round_v);
        if (st.running) return;
        if (dc_pass_running(st)) return pass_next(self);
        auto all = pairs(st);
        if (!all.empty()) start_round(self, all[st.cursor++ % all.size()], false, false);
      },
      [=](atom::step) {
        sample_mailbox(self);
        step(self);
      },
      [=](atom::merge) {
        auto& st = self->state;
        if (st.cfg.merge_every.count() > 0)
          self->delayed_send(self, st.cfg.merge_every, atom::merge_v);
        merge_now(self);
      },
      [=](atom::migrate) { merge_step(self); },
      [=](atom::scrub) { scrub_step(self); },
      [=](atom::recover, std::string& text) { return recover_command(self, text); },
      [=](atom::purge, std::string& ns) { return purge_namespace(self->state, ns); },
      [=](atom::digest, ae_range& r, std::vector<uint64_t>& theirs) {
        sample_mailbox(self);
        std::vector<uint64_t> mine = digests(self->state, r.backend_b, r, self->state.cfg.node);
        std::vector<uint32_t> differ;
        for (size_t i = 0; i < mine.size(); ++i)
          if (i >= theirs.size() || mine[i] != theirs[i]) differ.push_back(uint32_t(i));
        return differ;
      },
      [=](atom::keys, ae_range& r, std::vector<uint32_t>& buckets) {
        sample_mailbox(self);
        Versions newest = versions_in(self->state, r.backend_b, r, self->state.cfg.node, buckets);
        std::vector<id_version> out;
        out.reserve(newest.size());
        for (const auto& [id, v] : newest) out.push_back({id, v});
        return out;
      },
  };
}

}  // namespace apsis
