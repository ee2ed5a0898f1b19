#include "actors/replica_group.hpp"

#include "actors/shard.hpp"
#include "messages/listing.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <random>

namespace apsis {

namespace {

using deliver_fn = std::function<void(result_batch&&)>;
/// Sends a read repair: the newest version of a key, to a replica that holds an older one.
using repair_fn = std::function<void(const replica_entry& to, kv_op write)>;

bool is_write(op_kind k) { return k != op_kind::get && k != op_kind::lookup && k != op_kind::list; }

// ---- Results: what the replicas answered, merged per operation; read repair. ----

/// Puts replica entries in the session's group order (`order`: group ids).
void sort_by_group(std::vector<replica_entry>& replicas, const std::vector<uint32_t>& order) {
  if (replicas.size() < 2) return;  // stable_sort would still allocate its buffer
  auto rank = [&](const replica_entry& e) {
    return std::find(order.begin(), order.end(), e.group) - order.begin();
  };
  std::stable_sort(replicas.begin(), replicas.end(),
                   [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
}

/// The write that brings a replica up to `best`, the answer a read settled on: its record
/// (put) or its tombstone (remove), at its version. None when the record at hand is not the
/// one `best` names (its payload did not come back).
std::optional<kv_op> repair_write(const op_result& r, const replica_entry& best,
                                  const storage::Id& id, const std::string& key) {
  const bool found = best.status == op_status::ok && r.record.version == best.version;
  if (!found && best.status != op_status::not_found) return std::nullopt;
  storage::Record rec = found ? r.record : storage::Record{};
  rec.tombstone = !found;
  kv_op w = replica_write(std::move(rec));
  w.id = id;
  w.key = key;
  w.version = best.version;
  w.repair = true;
  return w;
}

/// What the coordinator keeps of one operation while its replicas answer.
struct op_track {
  bool write = false;
  bool change = false;  ///< a change: one group's owner computes it (read_group says which)
  /// A read under `quorum` or `all`: it asks every group and answers the newest version.
  bool wide = false;
  success_policy policy = success_policy::quorum;  ///< the write's, or the read's
  bool answered = false;                           ///< a replica's answer has filled the result
  size_t read_group = SIZE_MAX;  ///< a read under `one`, or a change: the session group asked
  /// A wide get: its key, for read repairs (a lookup carries no payload to repair with).
  std::optional<std::pair<storage::Id, std::string>> repair_key;
};

/// A batch in flight: results fill in as shards answer or time out.
struct pending_batch {
  result_batch results;
  std::vector<op_track> ops;
  size_t outstanding = 0;
  deliver_fn deliver;
  repair_fn repair;                   ///< sends a read repair (null: none)
  std::vector<uint32_t> group_order;  ///< the session's groups: replica entries come so

  /// A wide read's answer: the newest version among the replicas that answered (a
  /// tombstone's too), if as many answered as its policy needs (a corrupt copy is no answer).
  /// Either way, replicas that hold an older version or a corrupt one get the newest known
  /// in the background.
  void settle_wide(size_t i) {
    op_result& r = results[i];
    const replica_entry* best = nullptr;
    size_t answers = 0;
    for (const auto& e : r.replicas) {
      if (e.status != op_status::ok && e.status != op_status::not_found) continue;
      ++answers;
      if (!best || best->version < e.version ||
          (best->version == e.version && e.status == op_status::ok))
        best = &e;
    }
    if (best) repair_behind(i, *best);
    if (!best || answers < needed(ops[i].policy, r.replicas.size())) {
      // None answered: their common failure (timeout...); some did: too few, never "missing".
      r.status = answers == 0 ? decide(success_policy::all, r.replicas) : op_status::unavailable;
      r.record = {};
      r.message = "read policy " + std::string(to_string(ops[i].policy)) + ": " +
                  std::to_string(answers) + " of " + std::to_string(r.replicas.size()) +
                  " replicas answered";
      return;
    }
    r.status = best->status;
    if (best->status != op_status::ok) r.record = {}, r.version = best->version;
  }

  /// Read repairs of a wide get: every replica older than `best` or corrupt gets `best`.
  void repair_behind(size_t i, const replica_entry& best) {
    const op_result& r = results[i];
    if (!repair || !ops[i].repair_key) return;
    for (const auto& e : r.replicas) {
      // Older than the newest, or corrupt: anything but a miss that knows of no write at all.
      bool behind = e.status == op_status::corruption ||
                    ((e.status == op_status::ok || e.status == op_status::not_found) &&
                     e.version < best.version);
      if (!behind || (best.status == op_status::not_found && best.version.stamp == 0)) continue;
      if (auto w = repair_write(r, best, ops[i].repair_key->first, ops[i].repair_key->second))
        repair(e, std::move(*w));
    }
  }

  void finish() {
    for (size_t i = 0; i < results.size(); ++i) {
      op_result& r = results[i];
      sort_by_group(r.replicas, group_order);
      if (ops[i].write)
        r.status = decide(ops[i].policy, r.replicas);
      else if (ops[i].wide)
        settle_wide(i);
      else
        r.status = r.replicas.empty() ? op_status::unavailable : r.replicas.front().status;
      if (r.replicas.empty() && r.message.empty())
        r.message =
            "no replica to ask: no group of the session owns the key, or none named is in it";
    }
    deliver(std::move(results));
  }

  /// One shard's answer (got) or failure for the operations at idx.
  void record(const std::vector<size_t>& idx, const replica_entry& where, result_batch* got,
              op_status failure) {
    for (size_t k = 0; k < idx.size(); ++k) {
      const size_t j = idx[k];
      op_result& r = results[j];
      op_track& t = ops[j];
      replica_entry e = where;
      e.status = failure;
      if (got && k < got->size()) {
        op_result& one = (*got)[k];
        // A write that finds a newer version stored lost to a concurrent one (newest wins):
        // it is ordered before that write, not failed.
        if (t.write && one.status == op_status::stale) {
          one.status = op_status::ok;
          one.message.clear();
        }
        e.status = one.status;
        e.version = one.version;
        // The first replica to answer carries the payload; for a wide read, the newest.
        bool carry =
            t.wide ? one.status == op_status::ok && (!t.answered || r.record.version < one.version)
                   : !t.answered;
        if (carry) {
          t.answered = true;
          r.record = std::move(one.record);
          r.message = std::move(one.message);
          r.version = one.version;
          r.json_size = one.json_size;
          r.data_size = one.data_size;
          r.listed = std::move(one.listed);
        }
        r.existed = r.existed || one.existed;
      }
      r.replicas.push_back(std::move(e));
    }
    if (--outstanding == 0) finish();
  }
};

// ---- Planning: versions, owners, read groups, requests. ----

struct shard_request {
  shard_actor dest;
  ShardCore* core = nullptr;  ///< the local shard's core, for the direct path
  peer_actor peer;            ///< a remote backend's node
  uint32_t backend = 0;
  op_batch ops;
  std::vector<size_t> idx;
  replica_entry where;
  bool remote = false, down = false, fsync_always = false;
};

/// Whether an operation asks a group: those it names, else every group of the session.
bool asks_group(const kv_op& op, uint32_t group) {
  return op.groups.empty() ||
         std::find(op.groups.begin(), op.groups.end(), group) != op.groups.end();
}

/// Which route owns an id in the session's g-th group.
size_t owner_route(const replica_group_config& cfg, size_t g, const storage::Id& id) {
  if (cfg.rings.empty()) return g;
  const ring::owner* o = cfg.rings[g].second.owner_of(id);
  for (size_t r = 0; o && r < cfg.groups.size(); ++r)
    if (cfg.groups[r].node == o->node && cfg.groups[r].backend == o->backend) return r;
  return SIZE_MAX;  // a ring point of a backend nobody can reach
}

/// The session groups a read tries, in the configured order: session order, a random
/// rotation of it (spreads the load), or the owners' measured latency (fastest first).
/// Fills `order` (reused across a batch's reads: this runs once per read).
void read_order(const replica_group_config& cfg, size_t groups, const size_t* owner,
                const std::map<std::string, double>* latency_us, std::vector<size_t>& order) {
  order.resize(groups);
  for (size_t g = 0; g < groups; ++g) order[g] = g;
  if (cfg.read_order == read_order_kind::random && groups > 1) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    std::rotate(order.begin(), order.begin() + long(rng() % groups), order.end());
  } else if (cfg.read_order == read_order_kind::latency && latency_us) {
    auto cost = [&](size_t g) {
      if (owner[g] == SIZE_MAX) return 1e300;
      const group_route& r = cfg.groups[owner[g]];
      if (!r.remote) return 0.0;  // on this node
      auto it = latency_us->find(r.node);
      return it == latency_us->end() ? 1000.0 : it->second;  // unmeasured: a guess, 1 ms
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return cost(a) < cost(b); });
  }
}

/// How many groups the session has.
size_t group_count(const replica_group_config& cfg) {
  return cfg.rings.empty() ? cfg.groups.size() : cfg.rings.size();
}

/// The session's group ids, in session order.
std::vector<uint32_t> session_groups(const replica_group_config& cfg) {
  std::vector<uint32_t> out;
  for (size_t g = 0; g < group_count(cfg); ++g)
    out.push_back(cfg.rings.empty() ? cfg.groups[g].group : cfg.rings[g].first);
  return out;
}

/// A read's policy: its own, else the node's. A listing's page comes from one replica of its
/// range (another, if that one fails).
success_policy read_policy_of(const replica_group_config& cfg, const kv_op& op) {
  if (op.kind == op_kind::list) return success_policy::one;
  return op.read >= 1 && op.read <= 3 ? success_policy(op.read - 1) : cfg.read_policy;
}

/// A write's policy: its own, else the node's.
success_policy write_policy_of(const replica_group_config& cfg, const kv_op& op) {
  return op.policy >= 1 && op.policy <= 3 ? success_policy(op.policy - 1) : cfg.policy;
}

/// Fills each operation's track (write or read, its policy, whether a read is wide) and
/// stamps the writes. Every replica of a write must store the same version, so with several
/// groups the coordinator stamps it; with one copy the shard does, under its lock, so that
/// versions follow the order writes reach the engine (ShardCore). A change is stamped by the
/// shard that computes it; a write that comes with a version (a change's record on its way
/// to the other groups) keeps it.
void track(const replica_group_config& cfg, op_batch& ops, size_t groups, pending_batch& p) {
  const bool stamp = groups > 1 || !cfg.rings.empty();
  for (size_t i = 0; i < ops.size(); ++i) {
    op_track& t = p.ops[i];
    t.write = is_write(ops[i].kind);
    t.change = ops[i].kind == op_kind::change;
    if (t.write) {
      t.policy = write_policy_of(cfg, ops[i]);
      if (stamp && !t.change && ops[i].version.stamp == 0) ops[i].version = cfg.clock->next();
      continue;
    }
    t.policy = read_policy_of(cfg, ops[i]);
    t.wide = t.policy != success_policy::one && groups > 1;
    if (t.wide && ops[i].kind == op_kind::get) t.repair_key.emplace(ops[i].id, ops[i].key);
  }
}

/// Each operation's owner route in every group (ops x groups; SIZE_MAX: it asks none there),
/// found once: ring lookups are the costly part.
std::vector<size_t> find_owners(const replica_group_config& cfg, const op_batch& ops,
                                const std::vector<uint32_t>& group_order) {
  const size_t groups = group_order.size();
  std::vector<size_t> owner(ops.size() * groups);
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t g = 0; g < groups; ++g)
      owner[i * groups + g] =
          asks_group(ops[i], group_order[g]) ? owner_route(cfg, g, ops[i].id) : SIZE_MAX;
  return owner;
}

/// Reads under `one`: the first group in the read order, not tried yet, whose owner is up
/// (else one whose owner is down, so that the result says unavailable). A change: the first
/// in session order whose owner is up, the same for every coordinator.
void choose_read_groups(const replica_group_config& cfg, const std::vector<size_t>& owner,
                        const std::vector<uint64_t>* tried,
                        const std::map<std::string, double>* latency_us, pending_batch& p) {
  const size_t groups = p.group_order.size();
  std::vector<size_t> order, session(groups);
  for (size_t g = 0; g < groups; ++g) session[g] = g;
  for (size_t i = 0; i < p.ops.size(); ++i) {
    size_t& read_group = p.ops[i].read_group;
    if ((p.ops[i].write && !p.ops[i].change) || p.ops[i].wide) continue;
    const size_t* own = &owner[i * groups];
    size_t fallback = SIZE_MAX;
    if (p.ops[i].change)
      order = session;
    else
      read_order(cfg, groups, own, latency_us, order);
    for (size_t g : order) {
      if (own[g] == SIZE_MAX || (tried && g < 64 && ((*tried)[i] >> g & 1))) continue;
      if (!cfg.groups[own[g]].down) {
        read_group = g;
        break;
      }
      if (fallback == SIZE_MAX) fallback = g;
    }
    if (read_group == SIZE_MAX) read_group = fallback;
  }
}

/// A listing's page ends where its owner's stretch of the ring does.
void end_list_at(kv_op& op, const storage::Id& end) {
  list_request q;
  if (!list_request::decode(op.data, &q)) return;  // the shard says it is invalid
  q.end = std::min(q.end, end);
  op.data = q.encode();
}

/// One request per (route, shard) that has work, group by group; a remote backend gets one
/// request for all its operations. An operation moves into the last request that takes it.
void build_requests(const replica_group_config& cfg, op_batch& ops,
                    const std::vector<size_t>& owner, const pending_batch& p,
                    std::vector<shard_request>& plan) {
  const size_t groups = p.group_order.size();
  std::map<std::pair<size_t, size_t>, size_t> slot;  // (route, shard) -> index in plan
  auto request_for = [&](size_t r, const storage::Id& id) -> size_t {
    const group_route& route = cfg.groups[r];
    size_t shard = route.remote ? 0 : shard_index(id, route.shards.size());
    auto [it, fresh] = slot.emplace(std::make_pair(r, shard), plan.size());
    if (fresh) {
      shard_request& req = plan.emplace_back();
      if (!route.remote) req.dest = route.shards[shard];
      req.core = shard < route.cores.size() ? route.cores[shard].get() : nullptr;
      req.peer = route.peer;
      req.backend = route.backend;
      req.where = replica_entry{route.group, route.node, route.backend, {}, {}};
      req.remote = route.remote;
      req.down = route.down;
      req.fsync_always = route.fsync_always;
    }
    return it->second;
  };
  auto asks = [&](size_t i, size_t g) {
    const op_track& t = p.ops[i];
    return owner[i * groups + g] != SIZE_MAX &&
           ((t.write && !t.change) || t.wide || t.read_group == g);
  };
  // Requests first, sized, then filled: growing each request's ops one by one moved them
  // (~300 bytes each) at every doubling.
  std::vector<size_t> at(ops.size() * groups, SIZE_MAX);  // (op, group) -> index in plan
  std::vector<size_t> last_group(ops.size(), SIZE_MAX);   // where each op is used last
  for (size_t g = 0; g < groups; ++g)
    for (size_t i = 0; i < ops.size(); ++i)
      if (asks(i, g)) {
        at[i * groups + g] = request_for(owner[i * groups + g], ops[i].id);
        last_group[i] = g;
      }
  std::vector<size_t> count(plan.size());
  for (size_t r : at)
    if (r != SIZE_MAX) ++count[r];
  for (size_t r = 0; r < plan.size(); ++r) {
    plan[r].ops.reserve(count[r]);
    plan[r].idx.reserve(count[r]);
  }
  for (size_t g = 0; g < groups; ++g) {
    for (size_t i = 0; i < ops.size(); ++i) {
      if (at[i * groups + g] == SIZE_MAX) continue;
      shard_request& req = plan[at[i * groups + g]];
      req.ops.push_back(last_group[i] == g ? std::move(ops[i]) : ops[i]);
      req.idx.push_back(i);
      if (req.ops.back().kind == op_kind::list && !cfg.rings.empty())
        end_list_at(req.ops.back(), cfg.rings[g].second.range_end(req.ops.back().id));
    }
  }
}

/// Plans a batch: tracks and stamps its operations, finds their owners, chooses the groups
/// reads ask, and builds the requests into *out. The caller sets the batch's deliver, and
/// finishes it at once if there are no requests.
std::shared_ptr<pending_batch> plan(const replica_group_config& cfg, op_batch& ops,
                                    std::vector<shard_request>* out,
                                    const std::vector<uint64_t>* tried = nullptr,
                                    const std::map<std::string, double>* latency_us = nullptr) {
  auto p = std::make_shared<pending_batch>();
  p->results.resize(ops.size());
  p->ops.resize(ops.size());
  p->group_order = session_groups(cfg);
  const size_t groups = p->group_order.size();
  track(cfg, ops, groups, *p);
  const std::vector<size_t> owner = find_owners(cfg, ops, p->group_order);
  choose_read_groups(cfg, owner, tried, latency_us, *p);
  build_requests(cfg, ops, owner, *p, *out);
  p->outstanding = out->size();
  return p;
}

// ---- Changes: the record one group's owner computed, written to the other groups. ----

/// A batch's changes (with several groups), found before plan() moves its operations.
struct change_list {
  std::vector<size_t> at;
  std::vector<success_policy> policy;
  std::vector<size_t> sent;  ///< of `at`, those whose record went to the other groups
};

change_list changes_of(const replica_group_config& cfg, const op_batch& ops) {
  change_list out;
  if (group_count(cfg) < 2) return out;
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].kind == op_kind::change)
      out.at.push_back(i), out.policy.push_back(write_policy_of(cfg, ops[i]));
  return out;
}

/// The replica writes that carry each applied change, version and all, to the groups that
/// did not compute it (c.sent says which changes they are).
op_batch fan_out(const replica_group_config& cfg, change_list& c, const result_batch& results) {
  op_batch out;
  c.sent.clear();
  const std::vector<uint32_t> groups = session_groups(cfg);
  for (size_t k = 0; k < c.at.size(); ++k) {
    const op_result& r = results[c.at[k]];
    if (r.status != op_status::ok || r.record.version.stamp == 0 || r.replicas.empty()) continue;
    kv_op w = replica_write(storage::Record(r.record));
    for (uint32_t g : groups)
      if (g != r.replicas.front().group) w.groups.push_back(g);
    out.push_back(std::move(w));
    c.sent.push_back(k);
  }
  return out;
}

/// Adds the other groups' entries to each change's result (in session order) and decides it
/// under its policy.
void fanned_in(const replica_group_config& cfg, const change_list& c, result_batch& results,
               result_batch& again) {
  const std::vector<uint32_t> groups = session_groups(cfg);
  for (size_t j = 0; j < c.sent.size() && j < again.size(); ++j) {
    op_result& r = results[c.at[c.sent[j]]];
    for (auto& e : again[j].replicas) r.replicas.push_back(std::move(e));
    sort_by_group(r.replicas, groups);
    r.status = decide(c.policy[c.sent[j]], r.replicas);
  }
}

// ---- Read repair and read failover (the actor's). ----

void run(replica_group_actor::stateful_pointer<replica_group_state> self, op_batch& ops,
         deliver_fn deliver, const std::vector<uint64_t>* tried = nullptr);

/// Applies each operation to the one local replica `route[i]` names, a batch per shard, and
/// gives each result that replica's entry, as pending_batch::record and finish would with
/// one replica asked (a write that found a newer version stored is ordered before it; every
/// policy's decision is the replica's status), without the plan's tracking and merging.
result_batch apply_at_one_replica(const replica_group_config& cfg, op_batch& ops,
                                  const std::vector<size_t>& route, storage::Unsynced* owed) {
  constexpr size_t shards_max = 256;  // the config's limit: (route, shard) in one number
  const size_t n = ops.size();
  // Reads alone take no shard lock and touch nothing of a shard's own: the first shard of
  // an engine answers them all, in one batch whose prefetches overlap.
  const bool reads =
      std::none_of(ops.begin(), ops.end(), [](const kv_op& o) { return is_write(o.kind); });
  std::vector<size_t> dest(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& cores = cfg.groups[route[i]].cores;
    size_t shard = shard_index(ops[i].id, cores.size());
    if (reads && cores[shard]->engine() == cores[0]->engine()) shard = 0;
    dest[i] = route[i] * shards_max + shard;
  }
  auto core = [&](size_t d) { return cfg.groups[d / shards_max].cores[d % shards_max].get(); };
  result_batch out;
  if (n > 0 && std::all_of(dest.begin(), dest.end(), [&](size_t d) { return d == dest[0]; })) {
    out = core(dest[0])->apply(ops, owed);
  } else {  // each shard's operations in their order, as the plan's requests would be
    out.resize(n);
    op_batch part;
    std::vector<size_t> at;
    part.reserve(n), at.reserve(n);
    for (size_t first = 0; first < n; ++first) {
      const size_t d = dest[first];
      if (d == SIZE_MAX) continue;  // sent with an earlier one's shard
      part.clear(), at.clear();
      for (size_t i = first; i < n; ++i)
        if (dest[i] == d) dest[i] = SIZE_MAX, part.push_back(std::move(ops[i])), at.push_back(i);
      result_batch got = core(d)->apply(part, owed);
      for (size_t k = 0; k < at.size() && k < got.size(); ++k) out[at[k]] = std::move(got[k]);
    }
  }
  out.resize(n);  // a shard that answered short: the rest stay unavailable
  for (size_t i = 0; i < n; ++i) {
    op_result& r = out[i];
    // ops[i] may have moved, but not its kind.
    if (r.status == op_status::stale && is_write(ops[i].kind))
      r.status = op_status::ok, r.message.clear();
    const group_route& at = cfg.groups[route[i]];
    r.replicas.assign(1, replica_entry{at.group, at.node, at.backend, r.status, r.version});
  }
  return out;
}

/// The local shard that owns an id in a route, and whether it may be applied to directly.
ShardCore* direct_core(const group_route& route, const storage::Id& id, size_t* shard) {
  *shard = shard_index(id, route.shards.size());
  return *shard < route.cores.size() && !route.fsync_always ? route.cores[*shard].get() : nullptr;
}

/// A read repair, fire and forget: anti-entropy catches whatever it misses.
void send_repair(replica_group_actor::stateful_pointer<replica_group_state> self,
                 const replica_entry& to, kv_op w) {
  const auto& cfg = self->state.cfg;
  for (const auto& route : cfg.groups) {
    if (route.node != to.node || route.backend != to.backend) continue;
    if (cfg.read_repairs) ++*cfg.read_repairs;
    op_batch one{std::move(w)};
    size_t shard = 0;
    if (route.remote) {
      if (!route.down && route.peer)
        self->request(route.peer, cfg.timeout, atom::apply_v, route.backend, std::move(one))
            .then([](result_batch&) {}, [](caf::error&) {});
    } else if (ShardCore* core = direct_core(route, one[0].id, &shard)) {
      core->apply(one);
    } else if (shard < route.shards.size()) {
      self->request(route.shards[shard], caf::infinite, atom::apply_v, std::move(one))
          .then([](result_batch&) {}, [](caf::error&) {});
    }
    return;
  }
}

/// Whether a read under `one` passes its answer to the next group: a miss (the next group may
/// hold a write this one missed), or a replica that failed, timed out or is down.
bool fails_over(op_status s) {
  return s == op_status::not_found || s == op_status::timeout || s == op_status::unavailable ||
         s == op_status::corruption || s == op_status::io_error;
}

/// Per read under `one`, the session groups asked so far (bit g: the g-th group).
using tried_groups = std::vector<uint64_t>;

/// Wraps deliver so that a read under `one` that fails over (see fails_over) asks the next
/// group in its read order, once per group: its result then lists every replica asked, in
/// the order asked. A miss that carries a tombstone newer than what a later group holds
/// stays a miss (a delete is not undone by a replica that missed it).
deliver_fn with_read_failover(replica_group_actor::stateful_pointer<replica_group_state> self,
                              op_batch reads, std::vector<size_t> at, deliver_fn deliver,
                              const pending_batch& p, const tried_groups* before) {
  tried_groups tried;
  for (size_t k = 0; k < at.size(); ++k) {
    size_t i = at[k], g = p.ops[i].read_group;  // SIZE_MAX: no group left to ask
    tried.push_back(g < 64 ? (before ? (*before)[i] : 0) | uint64_t(1) << g : ~uint64_t(0));
  }
  const size_t groups = std::min<size_t>(group_count(self->state.cfg), 64);
  return [self, reads = std::move(reads), at = std::move(at), tried = std::move(tried), groups,
          deliver = std::move(deliver)](result_batch&& results) mutable {
    op_batch retry;
    std::vector<size_t> where;
    tried_groups masks;
    for (size_t k = 0; k < at.size(); ++k)
      if (fails_over(results[at[k]].status) && size_t(__builtin_popcountll(tried[k])) < groups)
        retry.push_back(std::move(reads[k])), masks.push_back(tried[k]), where.push_back(at[k]);
    if (retry.empty()) return deliver(std::move(results));
    std::vector<std::pair<storage::Id, std::string>> keys;  // for repairs of corrupt replicas
    for (const auto& o : retry) keys.emplace_back(o.id, o.key);
    auto merge = [self, results = std::move(results), where, keys = std::move(keys),
                  deliver](result_batch&& again) mutable {
      for (size_t j = 0; j < where.size() && j < again.size(); ++j) {
        op_result& r = results[where[j]];
        op_result earlier = std::move(r);
        r = std::move(again[j]);
        r.replicas.insert(r.replicas.begin(), earlier.replicas.begin(), earlier.replicas.end());
        bool found = r.status == op_status::ok;
        if (earlier.status == op_status::not_found &&
            (found ? r.version < earlier.version : r.status != op_status::not_found)) {
          r.status = op_status::not_found;  // an earlier miss, newer than what was found later
          r.record = {};
          r.version = earlier.version;
          r.message.clear();
        }
        // A replica that failed its checksum gets the healthy copy found later.
        replica_entry healthy{0, {}, 0, r.status, r.version};
        for (const auto& e : earlier.replicas)
          if (e.status == op_status::corruption && r.version.stamp != 0)
            if (auto w = repair_write(r, healthy, keys[j].first, keys[j].second))
              send_repair(self, e, std::move(*w));
      }
      deliver(std::move(results));
    };
    run(self, retry, std::move(merge), &masks);
  };
}

/// Wraps deliver so that each change the first phase applied is then written to the other
/// groups, and decided over every group's entry.
deliver_fn with_change_fan_out(replica_group_actor::stateful_pointer<replica_group_state> self,
                               change_list changes, deliver_fn deliver) {
  return [self, changes = std::move(changes),
          deliver = std::move(deliver)](result_batch&& results) mutable {
    op_batch writes = fan_out(self->state.cfg, changes, results);
    if (writes.empty()) return deliver(std::move(results));
    auto held = std::make_shared<result_batch>(std::move(results));
    run(self, writes, [self, held, changes, deliver](result_batch&& again) mutable {
      fanned_in(self->state.cfg, changes, *held, again);
      deliver(std::move(*held));
    });
  };
}

// ---- The remote outbox: one request per remote backend per flush. ----

/// Gathers a request for a remote backend with other batches' operations for it, until the
/// flush that a message behind every one already waiting brings.
void enqueue_remote(replica_group_actor::stateful_pointer<replica_group_state> self,
                    const std::shared_ptr<pending_batch>& p, shard_request& req) {
  auto& st = self->state;
  remote_outbox& box = st.outbox[{req.where.node, req.backend}];
  box.peer = req.peer;
  box.parts.emplace_back(
      req.ops.size(), [p, idx = req.idx, where = req.where](result_batch* got, op_status failure) {
        p->record(idx, where, got, failure);
      });
  for (auto& o : req.ops) box.ops.push_back(std::move(o));
  if (!st.flush_pending) {
    st.flush_pending = true;
    self->send(self, atom::flush_v);
  }
}

/// One request per remote backend for everything gathered since the last flush.
void flush(replica_group_actor::stateful_pointer<replica_group_state> self) {
  auto& st = self->state;
  st.flush_pending = false;
  auto boxes = std::move(st.outbox);
  st.outbox.clear();
  for (auto& [key, box] : boxes) {
    auto parts = std::make_shared<decltype(box.parts)>(std::move(box.parts));
    const std::string node = key.first;
    auto sent = std::chrono::steady_clock::now();
    self->request(box.peer, caf::duration{st.cfg.timeout}, atom::apply_v, key.second,
                  std::move(box.ops))
        .then(
            [self, parts, node, sent](result_batch& got) {
              // The node's reply latency, smoothed: what a latency read order goes by.
              double us =
                  std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - sent)
                      .count();
              auto [it, fresh] = self->state.latency_us.emplace(node, us);
              if (!fresh) it->second = 0.8 * it->second + 0.2 * us;
              size_t at = 0;
              for (auto& [n, take] : *parts) {
                size_t end = std::min(got.size(), at + n), begin = std::min(at, end);
                result_batch slice(std::make_move_iterator(got.begin() + begin),
                                   std::make_move_iterator(got.begin() + end));
                take(&slice, op_status::unavailable);
                at += n;
              }
            },
            [parts](caf::error& err) {
              op_status s =
                  err == caf::sec::request_timeout ? op_status::timeout : op_status::unavailable;
              for (auto& [n, take] : *parts) take(nullptr, s);
            });
  }
}

// ---- A listing's page over many short stretches of the ring. ----

/// A page ends where its owner's stretch of the ring does, and a group of several backends
/// has about as many stretches as ring points: a page a stretch would cost a round trip each.
/// So a listing's page (a batch of that one op) asks the next stretches at once, an op each,
/// each bounded by its stretch, and their answers join into the one page asked for.
constexpr size_t list_stretches = 16;

/// The first ids of the stretches the page at ops[0] asks, its op now one per stretch; none
/// (and ops as they were) when one stretch covers it, or it carries payloads (whose pages
/// are bounded by bytes).
std::vector<storage::Id> split_listing(const replica_group_config& cfg, op_batch& ops) {
  list_request q;
  if (ops.size() != 1 || ops[0].kind != op_kind::list || cfg.rings.empty() ||
      !list_request::decode(ops[0].data, &q) || q.payload || q.manifests)
    return {};
  const ring* r = nullptr;  // the session's first group the listing asks: any ring would do
  for (const auto& [group, g] : cfg.rings)
    if (!r && asks_group(ops[0], group)) r = &g;
  // Each stretch examines up to COUNT records: no more stretches than keep the page within
  // list_count_max (one for the largest COUNT, 16 for most).
  const size_t most =
      std::clamp<size_t>(list_count_max / std::max<uint32_t>(q.count, 1), 1, list_stretches);
  std::vector<storage::Id> starts{ops[0].id};
  for (storage::Id end; r && starts.size() < most; starts.push_back(end)) {
    end = r->range_end(starts.back());
    if (!(end < q.end) || !next_id(end, &end)) break;
  }
  if (starts.size() == 1) return {};
  const kv_op page = ops[0];
  ops.clear();
  for (size_t j = 0; j < starts.size(); ++j) {
    kv_op& o = ops.emplace_back(page);
    o.id = starts[j];
    list_request part = q;
    if (j + 1 < starts.size()) previous_id(starts[j + 1], &part.end);
    o.data = part.encode();
  }
  return starts;
}

/// The stretches' answers as the one page asked for: each stretch's keys up to the first
/// that stopped inside its stretch (its count reached) or failed (after the first: the next
/// page starts there).
result_batch join_listing(result_batch parts, const std::vector<storage::Id>& starts) {
  op_result out = std::move(parts[0]);
  for (size_t j = 1; j < parts.size() && out.status == op_status::ok; ++j) {
    op_result& r = parts[j];
    if (!out.existed || out.record.id != starts[j] || r.status != op_status::ok) break;
    for (auto& e : r.listed) out.listed.push_back(std::move(e));
    for (auto& e : r.replicas) out.replicas.push_back(std::move(e));
    out.existed = r.existed;
    out.record.id = r.record.id;
  }
  return result_batch{std::move(out)};
}

// ---- The actor: a batch's journey, routes. ----

/// Plans a batch and sends its requests: a local shard that never blocks is applied to here,
/// a remote backend's go to the outbox, the rest to their shard actors.
void run(replica_group_actor::stateful_pointer<replica_group_state> self, op_batch& ops,
         deliver_fn deliver, const std::vector<uint64_t>* tried) {
  const auto& cfg = self->state.cfg;
  if (cfg.mailbox && !tried) cfg.mailbox->sample_of(self);
  if (!cfg.not_joined.empty()) {
    result_batch out(ops.size());
    for (auto& r : out) r.status = op_status::unavailable, r.message = cfg.not_joined;
    return deliver(std::move(out));
  }
  if (!tried) {
    if (auto starts = split_listing(cfg, ops); !starts.empty())
      deliver = [starts = std::move(starts), deliver = std::move(deliver)](result_batch&& r) {
        deliver(join_listing(std::move(r), starts));
      };
  }
  std::vector<shard_request> reqs;
  // Reads under `one` may fail over: copied before plan() moves them into its requests.
  op_batch reads;
  std::vector<size_t> at;
  for (size_t i = 0; group_count(cfg) > 1 && i < ops.size(); ++i)
    if (!is_write(ops[i].kind) && read_policy_of(cfg, ops[i]) == success_policy::one)
      reads.push_back(ops[i]), at.push_back(i);
  change_list changes = changes_of(cfg, ops);
  if (!changes.at.empty())
    deliver = with_change_fan_out(self, std::move(changes), std::move(deliver));
  auto p = plan(cfg, ops, &reqs, tried, &self->state.latency_us);
  p->deliver = reads.empty() ? std::move(deliver)
                             : with_read_failover(self, std::move(reads), std::move(at),
                                                  std::move(deliver), *p, tried);
  if (reqs.empty()) return p->finish();
  p->repair = [self](const replica_entry& to, kv_op w) { send_repair(self, to, std::move(w)); };
  for (auto& req : reqs) {
    if (req.down) {  // a node known to be down: say so now rather than after the timeout
      p->record(req.idx, req.where, nullptr, op_status::unavailable);
      continue;
    }
    if (!req.remote && req.core && !req.fsync_always) {  // a local shard that never blocks: no hop
      result_batch got = req.core->apply(req.ops);
      p->record(req.idx, req.where, &got, op_status::unavailable);
      continue;
    }
    if (req.remote) {
      enqueue_remote(self, p, req);
      continue;
    }
    self->request(req.dest, caf::infinite, atom::apply_v, std::move(req.ops))
        .then([p, idx = req.idx, where = req.where](
                  result_batch& got) { p->record(idx, where, &got, op_status::unavailable); },
              [p, idx = req.idx, where = req.where](caf::error&) {
                p->record(idx, where, nullptr, op_status::unavailable);
              });
  }
}

/// Rebuilds the routes from a route table: this node's own backends as they are, every
/// other node's backends through its PEER, and each group's ring.
void set_routes(replica_group_state& st, const route_table& table,
                const std::vector<std::string>& down) {
  st.cfg.groups = st.local;
  if (table.nodes.size() > 1) st.cfg.not_joined.clear();  // it knows its cluster now
  for (const auto& [name, node] : table.nodes) {
    bool is_local = false;
    for (const auto& l : st.local) is_local = is_local || l.node == name;
    if (is_local) continue;
    for (const auto& b : node.backends) {
      group_route r{b.group, name, b.backend, {}, true};
      r.peer = peer_of(node);
      r.down = !r.peer || std::find(down.begin(), down.end(), name) != down.end();
      st.cfg.groups.push_back(std::move(r));
    }
  }
  st.cfg.rings.clear();
  for (auto& [group, r] : ring::build(table)) st.cfg.rings.emplace_back(group, std::move(r));
  if (st.cfg.snapshot) st.cfg.snapshot->set(LocalCoordinator::for_reads(st.cfg));
}

}  // namespace

replica_group_actor::behavior_type replica_group(
    replica_group_actor::stateful_pointer<replica_group_state> self, replica_group_config cfg) {
  self->state.cfg = std::move(cfg);
  self->state.local = self->state.cfg.groups;
  return {
      [=](atom::exec, op_batch& ops) -> caf::typed_response_promise<result_batch> {
        auto rp = self->make_response_promise<result_batch>();
        run(self, ops, [rp](result_batch&& r) mutable { rp.deliver(std::move(r)); });
        return rp;
      },
      [=](atom::exec, op_batch& ops, batch_sink_ptr& sink) {
        run(self, ops, [sink](result_batch&& r) { sink->done(std::move(r)); });
      },
      [=](atom::routes, route_table& table, std::vector<std::string>& down) {
        set_routes(self->state, table, down);
      },
      [=](atom::flush) { flush(self); },
  };
}

std::shared_ptr<LocalCoordinator> LocalCoordinator::make(const replica_group_config& cfg) {
  // With fsync `always` too, for a frontend connection that owes the fsync and settles it
  // once per round (storage/unsynced.hpp; Coordinator::exec).
  for (const auto& g : cfg.groups)
    if (g.remote || g.cores.size() != g.shards.size()) return nullptr;
  return std::shared_ptr<LocalCoordinator>(new LocalCoordinator(cfg));
}

LocalCoordinator::LocalCoordinator(replica_group_config cfg) : cfg_(std::move(cfg)) {
  for (const auto& g : cfg_.groups) waits_for_fsync_ = waits_for_fsync_ || g.fsync_always;
  alone_ = cfg_.groups.size() == 1 && cfg_.rings.empty() && cfg_.not_joined.empty() &&
           !cfg_.groups[0].cores.empty();
}

result_batch LocalCoordinator::run(op_batch& ops, storage::Unsynced* owed) const {
  // An operation naming its groups may name none of this node's: the plan says so.
  if (alone_ &&
      std::all_of(ops.begin(), ops.end(), [](const kv_op& o) { return o.groups.empty(); }))
    return run_alone(ops, owed);
  change_list changes = changes_of(cfg_, ops);
  result_batch out = run_once(ops, owed);
  op_batch writes = fan_out(cfg_, changes, out);
  if (!writes.empty()) {
    result_batch again = run_once(writes, owed);
    fanned_in(cfg_, changes, out, again);
  }
  return out;
}

result_batch LocalCoordinator::run_once(op_batch& ops, storage::Unsynced* owed) const {
  result_batch out;
  std::vector<shard_request> reqs;
  auto p = plan(cfg_, ops, &reqs);
  p->deliver = [&out](result_batch&& r) { out = std::move(r); };
  if (reqs.empty()) p->finish();
  p->repair = [this, owed](const replica_entry& to, kv_op w) {
    for (const auto& route : cfg_.groups) {
      if (route.node != to.node || route.backend != to.backend) continue;
      ShardCore* core = route.cores[shard_index(w.id, route.cores.size())].get();
      if (cfg_.read_repairs) ++*cfg_.read_repairs;
      op_batch one{std::move(w)};
      core->apply(one, owed);
      return;
    }
  };
  for (auto& req : reqs) {
    result_batch got = req.core->apply(req.ops, owed);
    p->record(req.idx, req.where, &got, op_status::unavailable);
  }
  return out;
}

result_batch LocalCoordinator::run_alone(op_batch& ops, storage::Unsynced* owed) const {
  return apply_at_one_replica(cfg_, ops, std::vector<size_t>(ops.size(), 0), owed);
}

std::shared_ptr<const LocalCoordinator> LocalCoordinator::for_reads(replica_group_config cfg) {
  cfg.snapshot = nullptr;  // it holds this coordinator: no cycle
  return std::shared_ptr<const LocalCoordinator>(new LocalCoordinator(std::move(cfg)));
}

std::optional<result_batch> LocalCoordinator::read_here(const op_batch& ops) const {
  if (!cfg_.not_joined.empty() || cfg_.read_order == read_order_kind::random) return {};
  // Each read's replica, as choose_read_groups() would pick it: under `latency` the first
  // group whose owner is on this node; under `session` the first whose owner is up, which
  // must be on this node.
  const std::vector<uint32_t> groups = session_groups(cfg_);
  std::vector<size_t> route(ops.size(), SIZE_MAX);
  for (size_t i = 0; i < ops.size(); ++i) {
    const kv_op& o = ops[i];
    if ((o.kind != op_kind::get && o.kind != op_kind::lookup) ||
        read_policy_of(cfg_, o) != success_policy::one)
      return {};
    for (size_t g = 0; g < groups.size() && route[i] == SIZE_MAX; ++g) {
      const size_t r = asks_group(o, groups[g]) ? owner_route(cfg_, g, o.id) : SIZE_MAX;
      if (r == SIZE_MAX) continue;
      const group_route& at = cfg_.groups[r];
      if (cfg_.read_order == read_order_kind::latency ? !at.remote : !at.down) route[i] = r;
    }
    if (route[i] == SIZE_MAX) return {};
    const group_route& at = cfg_.groups[route[i]];
    if (at.remote || at.cores.empty() || at.cores.size() != at.shards.size()) return {};
  }
  if (ops.empty()) return {};
  op_batch copy = ops;  // applied by moving; the actor gets the originals back on a miss
  result_batch out = apply_at_one_replica(cfg_, copy, route, nullptr);
  for (const op_result& r : out)
    if (r.status != op_status::ok) return {};
  return out;
}

}  // namespace apsis
