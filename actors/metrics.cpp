#include "actors/metrics.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <vector>

namespace apsis {

namespace {

const char* surface_name(int s) { return s == 0 ? "resp" : s == 1 ? "binary" : "rest"; }

const char* kind_name(int k) {
  static const char* names[] = {"get", "lookup", "put", "remove", "expire", "change"};
  return names[k];
}

/// Metric families in the order first seen: Prometheus wants each family's samples together,
/// under one # TYPE line.
class Families {
 public:
  /// A sample; `family` names its # TYPE line when it is not the sample's own name (a
  /// histogram's _bucket, _sum and _count).
  void add(const std::string& name, const char* type, const std::string& labels,
           const std::string& value, const std::string& family = {}) {
    auto [it, fresh] = index_.emplace(family.empty() ? name : family, families_.size());
    if (fresh) families_.push_back({it->first, type, {}});
    families_[it->second].lines +=
        name + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
  }
  void add(const std::string& name, const char* type, const std::string& labels, uint64_t v,
           const std::string& family = {}) {
    add(name, type, labels, std::to_string(v), family);
  }
  std::string text() const {
    std::string out;
    for (const auto& f : families_) out += "# TYPE " + f.name + " " + f.type + "\n" + f.lines;
    return out;
  }

 private:
  struct Family {
    std::string name;
    const char* type;
    std::string lines;
  };
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

/// Microseconds as seconds, with no trailing zeros (0.00025).
std::string seconds(uint64_t us) {
  std::string s =
      std::to_string(us / 1000000) + "." + std::to_string(1000000 + us % 1000000).substr(1);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

/// Statistics that only grow are counters (named *_total); the rest are gauges.
bool is_counter(const std::string& field) {
  static const char* gauges[] = {"keys",  "disk_bytes", "dead_bytes",  "index_bytes",
                                 "files", "misplaced",  "unrepairable"};
  for (const char* g : gauges)
    if (field == g) return false;
  return true;
}

}  // namespace

void RequestMetrics::latency(Surface s, std::chrono::steady_clock::duration d, uint64_t n) {
  auto us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  int b = 0;
  while (b < buckets - 1 && us > bounds_us[b]) ++b;
  hist_[s][b].fetch_add(n, std::memory_order_relaxed);
  sum_us_[s].fetch_add(us * n, std::memory_order_relaxed);
}

namespace {

const char* reason_name(int r) {
  static const char* names[] = {"no_login", "wrong_password", "throttled", "no_permission",
                                "tls_handshake"};
  return names[r];
}

std::vector<std::pair<const char*, uint64_t>> collector_counts(const RequestMetrics::Collector& c) {
  auto load = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return {{"sweeps", load(c.sweeps)},
          {"skipped", load(c.skipped)},
          {"uploads", load(c.uploads)},
          {"chunks", load(c.chunks)},
          {"failed", load(c.failed)}};
}

}  // namespace

std::string RequestMetrics::prometheus() {
  Families f;
  auto load = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  for (int s = 0; s < surfaces; ++s)
    for (int k = 0; k < kinds; ++k)
      for (int st = 0; st < statuses; ++st)
        if (uint64_t n = load(ops_[s][k][st]))
          f.add("apsis_requests_total", "counter",
                std::string("surface=\"") + surface_name(s) + "\",command=\"" + kind_name(k) +
                    "\",status=\"" + to_string(op_status(st)) + "\"",
                n);
  const std::string hist = "apsis_request_duration_seconds";
  for (int s = 0; s < surfaces; ++s) {
    std::string surface = std::string("surface=\"") + surface_name(s) + "\"";
    uint64_t total = 0;
    for (int b = 0; b < buckets; ++b) {
      total += load(hist_[s][b]);
      std::string le = b < buckets - 1 ? seconds(bounds_us[b]) : "+Inf";
      f.add(hist + "_bucket", "histogram", surface + ",le=\"" + le + "\"", total, hist);
    }
    f.add(hist + "_sum", "histogram", surface, seconds(load(sum_us_[s])), hist);
    f.add(hist + "_count", "histogram", surface, total, hist);
  }
  for (int s = 0; s < surfaces; ++s) {
    f.add("apsis_received_bytes_total", "counter",
          std::string("surface=\"") + surface_name(s) + "\"", load(in_[s]));
    f.add("apsis_sent_bytes_total", "counter", std::string("surface=\"") + surface_name(s) + "\"",
          load(out_[s]));
  }
  for (const auto& [actor, g] :
       {std::pair<const char*, MailboxGauge*>{"replica_group", mailboxes.coordinator.get()},
        {"shard", mailboxes.shards.get()},
        {"anti_entropy", mailboxes.anti_entropy.get()},
        {"peer", mailboxes.peer.get()}}) {
    f.add("apsis_mailbox_depth", "gauge", std::string("actor=\"") + actor + "\"", load(g->last));
    f.add("apsis_mailbox_peak", "gauge", std::string("actor=\"") + actor + "\"",
          g->peak.exchange(0, std::memory_order_relaxed));
  }
  for (int s = 0; s < surfaces; ++s)
    for (int r = 0; r < auth_reasons; ++r)
      f.add("apsis_auth_refused_total", "counter",
            std::string("surface=\"") + surface_name(s) + "\",reason=\"" + reason_name(r) + "\"",
            load(refused_[s][r]));
  for (const auto& [what, n] : collector_counts(collector))
    f.add("apsis_chunk_collector_total", "counter", std::string("what=\"") + what + "\"", n);
  for (unsigned c = 0; c < 500; ++c)
    if (uint64_t n = load(http_[c]))
      f.add("apsis_http_responses_total", "counter", "code=\"" + std::to_string(c + 100) + "\"", n);
  return f.text();
}

nlohmann::json RequestMetrics::summary() const {
  auto load = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  nlohmann::json out = nlohmann::json::object();
  for (int s = 0; s < surfaces; ++s) {
    uint64_t requests = 0, failed = 0;
    for (int k = 0; k < kinds; ++k)
      for (int st = 0; st < statuses; ++st) {
        uint64_t n = load(ops_[s][k][st]);
        requests += n;
        if (op_status(st) != op_status::ok && op_status(st) != op_status::not_found) failed += n;
      }
    uint64_t total = 0;
    for (int b = 0; b < buckets; ++b) total += load(hist_[s][b]);
    auto quantile_ms = [&](double q) -> nlohmann::json {  // the bound of the bucket it falls in
      uint64_t seen = 0;
      for (int b = 0; b < buckets - 1; ++b)
        if ((seen += load(hist_[s][b])) >= q * double(total) && total)
          return double(bounds_us[b]) / 1000;
      return total ? nlohmann::json("inf") : nlohmann::json(nullptr);
    };
    for (int r = 0; r < auth_reasons; ++r)
      if (uint64_t n = load(refused_[s][r])) out["refused"][surface_name(s)][reason_name(r)] = n;
    out["requests"][surface_name(s)] = {{"operations", requests},
                                        {"failed", failed},
                                        {"p50_ms_at_most", quantile_ms(0.5)},
                                        {"p99_ms_at_most", quantile_ms(0.99)},
                                        {"bytes_in", load(in_[s])},
                                        {"bytes_out", load(out_[s])}};
  }
  for (const auto& [what, n] : collector_counts(collector)) out["chunk_collector"][what] = n;
  out["mailboxes"] = {{"replica_group", load(mailboxes.coordinator->last)},
                      {"shard", load(mailboxes.shards->last)},
                      {"anti_entropy", load(mailboxes.anti_entropy->last)},
                      {"peer", load(mailboxes.peer->last)}};
  return out;
}

std::string prometheus_text(const std::string& stats_json) {
  using nlohmann::json;
  json s = json::parse(stats_json, nullptr, false);
  Families f;
  if (!s.is_object()) return {};
  auto add = [&](const std::string& prefix, const std::string& field, const std::string& labels,
                 const json& v) {
    if (!v.is_number()) return;
    if (is_counter(field))
      f.add(prefix + field + "_total", "counter", labels, v.dump());
    else
      f.add(prefix + field, "gauge", labels, v.dump());
  };
  for (const auto& b : s.value("backends", json::array())) {
    std::string labels = "backend=\"" + std::to_string(b.value("id", 0)) + "\",group=\"" +
                         std::to_string(b.value("group", 0)) + "\"";
    for (const auto& [k, v] : b.items())
      if (k != "id" && k != "group") add("apsis_backend_", k, labels, v);
  }
  for (const char* section : {"anti_entropy", "merge", "scrub"})
    if (s.contains(section))
      for (const auto& [k, v] : s[section].items())
        add(std::string("apsis_") + section + "_", k, "", v);
  if (s.contains("cluster"))
    for (const auto& n : s["cluster"].value("nodes", json::array())) {
      std::string label = "node=\"" + n.value("name", std::string()) + "\"",
                  state = n.value("state", std::string());
      f.add("apsis_peer_up", "gauge", label, state == "down" ? "0" : "1");
      f.add("apsis_peer_suspect", "gauge", label,
            state == "suspect" ? "1" : "0");  // silent for two rounds
      if (n.value("last_heard_ms", int64_t(-1)) >= 0)
        f.add("apsis_peer_last_heard_seconds", "gauge", label,
              std::to_string(n["last_heard_ms"].get<int64_t>() / 1000.0));
    }
  return f.text();
}

}  // namespace apsis
