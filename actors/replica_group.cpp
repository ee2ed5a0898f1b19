#include "actors/replica_group.hpp"

#include "actors/shard.hpp"

#include <algorithm>
#include <map>
#include <random>

namespace apsis {

namespace {

using deliver_fn = std::function<void(result_batch&&)>;
/// Sends a read repair: the newest version of a key, to a replica that holds an older one.
using repair_fn = std::function<void(const replica_entry& to, kv_op write)>;

bool is_write(op_kind k) { return k != op_kind::get && k != op_kind::lookup; }

/// A batch in flight: results fill in as shards answer or time out.
struct pending_batch {
  result_batch results;
  std::vector<bool> writes;
  success_policy policy;               ///< the session's
  std::vector<uint8_t> op_policy;      ///< per op: 0 the session's, else success_policy + 1
  std::vector<bool> latest;            ///< per op: a read-latest
  std::vector<bool> latest_get;        ///< per op: a read-latest get (repairs need its payload)
  std::vector<std::pair<storage::Id, std::string>> latest_key;  ///< per read-latest, for repairs
  size_t outstanding = 0;
  deliver_fn deliver;
  repair_fn repair;                   ///< sends a read repair (null: none)
  std::vector<uint32_t> group_order;  ///< the session's groups: replica entries come so
  std::vector<bool> answered;         ///< per op: a replica's answer has filled the result
  std::vector<size_t> read_group;     ///< per read: the session group asked (SIZE_MAX: none)

  /// A read-latest's answer is the newest version any replica holds (a tombstone's too);
  /// replicas that answered with an older one get the newest in the background.
  void settle_latest(size_t i) {
    op_result& r = results[i];
    const replica_entry* best = nullptr;
    for (const auto& e : r.replicas) {
      if (e.status != op_status::ok && e.status != op_status::not_found) continue;
      if (!best || best->version < e.version || (best->version == e.version && e.status == op_status::ok))
        best = &e;
    }
    if (!best) {
      r.status = r.replicas.empty() ? op_status::unavailable : r.replicas.front().status;
      return;
    }
    r.status = best->status;
    if (best->status != op_status::ok) r.record = {}, r.version = best->version;
    if (!repair || !latest_get[i]) return;  // a lookup carries no payload to repair with
    for (const auto& e : r.replicas) {
      if ((e.status != op_status::ok && e.status != op_status::not_found) || !(e.version < best->version)) continue;
      if (best->status == op_status::not_found && best->version.stamp == 0) continue;
      kv_op w;
      if (best->status == op_status::ok && r.record.version == best->version) {
        w.kind = op_kind::put;
        w.json = r.record.json;
        w.data = r.record.data;
        w.expiry_ms = r.record.expiry_ms;
        w.user_flags = r.record.user_flags;
      } else if (best->status == op_status::not_found) {
        w.kind = op_kind::remove;
      } else {
        continue;
      }
      w.id = latest_key[i].first;
      w.key = latest_key[i].second;
      w.version = best->version;
      repair(e, std::move(w));
    }
  }

  void finish() {
    auto rank = [&](const replica_entry& e) {
      return std::find(group_order.begin(), group_order.end(), e.group) - group_order.begin();
    };
    for (size_t i = 0; i < results.size(); ++i) {
      op_result& r = results[i];
      std::stable_sort(r.replicas.begin(), r.replicas.end(),
                       [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
      if (writes[i])
        r.status = decide(op_policy[i] ? success_policy(op_policy[i] - 1) : policy, r.replicas);
      else if (latest[i])
        settle_latest(i);
      else
        r.status = r.replicas.empty() ? op_status::unavailable : r.replicas.front().status;
      if (r.replicas.empty() && r.message.empty())
        r.message = "no replica to ask: no group of the session owns the key, or none named is in it";
    }
    deliver(std::move(results));
  }

  /// One shard's answer (got) or failure for the operations at idx.
  void record(const std::vector<size_t>& idx, const replica_entry& where, result_batch* got,
              op_status failure) {
    for (size_t k = 0; k < idx.size(); ++k) {
      op_result& r = results[idx[k]];
      replica_entry e = where;
      e.status = failure;
      if (got && k < got->size()) {
        op_result& one = (*got)[k];
        // A write that finds a newer version stored lost to a concurrent one (newest wins):
        // it is ordered before that write, not failed.
        if (writes[idx[k]] && one.status == op_status::stale) {
          one.status = op_status::ok;
          one.message.clear();
        }
        e.status = one.status;
        e.version = one.version;
        // The first replica to answer carries the payload; for a read-latest, the newest.
        const size_t j = idx[k];
        bool carry = latest[j] ? one.status == op_status::ok &&
                                     (!answered[j] || r.record.version < one.version)
                               : !answered[j];
        if (carry) {
          answered[j] = true;
          r.record = std::move(one.record);
          r.message = std::move(one.message);
          r.version = one.version;
          r.json_size = one.json_size;
          r.data_size = one.data_size;
        }
        r.existed = r.existed || one.existed;
      }
      r.replicas.push_back(std::move(e));
    }
    if (--outstanding == 0) finish();
  }
};

struct shard_request {
  shard_actor dest;
  ShardCore* core = nullptr;  ///< the local shard's core, for the direct path
  peer_actor peer;            ///< a remote backend's node
  uint32_t backend = 0;
  op_batch ops;
  std::vector<size_t> idx;
  replica_entry where;
  bool remote = false, down = false, blocking = false;
};

/// Whether an operation asks a group: those it names, else every group of the session.
bool asks_group(const kv_op& op, uint32_t group) {
  return op.groups.empty() || std::find(op.groups.begin(), op.groups.end(), group) != op.groups.end();
}

/// Which route owns an id in the session's g-th group.
size_t owner_route(const replica_group_config& cfg, size_t g, const storage::Id& id) {
  if (cfg.rings.empty()) return g;
  const ring::owner* o = cfg.rings[g].second.owner_of(id);
  for (size_t r = 0; o && r < cfg.groups.size(); ++r)
    if (cfg.groups[r].node == o->node && cfg.groups[r].backend == o->backend) return r;
  return SIZE_MAX;  // a ring point of a backend nobody can reach
}

/// Versions the writes and splits the batch into one request per (backend, shard) that has
/// work: a remote backend gets one request for all its operations. With no requests at all,
/// the batch is finished (delivered) at once.
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
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost(a) < cost(b); });
  }
}

std::shared_ptr<pending_batch> plan(const replica_group_config& cfg, op_batch& ops,
                                    deliver_fn deliver, std::vector<shard_request>* out,
                                    const std::vector<uint64_t>* tried = nullptr,
                                    const std::map<std::string, double>* latency_us = nullptr) {
  auto p = std::make_shared<pending_batch>();
  p->results.resize(ops.size());
  p->writes.resize(ops.size());
  p->answered.resize(ops.size());
  p->policy = cfg.policy;
  p->op_policy.resize(ops.size());
  p->latest.resize(ops.size());
  p->latest_key.resize(ops.size());
  p->latest_get.resize(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    p->op_policy[i] = ops[i].policy <= 3 ? ops[i].policy : 0;
    p->latest[i] = ops[i].latest && !is_write(ops[i].kind);
    p->latest_get[i] = p->latest[i] && ops[i].kind == op_kind::get;
    if (p->latest[i]) p->latest_key[i] = {ops[i].id, ops[i].key};
  }
  p->deliver = std::move(deliver);
  const size_t groups = cfg.rings.empty() ? cfg.groups.size() : cfg.rings.size();
  for (size_t g = 0; g < groups; ++g)
    p->group_order.push_back(cfg.rings.empty() ? cfg.groups[g].group : cfg.rings[g].first);
  // Every replica of a write must store the same version, so with several groups the
  // coordinator stamps it; with one, the shard does (ShardCore), in the order it applies.
  const bool stamp = groups > 1 || !cfg.rings.empty();
  for (size_t i = 0; i < ops.size(); ++i) {
    p->writes[i] = is_write(ops[i].kind);
    if (p->writes[i] && stamp) ops[i].version = cfg.clock->next();
  }
  std::vector<shard_request>& plan = *out;
  std::map<std::pair<size_t, size_t>, size_t> slot;  // (route, shard) -> index in plan
  auto request_for = [&](size_t r, const storage::Id& id) -> shard_request& {
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
      req.blocking = route.blocking;
    }
    return plan[it->second];
  };
  // Each op's owner route in every group, found once (ring lookups are the costly part).
  std::vector<size_t> owner(ops.size() * groups);
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t g = 0; g < groups; ++g)
      owner[i * groups + g] = asks_group(ops[i], p->group_order[g]) ? owner_route(cfg, g, ops[i].id) : SIZE_MAX;
  // Reads: the first group in the read order, not tried yet, whose owner is up (else one
  // whose owner is down, so that the result says unavailable).
  std::vector<size_t>& read_group = p->read_group;
  read_group.assign(ops.size(), SIZE_MAX);
  std::vector<size_t> order;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (p->writes[i] || p->latest[i]) continue;
    const size_t* own = &owner[i * groups];
    size_t fallback = SIZE_MAX;
    read_order(cfg, groups, own, latency_us, order);
    for (size_t g : order) {
      if (own[g] == SIZE_MAX || (tried && g < 64 && ((*tried)[i] >> g & 1))) continue;
      if (!cfg.groups[own[g]].down) {
        read_group[i] = g;
        break;
      }
      if (fallback == SIZE_MAX) fallback = g;
    }
    if (read_group[i] == SIZE_MAX) read_group[i] = fallback;
  }
  auto asks = [&](size_t i, size_t g) {
    return owner[i * groups + g] != SIZE_MAX && (p->writes[i] || p->latest[i] || read_group[i] == g);
  };
  std::vector<size_t> last_group(ops.size(), SIZE_MAX);  // where each op is used last
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t g = 0; g < groups; ++g)
      if (asks(i, g)) last_group[i] = g;
  for (size_t g = 0; g < groups; ++g) {
    for (size_t i = 0; i < ops.size(); ++i) {
      if (!asks(i, g)) continue;
      shard_request& req = request_for(owner[i * groups + g], ops[i].id);
      req.ops.push_back(last_group[i] == g ? std::move(ops[i]) : ops[i]);
      req.idx.push_back(i);
    }
  }
  p->outstanding = plan.size();
  if (plan.empty()) p->finish();
  return p;
}

void run(replica_group_actor::stateful_pointer<replica_group_state> self, op_batch& ops,
         deliver_fn deliver, const std::vector<uint64_t>* tried = nullptr);

/// The local shard that owns an id in a route, and whether it may be applied to directly.
ShardCore* direct_core(const group_route& route, const storage::Id& id, size_t* shard) {
  *shard = shard_index(id, route.shards.size());
  return *shard < route.cores.size() && !route.blocking ? route.cores[*shard].get() : nullptr;
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

/// Wraps deliver so that a read whose group failed (timeout, unavailable) asks the next
/// group in its read order, once per group: its result then lists every replica asked, in
/// the order asked. `asked`: per op, the group asked now and the groups tried before.
deliver_fn with_read_failover(replica_group_actor::stateful_pointer<replica_group_state> self,
                              const op_batch& ops, deliver_fn deliver,
                              std::shared_ptr<std::pair<std::vector<size_t>, std::vector<uint64_t>>> asked) {
  const auto& cfg = self->state.cfg;
  if ((cfg.rings.empty() ? cfg.groups.size() : cfg.rings.size()) < 2) return deliver;
  op_batch reads;
  std::vector<size_t> at;
  for (size_t i = 0; i < ops.size(); ++i)  // a read-latest asked every group already
    if (!is_write(ops[i].kind) && !ops[i].latest) reads.push_back(ops[i]), at.push_back(i);
  if (reads.empty()) return deliver;
  return [self, reads = std::move(reads), at = std::move(at), deliver = std::move(deliver),
          asked](result_batch&& results) mutable {
    const auto& cfg = self->state.cfg;
    const size_t groups = cfg.rings.empty() ? cfg.groups.size() : cfg.rings.size();
    op_batch retry;
    std::vector<size_t> where;
    std::vector<uint64_t> tried;
    for (size_t k = 0; k < at.size(); ++k) {
      size_t i = at[k], g = i < asked->first.size() ? asked->first[i] : SIZE_MAX;
      if (g == SIZE_MAX || g >= 64) continue;
      uint64_t mask = asked->second[i] | (uint64_t(1) << g);
      op_status s = results[i].status;
      if ((s == op_status::timeout || s == op_status::unavailable) &&
          size_t(__builtin_popcountll(mask)) < std::min<size_t>(groups, 64))
        retry.push_back(reads[k]), tried.push_back(mask), where.push_back(i);
    }
    if (retry.empty()) return deliver(std::move(results));
    auto merge = [results = std::move(results), where, deliver](result_batch&& again) mutable {
      for (size_t j = 0; j < where.size() && j < again.size(); ++j) {
        op_result& r = results[where[j]];
        auto before = std::move(r.replicas);
        r = std::move(again[j]);
        r.replicas.insert(r.replicas.begin(), before.begin(), before.end());
      }
      deliver(std::move(results));
    };
    run(self, retry, std::move(merge), &tried);
  };
}

void run(replica_group_actor::stateful_pointer<replica_group_state> self, op_batch& ops,
         deliver_fn deliver, const std::vector<uint64_t>* tried) {
  const auto& cfg = self->state.cfg;
  if (cfg.mailbox && !tried) cfg.mailbox->sample_of(self);
  std::vector<shard_request> reqs;
  auto asked = std::make_shared<std::pair<std::vector<size_t>, std::vector<uint64_t>>>();
  auto p = plan(cfg, ops, with_read_failover(self, ops, std::move(deliver), asked), &reqs, tried,
                &self->state.latency_us);
  asked->first = p->read_group;
  asked->second = tried ? *tried : std::vector<uint64_t>(ops.size(), 0);
  p->repair = [self](const replica_entry& to, kv_op w) { send_repair(self, to, std::move(w)); };
  for (auto& req : reqs) {
    if (req.down) {  // a node known to be down: say so now rather than after the timeout
      p->record(req.idx, req.where, nullptr, op_status::unavailable);
      continue;
    }
    if (!req.remote && req.core && !req.blocking) {  // a local shard that never blocks: no hop
      result_batch got = req.core->apply(req.ops);
      p->record(req.idx, req.where, &got, op_status::unavailable);
      continue;
    }
    if (req.remote) {  // gathered with other batches' operations for the same backend
      auto& st = self->state;
      remote_outbox& box = st.outbox[{req.where.node, req.backend}];
      box.peer = req.peer;
      box.parts.emplace_back(req.ops.size(), [p, idx = req.idx, where = req.where](
                                                 result_batch* got, op_status failure) {
        p->record(idx, where, got, failure);
      });
      for (auto& o : req.ops) box.ops.push_back(std::move(o));
      if (!st.flush_pending) {  // behind every message already waiting: they join this flush
        st.flush_pending = true;
        self->send(self, atom::tick_v);
      }
      continue;
    }
    self->request(req.dest, caf::infinite, atom::apply_v, std::move(req.ops))
        .then([p, idx = req.idx, where = req.where](result_batch& got) {
                p->record(idx, where, &got, op_status::unavailable);
              },
              [p, idx = req.idx, where = req.where](caf::error&) {
                p->record(idx, where, nullptr, op_status::unavailable);
              });
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
    self->request(box.peer, caf::duration{st.cfg.timeout}, atom::apply_v, key.second, std::move(box.ops))
        .then(
            [self, parts, node, sent](result_batch& got) {
              // The node's reply latency, smoothed: what a latency read order goes by.
              double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - sent).count();
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
              op_status s = err == caf::sec::request_timeout ? op_status::timeout : op_status::unavailable;
              for (auto& [n, take] : *parts) take(nullptr, s);
            });
  }
}

/// Rebuilds the routes from a route table: this node's own backends as they are, every
/// other node's backends through its PEER, and each group's ring.
void set_routes(replica_group_state& st, const route_table& table,
                const std::vector<std::string>& down) {
  st.cfg.groups = st.local;
  for (const auto& [name, node] : table.nodes) {
    bool is_local = false;
    for (const auto& l : st.local) is_local = is_local || l.node == name;
    if (is_local) continue;
    for (const auto& b : node.backends) {
      group_route r{b.group, name, b.backend, {}, true};
      r.peer = caf::actor_cast<peer_actor>(node.peer);
      r.down = !r.peer || std::find(down.begin(), down.end(), name) != down.end();
      st.cfg.groups.push_back(std::move(r));
    }
  }
  st.cfg.rings.clear();
  for (auto& [group, r] : ring::build(table)) st.cfg.rings.emplace_back(group, std::move(r));
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
      [=](atom::tick) { flush(self); },
  };
}

std::shared_ptr<LocalCoordinator> LocalCoordinator::make(const replica_group_config& cfg) {
  for (const auto& g : cfg.groups)
    if (g.remote || g.cores.size() != g.shards.size()) return nullptr;
  return std::shared_ptr<LocalCoordinator>(new LocalCoordinator(cfg));
}

result_batch LocalCoordinator::run(op_batch& ops) const {
  result_batch out;
  std::vector<shard_request> reqs;
  auto p = plan(cfg_, ops, [&out](result_batch&& r) { out = std::move(r); }, &reqs);
  p->repair = [this](const replica_entry& to, kv_op w) {
    for (const auto& route : cfg_.groups) {
      size_t shard = 0;
      ShardCore* core = route.node == to.node && route.backend == to.backend ? direct_core(route, w.id, &shard) : nullptr;
      if (!core) continue;
      if (cfg_.read_repairs) ++*cfg_.read_repairs;
      op_batch one{std::move(w)};
      core->apply(one);
      return;
    }
  };
  for (auto& req : reqs) {
    result_batch got = req.core->apply(req.ops);
    p->record(req.idx, req.where, &got, op_status::unavailable);
  }
  return out;
}

}  // namespace apsis
