// `apsis recover dc|merge`, run by the ANTI_ENTROPY actor (actors/anti_entropy.hpp): a pass
// over every pair now (dc: one round each, over all its differing buckets) or over every
// backend (merge), with progress; saved to the state file after every step, so that it can
// be stopped, resumed, and goes on after a restart of the node.
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "actors/anti_entropy.hpp"

namespace apsis {

namespace {

using nlohmann::json;

json pass_to_json(const recover_pass& p) {
  json pairs = json::array();
  for (const auto& t : p.pairs)
    pairs.push_back({{"backend", t.backend},
                     {"group", t.range.group_a},
                     {"with_group", t.range.group_b},
                     {"with_node", t.node_b},
                     {"with_backend", t.range.backend_b}});
  json out{{"mode", p.mode},     {"state", p.state},       {"dry_run", p.dry_run},
           {"groups", p.groups}, {"since_ms", p.since_ms}, {"total", p.total},
           {"done", p.done},     {"skipped", p.skipped}};
  if (p.mode == "dc") {
    out.update({{"pairs", pairs},
                {"buckets_differing", p.buckets_differing},
                {"keys_compared", p.keys_compared},
                {"divergent", p.divergent},
                {"repaired", p.repaired}});
  } else {
    out.update({{"moved", p.moved}, {"misplaced", p.misplaced}, {"purged", p.purged}});
  }
  return out;
}

std::string error_json(const std::string& why, const recover_pass& p) {
  json out = pass_to_json(p);
  out["error"] = why;
  return out.dump();
}

}  // namespace

/// A dc pass: the next of its pairs, once no round runs. A pair whose node is not up (just
/// after a restart it is not reached yet, or not known) is waited for, 30 s, then skipped.
void pass_next(ae_self self) {
  auto& st = self->state;
  recover_pass& p = st.pass;
  while (dc_pass_running(st) && !st.running) {
    if (p.done >= p.pairs.size()) {
      p.state = "done";
      save_pass(st);
      spdlog::info("anti-entropy: recover dc pass done: {} pairs, {} divergent keys, {} repaired",
                   p.pairs.size(), p.divergent, p.repaired);
      return;
    }
    const pair_task& want = p.pairs[p.done];
    for (const auto& t : pairs(st, p.since_ms))
      if (t.key() == want.key()) {
        p.waiting_since = {};
        return start_round(self, t, p.dry_run, true);
      }
    auto now = std::chrono::steady_clock::now();
    bool known = st.table.nodes.count(want.node_b) > 0 && !st.down.count(want.node_b);
    if (!known && p.waiting_since == std::chrono::steady_clock::time_point{}) p.waiting_since = now;
    if (!known && now - p.waiting_since < std::chrono::seconds(30))
      return;  // the round timer retries
    p.skipped.push_back(want.key() +
                        (st.down.count(want.node_b) ? " (down)" : " (not a pair now)"));
    p.waiting_since = {};
    p.done++;
    save_pass(st);
  }
}

/// Reads a saved pass (a node restarted in the middle of one); false if there is none.
bool load_pass(ae_state& st) {
  std::string text;
  auto* env = storage::Env::posix();
  if (st.cfg.state_file.empty() || !env->exists(st.cfg.state_file)) return false;
  if (!env->read_all(st.cfg.state_file, &text)) return false;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    spdlog::warn("anti-entropy: {} is not a recover pass, ignored", st.cfg.state_file);
    return false;
  }
  recover_pass& p = st.pass;
  p.mode = j.value("mode", "");
  p.state = j.value("state", "");
  p.dry_run = j.value("dry_run", false);
  p.groups = j.value("groups", std::vector<uint32_t>{});
  p.since_ms = j.value("since_ms", uint64_t(0));
  p.total = j.value("total", size_t(0));
  p.done = j.value("done", size_t(0));
  p.skipped = j.value("skipped", std::vector<std::string>{});
  p.buckets_differing = j.value("buckets_differing", uint64_t(0));
  p.keys_compared = j.value("keys_compared", uint64_t(0));
  p.divergent = j.value("divergent", uint64_t(0));
  p.repaired = j.value("repaired", uint64_t(0));
  p.moved = j.value("moved", uint64_t(0));
  p.misplaced = j.value("misplaced", uint64_t(0));
  p.purged = j.value("purged", uint64_t(0));
  for (const auto& t : j.value("pairs", json::array())) {
    pair_task pt;
    pt.backend = t.value("backend", 0u);
    pt.node_b = t.value("with_node", "");
    pt.range =
        ae_range{t.value("group", 0u),        st.cfg.node, pt.backend, t.value("with_group", 0u),
                 t.value("with_backend", 0u), p.since_ms};
    p.pairs.push_back(std::move(pt));
  }
  return true;
}

/// `apsis recover`: {"action": "start"|"status"|"stop"|"resume", "mode": "dc"|"merge",
/// "dry_run": bool, "groups": [..], "since_ms": n}.
std::string recover_command(ae_self self, const std::string& text) {
  auto& st = self->state;
  recover_pass& p = st.pass;
  json cmd = json::parse(text, nullptr, false);
  if (cmd.is_discarded() || !cmd.is_object())
    return error_json("the command is not a JSON object", p);
  std::string action = cmd.value("action", "status");
  if (action == "status") return pass_to_json(p).dump();
  if (action == "stop") {
    if (!p.running()) return error_json("no recover pass is running", p);
    p.state = "stopped";
    save_pass(st);
    return pass_to_json(p).dump();
  }
  if (action == "resume") {
    if (p.state != "stopped") return error_json("no stopped recover pass to resume", p);
    p.state = "running";
  } else if (action == "start") {
    if (p.running()) return error_json("a recover pass is running (stop it first)", p);
    std::string mode = cmd.value("mode", "");
    if (mode != "dc" && mode != "merge")
      return error_json("mode must be dc or merge, got '" + mode + "'", p);
    p = recover_pass{};
    p.mode = mode;
    p.state = "running";
    p.dry_run = cmd.value("dry_run", false);
    p.since_ms = cmd.value("since_ms", uint64_t(0));
    p.groups = cmd.value("groups", std::vector<uint32_t>{});
    auto in = [&](uint32_t g) {
      return p.groups.empty() || std::count(p.groups.begin(), p.groups.end(), g);
    };
    if (mode == "dc") {
      for (auto& t : pairs(st, p.since_ms))
        if (in(t.range.group_a) && in(t.range.group_b)) p.pairs.push_back(std::move(t));
      p.total = p.pairs.size();
    } else {
      for (const auto& [id, b] : st.cfg.backends) p.total += in(b.group);
    }
  } else {
    return error_json("action must be start, status, stop or resume, got '" + action + "'", p);
  }
  save_pass(st);
  if (p.mode == "dc")
    pass_next(self);
  else
    start_merge(self, p.dry_run, true, p.groups);
  return pass_to_json(p).dump();
}

void save_pass(ae_state& st) {
  std::string text = pass_to_json(st.pass).dump();
  if (!st.cfg.state_file.empty()) {
    storage::Status s = storage::Env::posix()->write_atomic(st.cfg.state_file, text, true);
    if (!s) spdlog::warn("anti-entropy: saving the recover pass: {}", s.to_string());
  }
  std::lock_guard<std::mutex> lock(st.cfg.stats->mu);
  st.cfg.stats->pass_json = std::move(text);
}

}  // namespace apsis
