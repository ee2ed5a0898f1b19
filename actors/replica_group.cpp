#include "actors/replica_group.hpp"

#include "actors/shard.hpp"

namespace apsis {

op_status decide(success_policy policy, const std::vector<replica_entry>& replicas) {
  size_t n = replicas.size(), ok = 0;
  for (const auto& r : replicas) ok += r.status == op_status::ok;
  size_t need = policy == success_policy::one ? 1 : policy == success_policy::all ? n : n / 2 + 1;
  if (n > 0 && ok >= need) return op_status::ok;
  // Replicas that agree on why not (a failed condition, a stale version...) say it for all.
  for (const auto& r : replicas)
    if (r.status != replicas.front().status) return op_status::unavailable;
  return n ? replicas.front().status : op_status::unavailable;
}

namespace {

using deliver_fn = std::function<void(result_batch&&)>;

bool is_write(op_kind k) { return k != op_kind::get && k != op_kind::lookup; }

/// A batch in flight: results fill in as shards answer or time out.
struct pending_batch {
  result_batch results;
  std::vector<bool> writes;
  success_policy policy;
  size_t outstanding = 0;
  deliver_fn deliver;

  void finish() {
    for (size_t i = 0; i < results.size(); ++i) {
      op_result& r = results[i];
      if (writes[i])
        r.status = decide(policy, r.replicas);
      else
        r.status = r.replicas.empty() ? op_status::unavailable : r.replicas.front().status;
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
        if (r.replicas.empty()) {  // the first replica to answer carries the payload
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
  op_batch ops;
  std::vector<size_t> idx;
  replica_entry where;
  bool remote = false;
};

/// Versions the writes and splits the batch into one request per (group, shard) that has
/// work. With no requests at all, the batch is finished (delivered) at once.
std::shared_ptr<pending_batch> plan(const replica_group_config& cfg, op_batch& ops,
                                    deliver_fn deliver, std::vector<shard_request>* out) {
  auto p = std::make_shared<pending_batch>();
  p->results.resize(ops.size());
  p->writes.resize(ops.size());
  p->policy = cfg.policy;
  p->deliver = std::move(deliver);
  // Every replica of a write must store the same version, so with several groups the
  // coordinator stamps it; with one, the shard does (ShardCore), in the order it applies.
  const bool stamp = cfg.groups.size() > 1;
  for (size_t i = 0; i < ops.size(); ++i) {
    p->writes[i] = is_write(ops[i].kind);
    if (p->writes[i] && stamp) ops[i].version = cfg.clock->next();
  }
  std::vector<shard_request>& plan = *out;
  for (size_t g = 0; g < cfg.groups.size(); ++g) {
    const group_route& route = cfg.groups[g];
    size_t first = plan.size();
    plan.resize(first + route.shards.size());
    for (size_t s = 0; s < route.shards.size(); ++s) {
      shard_request& req = plan[first + s];
      req.dest = route.shards[s];
      req.core = s < route.cores.size() ? route.cores[s].get() : nullptr;
      req.where = replica_entry{route.group, route.node, route.backend, {}, {}};
      req.remote = route.remote;
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      if (g > 0 && !p->writes[i]) continue;  // reads: the first group answers
      shard_request& req = plan[first + shard_index(ops[i].id, route.shards.size())];
      bool last_use = g == (p->writes[i] ? cfg.groups.size() - 1 : 0);
      req.ops.push_back(last_use ? std::move(ops[i]) : ops[i]);
      req.idx.push_back(i);
    }
  }
  plan.erase(std::remove_if(plan.begin(), plan.end(), [](auto& r) { return r.ops.empty(); }),
             plan.end());
  p->outstanding = plan.size();
  if (plan.empty()) p->finish();
  return p;
}

void run(replica_group_actor::stateful_pointer<replica_group_state> self, op_batch& ops,
         deliver_fn deliver) {
  const auto& cfg = self->state.cfg;
  std::vector<shard_request> reqs;
  auto p = plan(cfg, ops, std::move(deliver), &reqs);
  for (auto& req : reqs) {
    caf::duration timeout = req.remote ? caf::duration{cfg.timeout} : caf::infinite;
    self->request(req.dest, timeout, atom::apply_v, std::move(req.ops))
        .then([p, idx = req.idx, where = req.where](result_batch& got) {
                p->record(idx, where, &got, op_status::unavailable);
              },
              [p, idx = req.idx, where = req.where](caf::error& err) {
                p->record(idx, where, nullptr,
                          err == caf::sec::request_timeout ? op_status::timeout
                                                           : op_status::unavailable);
              });
  }
}

}  // namespace

replica_group_actor::behavior_type replica_group(
    replica_group_actor::stateful_pointer<replica_group_state> self, replica_group_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
      [=](atom::exec, op_batch& ops) -> caf::typed_response_promise<result_batch> {
        auto rp = self->make_response_promise<result_batch>();
        run(self, ops, [rp](result_batch&& r) mutable { rp.deliver(std::move(r)); });
        return rp;
      },
      [=](atom::exec, op_batch& ops, batch_sink_ptr& sink) {
        run(self, ops, [sink](result_batch&& r) { sink->done(std::move(r)); });
      },
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
  for (auto& req : reqs) {
    result_batch got = req.core->apply(req.ops);
    p->record(req.idx, req.where, &got, op_status::unavailable);
  }
  return out;
}

}  // namespace apsis
