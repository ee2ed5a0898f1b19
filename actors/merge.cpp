// Merge, run by the ANTI_ENTROPY actor (actors/anti_entropy.hpp): when a backend or a node
// joins, part of each group's ring passes to it, and the keys in that part must follow.
// A pass takes the local backends one by one; a step scans one backend for records it holds
// but its group's ring gives to another backend, sends up to merge_batch of them to their
// owner as replica writes (version included: the newer one wins there), and once the owner
// has them, forgets them here (Engine::erase, only if the version is still the one sent).
// Then the next step, at the configured rate; a backend with nothing left to move is done.
// A record whose owner is down, or not known yet, stays (counted as misplaced) until a later
// pass. The same scan forgets this backend's own tombstones once past their grace period.
#include <spdlog/spdlog.h>

#include "actors/anti_entropy.hpp"
#include "messages/large.hpp"

namespace apsis {

namespace {

using Erasures = std::vector<std::pair<storage::Id, storage::Version>>;

/// One scan of a backend (on the scanner's thread), then then(found) in the actor.
template <class Then>
void scan_backend(ae_self self, uint32_t backend, bool collect, Then then) {
  auto& st = self->state;
  const ae_backend& b = st.cfg.backends.at(backend);
  merge_limits limits{st.cfg.tombstone_grace_ms, st.cfg.merge_batch, st.cfg.rate};
  off_thread(
      self,
      [v = st.view, e = b.engine, backend, group = b.group, collect, limits] {
        return scan_for_merge(*v, *e, backend, group, collect, limits);
      },
      std::move(then));
}

void finish_backend(ae_self self, uint32_t backend) {
  auto& st = self->state;
  if (!st.merge.todo.empty() && st.merge.todo.front() == backend)
    st.merge.todo.erase(st.merge.todo.begin());
  st.merge.retries = 0;
  if (st.merge.for_recover && st.pass.running()) {
    st.pass.done++;
    save_pass(st);
  }
  self->send(self, atom::migrate_v);
}

/// A leaving node counts, after each pass, what its backends still hold, and passes again a
/// second later until nothing is left (its PEER then ends the leave).
void count_left(ae_self self) {
  auto& st = self->state;
  auto me = st.table.nodes.find(st.cfg.node);
  if (me == st.table.nodes.end() || !me->second.leaving) return;
  uint64_t left = 0;
  for (const auto& [id, b] : st.cfg.backends) left += b.engine->stats().keys;
  st.cfg.stats->leave_left = int64_t(left);
  spdlog::info("merge: leaving: {} records left to move", left);
  if (left > 0) start_merge(self, false, false, {}, std::chrono::seconds(1));
}

}  // namespace

void start_merge(ae_self self, bool dry_run, bool for_recover, const std::vector<uint32_t>& groups,
                 std::chrono::milliseconds after) {
  auto& m = self->state.merge;
  if (m.active && !for_recover) {
    m.again = true;
    return;
  }
  bool step_in_flight = m.active;  // a recover pass takes over a periodic one
  m.active = true;
  m.dry_run = dry_run;
  m.for_recover = for_recover;
  m.todo.clear();
  for (const auto& [id, b] : self->state.cfg.backends)
    if (groups.empty() || std::count(groups.begin(), groups.end(), b.group)) m.todo.push_back(id);
  if (step_in_flight) return;
  if (after.count() == 0)
    self->send(self, atom::migrate_v);  // now, even on a test's clock
  else
    self->delayed_send(self, after, atom::migrate_v);
}

namespace {

/// Every backend of the pass is done: count it, and start the next one if one was asked for.
void end_pass(ae_self self) {
  auto& st = self->state;
  bool again = st.merge.again, recover = st.merge.for_recover;
  st.merge = merge_pass{};
  st.cfg.stats->merge_passes++;
  if (recover) {
    st.pass.state = "done";
    save_pass(st);
    spdlog::info("merge: recover pass done: {} moved, {} misplaced, {} tombstones purged",
                 st.pass.moved, st.pass.misplaced, st.pass.purged);
  }
  if (again)
    start_merge(self, false, false, {});
  else
    count_left(self);
}

void purge_tombstones(ae_state& st, uint32_t backend, const Erasures& purge) {
  if (purge.empty()) return;
  size_t erased = 0;
  storage::Status s = st.cfg.backends.at(backend).engine->erase(purge, &erased);
  if (!s) spdlog::warn("merge: purging tombstones of backend {}: {}", backend, s.to_string());
  st.cfg.stats->purged += erased;
  if (st.merge.for_recover) st.pass.purged += erased;
}

/// Sends the records found to their owners, one request each; each answer's ok records are
/// forgotten here. The last answer schedules the next step.
void send_moves(ae_self self, uint32_t backend, merge_scan& found) {
  auto& st = self->state;
  auto left = std::make_shared<size_t>(found.moves.size());
  auto failed = std::make_shared<bool>(false);
  const size_t n = found.to_move;
  auto done = [=] {
    if (--*left > 0) return;
    auto& st = self->state;
    if (!st.merge.active) return;
    if (*failed) {
      st.cfg.stats->merge_failures++;
      // An owner that just joined may not know this node yet: try again shortly, a few
      // times, then leave it to the next pass.
      if (st.merge.retries++ < 3)
        return self->delayed_send(self, std::chrono::seconds(1), atom::migrate_v);
      return finish_backend(self, backend);
    }
    st.merge.retries = 0;
    self->delayed_send(self, pause_for(st.cfg.rate, n), atom::migrate_v);
  };
  for (auto& [owner, job] : found.moves) {
    const std::string node = owner.first;  // a copy: the lambdas below capture it
    Erasures sent;
    for (const auto& o : job) sent.emplace_back(o.id, o.version);
    auto peer = peer_of(st.table.nodes.at(node));
    self->request(peer, st.cfg.timeout, atom::apply_v, owner.second, std::move(job))
        .then(
            [=](result_batch& results) {
              Erasures held;
              for (size_t i = 0; i < results.size() && i < sent.size(); ++i)
                if (results[i].status == op_status::ok) held.push_back(sent[i]);
              size_t erased = 0;
              auto& st = self->state;
              storage::Status s = st.cfg.backends.at(backend).engine->erase(held, &erased);
              if (!s)
                spdlog::warn("merge: forgetting moved records of backend {}: {}", backend,
                             s.to_string());
              st.cfg.stats->moved += erased;
              if (st.merge.for_recover) st.pass.moved += erased;
              *failed = *failed || held.size() < sent.size();
              done();
            },
            [=](caf::error& err) {
              spdlog::debug("merge: moving records to {}: {}", node,
                            self->home_system().render(err));
              *failed = true;
              done();
            });
  }
}

/// A backend scanned: its tombstones purged, its misplaced records sent to their owners.
void merge_scanned(ae_self self, uint32_t backend, merge_scan& found) {
  auto& st = self->state;
  merge_pass& m = st.merge;
  // What waits for its owner: each backend as its latest scan found it.
  st.misplaced[backend] = found.misplaced;
  uint64_t misplaced = 0;
  for (const auto& [b, n] : st.misplaced) misplaced += n;
  st.cfg.stats->misplaced = misplaced;
  if (m.for_recover) st.pass.misplaced = misplaced;
  if (m.dry_run) {  // counts only: what would move and what would be purged
    if (m.for_recover) st.pass.moved += found.to_move, st.pass.purged += found.purge.size();
    return finish_backend(self, backend);
  }
  purge_tombstones(st, backend, found.purge);
  if (!found.moves.empty()) return send_moves(self, backend, found);
  if (found.full) return self->send(self, atom::migrate_v);  // more tombstones to purge
  finish_backend(self, backend);
}

}  // namespace

void merge_step(ae_self self) {
  auto& st = self->state;
  merge_pass& m = st.merge;
  if (!m.active) return;
  if (m.for_recover && !st.pass.running()) {  // stopped: resumed later from the saved pass
    m = merge_pass{};
    return;
  }
  if (m.todo.empty()) return end_pass(self);
  const uint32_t backend = m.todo.front();
  // Counting needs no payload; most passes find nothing to move, so they read no values.
  scan_backend(self, backend, false, [self, backend](merge_scan& counted) {
    auto& m = self->state.merge;
    if (!m.active) return;
    if (m.dry_run || counted.to_move == 0) return merge_scanned(self, backend, counted);
    scan_backend(self, backend, true, [self, backend](merge_scan& found) {
      if (self->state.merge.active) merge_scanned(self, backend, found);
    });
  });
}

uint64_t purge_namespace(ae_state& st, const std::string& ns) {
  constexpr size_t step = 1 << 16;  // tombstones gathered per scan: bounds memory
  const uint64_t now_stamp = storage::now_ms() << 16;
  uint64_t total = 0;
  const std::string chunks = large::chunk_namespace(ns);  // its large values' chunks go too
  for (auto& [id, b] : st.cfg.backends) {
    for (bool more = true; more;) {  // each scan skips what the last one tombstoned
      std::vector<storage::Record> tombs;
      storage::IterateOptions io;
      io.with_payload = false;
      io.include_tombstones = false;
      b.engine->iterate(io, [&](const storage::Record& rec) {
        if (storage::make_id(ns, rec.key) != rec.id && storage::make_id(chunks, rec.key) != rec.id)
          return true;  // another namespace's
        storage::Version v{std::max(now_stamp, rec.version.stamp + 1), st.cfg.node_id};
        tombs.push_back(storage::Record::make_tombstone(rec.id, v, rec.key));
        return tombs.size() < step;
      });
      more = tombs.size() == step;
      std::vector<storage::Status> done(tombs.size());
      b.engine->put_batch(tombs.data(), tombs.size(), done.data());
      for (const auto& s : done) total += s.is_ok();
    }
  }
  spdlog::info("purge: namespace {}: {} records deleted here", ns, total);
  return total;
}

}  // namespace apsis
