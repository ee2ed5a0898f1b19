// ANTI_ENTROPY, top-down: the actor's handlers, then one round in the order it happens
// (round timer -> digests -> keys -> push -> end), with the other side's answers where the
// round reaches them. What the round reads from the engines is in ae_scan.cpp (run on the
// scanner's thread); merge is in merge.cpp, scrub in scrub.cpp, `apsis recover` in
// recover_pass.cpp.
#include "actors/anti_entropy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace apsis {

namespace {

using self_ptr = ae_self;

// The steps of a round after start_round(), in order (defined below in this order).
std::vector<uint32_t> differing(const std::vector<uint64_t>& mine,
                                const std::vector<uint64_t>& theirs);
void got_differing(self_ptr self, const pair_task& t, std::vector<uint32_t>& differ);
void step(self_ptr self);
void push(self_ptr self, const std::vector<uint32_t>& buckets, std::vector<id_version>& theirs);
void send_pushes(self_ptr self, push_plan& plan);
void chunk_done(self_ptr self);
void end_round(self_ptr self, bool ok);

void on_routes(self_ptr self, route_table& table, std::vector<std::string>& down);
void merge_now(self_ptr self);

void sample_mailbox(self_ptr self) {
  if (auto& g = self->state.cfg.mailbox) g->sample_of(self);
}

/// The local engine of a backend (null: none with that id). Jobs hold it: a scan may outlive
/// the actor's state at shutdown.
std::shared_ptr<storage::Engine> engine_of(const ae_state& st, uint32_t backend) {
  auto it = st.cfg.backends.find(backend);
  return it == st.cfg.backends.end() ? nullptr : it->second.engine;
}

/// The scanner. It takes its node's name only so that CAF 0.17 spawns it with an argument:
/// a function spawned with none is bound through a null reference (UBSan finds it).
/// Answers another node's request with what a scan of one local backend finds: scan(view,
/// engine) on the scanner, then answer(found) to the asker. A backend this node lacks holds
/// nothing to compare: an empty answer at once.
template <class T, class Scan, class Answer>
caf::result<T> answer_scan(self_ptr self, uint32_t backend, Scan scan, Answer answer) {
  sample_mailbox(self);
  auto e = engine_of(self->state, backend);
  if (!e) return T{};  // before any promise: a promise would take the request's answer over
  auto rp = self->make_response_promise<T>();
  off_thread(
      self, [v = self->state.view, e, scan = std::move(scan)] { return scan(*v, *e); },
      [rp, answer = std::move(answer)](auto& found) mutable { rp.deliver(answer(found)); });
  return rp;
}

ae_scanner_actor::behavior_type scanner(ae_scanner_actor::pointer, std::string /*node*/) {
  return {[](atom::scan, scan_job_ptr& job) {
    job->work();
    return job;
  }};
}

}  // namespace

// -- the actor ------------------------------------------------------------------------------

anti_entropy_actor::behavior_type anti_entropy(self_ptr self, ae_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  if (!st.cfg.stats) st.cfg.stats = std::make_shared<ae_stats>();
  auto view = std::make_shared<ae_view>();
  view->node = st.cfg.node;
  view->buckets = st.cfg.buckets;
  st.view = std::move(view);
  if (st.cfg.scan_thread)
    st.scanner = self->spawn<caf::detached + caf::linked>(scanner, st.cfg.node);
  if (load_pass(st)) {
    save_pass(st);  // into the stats
    if (st.pass.running()) spdlog::info("anti-entropy: resuming the recover {} pass", st.pass.mode);
  }
  if (st.cfg.every.count() > 0) self->delayed_send(self, st.cfg.every, atom::round_v);
  if (st.cfg.merge_every.count() > 0) self->delayed_send(self, st.cfg.merge_every, atom::merge_v);
  if (st.cfg.scrub_rate > 0) self->delayed_send(self, st.cfg.scrub_pause, atom::scrub_v);
  return {
      [=](atom::routes, route_table& table, std::vector<std::string>& down) {
        on_routes(self, table, down);
      },
      [=](atom::round) {
        auto& st = self->state;
        if (st.cfg.every.count() > 0) self->delayed_send(self, st.cfg.every, atom::round_v);
        if (st.running) return;
        if (dc_pass_running(st)) return pass_next(self);
        auto all = pairs(st);
        if (!all.empty()) start_round(self, all[st.cursor++ % all.size()], false, false);
      },
      [=](atom::digest, ae_range& r,
          std::vector<uint64_t>& theirs) -> caf::result<std::vector<uint32_t>> {
        return answer_scan<std::vector<uint32_t>>(
            self, r.backend_b,
            [r, node = self->state.cfg.node](const ae_view& v, storage::Engine& e) {
              return digests(v, e, r, node);
            },
            [theirs = std::move(theirs)](std::vector<uint64_t>& mine) {
              return differing(mine, theirs);
            });
      },
      [=](atom::step) {
        sample_mailbox(self);
        step(self);
      },
      [=](atom::keys, ae_range& r,
          std::vector<uint32_t>& buckets) -> caf::result<std::vector<id_version>> {
        return answer_scan<std::vector<id_version>>(
            self, r.backend_b,
            [r, node = self->state.cfg.node, buckets](const ae_view& v, storage::Engine& e) {
              return versions_in(v, e, r, node, buckets);
            },
            [](Versions& newest) {
              std::vector<id_version> out;
              out.reserve(newest.size());
              for (const auto& [id, version] : newest) out.push_back({id, version});
              return out;
            });
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
  };
}

// -- a round --------------------------------------------------------------------------------

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

namespace {

bool counts_for_pass(const ae_state& st) {
  return dc_pass_running(st) && st.round && st.round->for_pass;
}

anti_entropy_actor other_side(const ae_state& st, const std::string& node) {
  return anti_entropy_of(st.table.nodes.at(node));
}

}  // namespace

/// 1. Digests: ours over the pair's range, then the other side's answer, the buckets where
///    its digests differ.
void start_round(self_ptr self, const pair_task& t, bool dry_run, bool for_pass) {
  auto& st = self->state;
  st.running = true;
  st.round = ae_round{t, {}, 0, 1, dry_run, for_pass, false, 0, 0};
  auto e = engine_of(st, t.backend);
  if (!e) return end_round(self, false);
  off_thread(
      self, [v = st.view, e, t] { return digests(*v, *e, t.range, t.node_b); },
      [self, t](std::vector<uint64_t>& mine) {
        auto& st = self->state;
        if (!st.round) return;
        self->request(other_side(st, t.node_b), st.cfg.timeout, atom::digest_v, t.range,
                      std::move(mine))
            .then([self, t](std::vector<uint32_t>& differ) { got_differing(self, t, differ); },
                  [self, t](caf::error& err) {
                    spdlog::debug("anti-entropy: digests with {}: {}", t.node_b,
                                  self->home_system().render(err));
                    end_round(self, false);
                  });
      });
}

namespace {

/// (The other side, answering 1.) The buckets whose digests differ.
std::vector<uint32_t> differing(const std::vector<uint64_t>& mine,
                                const std::vector<uint64_t>& theirs) {
  std::vector<uint32_t> differ;
  for (size_t i = 0; i < mine.size(); ++i)
    if (i >= theirs.size() || mine[i] != theirs[i]) differ.push_back(uint32_t(i));
  return differ;
}

/// The buckets that differ are walked in chunks of about chunk_keys ids each.
void got_differing(self_ptr self, const pair_task& t, std::vector<uint32_t>& differ) {
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
}

/// 2. Keys: the other side lists its (id, version) in the next chunk of differing buckets
///    (its answer: the `keys` handler above).
void step(self_ptr self) {
  auto& st = self->state;
  if (!st.round) return;
  ae_round& r = *st.round;
  std::vector<uint32_t> chunk(
      r.differ.begin() + long(r.offset),
      r.differ.begin() + long(std::min(r.differ.size(), r.offset + r.chunk)));
  self->request(other_side(st, r.task.node_b), st.cfg.timeout, atom::keys_v, r.task.range, chunk)
      .then([=](std::vector<id_version>& theirs) { push(self, chunk, theirs); },
            [=](caf::error& err) {
              spdlog::debug("anti-entropy: keys from {}: {}", r.task.node_b,
                            self->home_system().render(err));
              end_round(self, false);
            });
}

/// 3. Push: compare with what the other side listed; every record of ours it lacks or holds
///    older goes to it as a replica write (unless a dry run).
void push(self_ptr self, const std::vector<uint32_t>& buckets, std::vector<id_version>& theirs) {
  auto& st = self->state;
  const pair_task t = st.round->task;
  auto e = engine_of(st, t.backend);
  if (!e) return end_round(self, false);
  push_limits limits{st.cfg.push_batch, st.cfg.push_bytes, st.cfg.rate, st.round->dry_run};
  off_thread(
      self,
      [v = st.view, e, t, buckets, theirs = std::move(theirs), limits] {
        return plan_push(*v, *e, t.range, t.node_b, buckets, theirs, limits);
      },
      [self](push_plan& plan) {
        auto& st = self->state;
        if (!st.round) return;
        st.cfg.stats->keys_compared += plan.compared;
        st.cfg.stats->divergent += plan.divergent;
        if (counts_for_pass(st))
          st.pass.keys_compared += plan.compared, st.pass.divergent += plan.divergent;
        send_pushes(self, plan);
      });
}

/// The replica writes go through the other node's PEER; the last answer ends the chunk.
void send_pushes(self_ptr self, push_plan& plan) {
  auto& st = self->state;
  ae_round& round = *st.round;
  const pair_task t = round.task;
  round.truncated = plan.truncated;
  round.pushed = round.accepted = 0;
  if (plan.batches.empty()) return chunk_done(self);
  auto peer = peer_of(st.table.nodes.at(t.node_b));
  auto left = std::make_shared<size_t>(plan.batches.size());
  for (auto& b : plan.batches) {
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

/// After a chunk: the next one (at the rate; a truncated one again), or the round's end.
void chunk_done(self_ptr self) {
  auto& st = self->state;
  if (!st.round) return;
  ae_round& r = *st.round;
  if (r.truncated && r.accepted == 0) return end_round(self, false);  // it would loop: refused
  if (!r.truncated) r.offset += r.chunk;
  if (r.offset < r.differ.size())
    self->delayed_send(self, pause_for(st.cfg.rate, r.pushed), atom::step_v);
  else
    end_round(self, true);
}

/// 4. End: counted, and a recover pass goes on with its next pair.
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

// -- route changes and merge passes ---------------------------------------------------------

/// Which backends hold ring points: a change means keys may have new owners.
std::string ring_signature(const route_table& t) {
  std::string sig;
  for (const auto& [name, e] : t.nodes)
    for (const auto& b : e.owns() ? e.backends : std::vector<backend_points>{})
      sig += name + "/" + std::to_string(b.backend) + "/" + std::to_string(b.group) + "/" +
             std::to_string(b.points.size()) + "/" + std::to_string(b.seed) + "/" +
             std::to_string(b.count) + ";";
  return sig;
}

void on_routes(self_ptr self, route_table& table, std::vector<std::string>& down) {
  auto& st = self->state;
  st.table = std::move(table);
  st.rings = ring::build(st.table);
  st.down = std::set<std::string>(down.begin(), down.end());
  auto view = std::make_shared<ae_view>(*st.view);
  view->rings = st.rings;
  view->reachable.clear();
  for (const auto& [name, n] : st.table.nodes)
    if (n.peer && !st.down.count(name)) view->reachable.insert(name);
  st.view = std::move(view);
  std::string sig = ring_signature(st.table);
  bool changed = !st.ring_signature.empty() && sig != st.ring_signature;
  st.ring_signature = std::move(sig);
  if (changed) start_merge(self, false, false, {});
  // A pass saved by the last run of this node goes on once the cluster is known again.
  if (st.pass.running() && st.pass.mode == "merge" && !st.merge.active) merge_now(self);
  if (dc_pass_running(st) && !st.running) pass_next(self);
}

/// A merge pass now: the saved `recover merge` pass if one runs, else a periodic one.
void merge_now(self_ptr self) {
  auto& st = self->state;
  bool recover = st.pass.running() && st.pass.mode == "merge";
  start_merge(self, recover && st.pass.dry_run, recover,
              recover ? st.pass.groups : std::vector<uint32_t>{});
}

}  // namespace

// -- shared with merge, scrub and recover passes ---------------------------------------------

std::string pair_task::key() const {
  return std::to_string(range.group_a) + "/" + std::to_string(backend) + " ~ " +
         std::to_string(range.group_b) + "/" + node_b + "/" + std::to_string(range.backend_b);
}

std::chrono::milliseconds pause_for(uint64_t rate, uint64_t n) {
  return std::chrono::milliseconds(n * 1000 / std::max<uint64_t>(rate, 1));
}

bool dc_pass_running(const ae_state& st) { return st.pass.running() && st.pass.mode == "dc"; }

}  // namespace apsis
