// Scrub, run by the ANTI_ENTROPY actor (actors/anti_entropy.hpp): a disk that rots does so
// silently, and a record nobody reads is found only when its last healthy replica is gone.
// So every `scrub.pause_ms` a round reads every record of every local backend, at most
// `scrub.rate` a second, and verifies its checksum (Engine::scrub). A record that fails is
// dropped (Engine::erase of whatever is stored): anti-entropy then finds this replica lacking
// and pushes the healthy copy from another group. With no other group there is nothing to
// heal from: the record stays (its reads say corruption) and is counted and logged.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "actors/anti_entropy.hpp"

namespace apsis {

namespace {

/// A corrupt record found: dropped for anti-entropy to refill, or reported.
void heal(ae_state& st, uint32_t backend, const storage::Id& id) {
  st.cfg.stats->scrub_corrupt++;
  const ae_backend& b = st.cfg.backends.at(backend);
  if (st.rings.size() < 2) {  // no other group: a node of its own, or a cluster of one group
    if (st.scrub.unrepairable.insert(id.hex()).second)
      spdlog::error(
          "scrub: backend {}: record {} fails its checksum and no other group holds a replica "
          "to repair it from",
          backend, id.hex());
    st.cfg.stats->scrub_unrepairable =
        std::max<uint64_t>(st.cfg.stats->scrub_unrepairable, st.scrub.unrepairable.size());
    return;
  }
  size_t erased = 0;
  storage::Status s = b.engine->erase({{id, storage::Version{}}}, &erased);
  if (!s)
    return spdlog::warn("scrub: backend {}: dropping corrupt record {}: {}", backend, id.hex(),
                        s.to_string());
  st.cfg.stats->scrub_repairing += erased;
  spdlog::warn(
      "scrub: backend {}: record {} failed its checksum; dropped for anti-entropy to refill from "
      "group(s) other than {}",
      backend, id.hex(), b.group);
}

}  // namespace

void scrub_step(ae_self self) {
  auto& st = self->state;
  auto& sc = st.scrub;
  const uint64_t rate = st.cfg.scrub_rate;
  if (rate == 0) return;
  if (sc.todo.empty()) {  // a new round
    for (const auto& [id, b] : st.cfg.backends) sc.todo.push_back(id);
    sc.cursor = 0;
    sc.unrepairable.clear();
  }
  if (sc.todo.empty()) return;  // no backends at all
  const uint32_t backend = sc.todo.front();
  storage::ScrubStep found;
  const size_t step = size_t(std::clamp<uint64_t>(rate, 16, 4096));
  storage::Status s = st.cfg.backends.at(backend).engine->scrub(&sc.cursor, step, &found);
  if (!s)
    spdlog::warn("scrub: backend {}: {}; it goes on in the next round", backend, s.to_string());
  st.cfg.stats->scrub_checked += found.checked;
  for (const auto& id : found.corrupt) heal(st, backend, id);
  if (!s || sc.cursor == 0) sc.todo.erase(sc.todo.begin());
  if (sc.todo.empty()) {
    st.cfg.stats->scrub_rounds++;
    st.cfg.stats->scrub_unrepairable = sc.unrepairable.size();  // what this whole round found
    return self->delayed_send(self, st.cfg.scrub_pause, atom::scrub_v);
  }
  self->delayed_send(self, pause_for(rate, found.checked), atom::scrub_v);
}

}  // namespace apsis
