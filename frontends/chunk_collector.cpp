#include "frontends/chunk_collector.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "frontends/rest.hpp"
#include "frontends/rounds.hpp"
#include "messages/large.hpp"

namespace apsis::frontend {

namespace {

constexpr size_t drops_per_round = 256;
constexpr uint32_t records_per_page = 1000;
/// How far other nodes' clocks may trail this one's (a manifest's tombstone stamped there),
/// at most: the idle limit's own measure of time assumes as much.
constexpr uint64_t clock_margin_max_ms = 300000;

/// A sweep's rounds: the catalog, then namespace by namespace its chunks, its manifests in
/// each group, and the deletes.
struct Sweep {
  enum class Phase { catalog, chunks, manifests, drop, done };
  struct Upload {
    uint64_t newest_ms = 0;  ///< its newest chunk's write
    uint64_t last = 0;       ///< its highest chunk index seen
  };

  std::vector<uint32_t> groups;
  uint64_t before_ms = 0;  ///< uploads quiet since before this are candidates
  uint64_t started_ms = storage::now_ms();
  uint64_t margin_ms = clock_margin_max_ms;
  bool moved = false;  ///< a manifest of this namespace was deleted or moved as it was listed
  Phase phase = Phase::catalog;
  std::vector<std::string> namespaces{"default"};
  size_t ns = 0, group = 0;
  std::map<std::string, Upload> uploads;  ///< this namespace's
  Lister lister;
  std::vector<kv_op> drops;
  SweepReport report;

  void next(result_batch* got, op_batch* ops) {
    if (got) take(*got);
    while (ops->empty() && phase != Phase::done) fill(ops);
  }

  void take(result_batch& r) {
    switch (phase) {
      case Phase::catalog:
        return read_catalog(r.at(0));
      case Phase::chunks:
      case Phase::manifests:
        lister.take(r.at(0));
        if (lister.failed != op_status::ok)
          return give_up(std::string("listing ") +
                         (phase == Phase::chunks ? "chunks" : "manifests") + ": " +
                         to_string(lister.failed) + " " + lister.message);
        for (auto& e : lister.records) phase == Phase::chunks ? note_chunk(e) : note_manifest(e);
        lister.records.clear();
        return;
      case Phase::drop:
        for (const op_result& d : r)
          if (d.status != op_status::ok && d.status != op_status::not_found)
            report.failed = "deleting chunks: " + std::string(to_string(d.status));
        return;
      case Phase::done:
        return;
    }
  }

  void fill(op_batch* ops) {
    switch (phase) {
      case Phase::catalog: {
        kv_op& o = ops->emplace_back();
        o.kind = op_kind::get;
        o.key = rest::catalog_key;
        o.id = storage::make_id(rest::system_ns, o.key);
        o.read = uint8_t(success_policy::all) + 1;  // the newest catalog any replica holds
        return;
      }
      case Phase::chunks:
        if (!lister.done()) return lister.ask(ops);
        for (auto it = uploads.begin(); it != uploads.end();)
          it = it->second.newest_ms < before_ms ? std::next(it) : uploads.erase(it);
        if (uploads.empty()) return next_namespace();
        phase = Phase::manifests;
        group = 0;
        return list(namespaces[ns], groups.at(0));
      case Phase::manifests:
        if (!lister.done()) return lister.ask(ops);
        if (++group < groups.size()) return list(namespaces[ns], groups[group]);
        return plan_drops();
      case Phase::drop:
        if (drops.empty()) return next_namespace();
        for (size_t i = 0; i < drops_per_round && !drops.empty(); ++i) {
          ops->push_back(std::move(drops.back()));
          drops.pop_back();
        }
        return;
      case Phase::done:
        return;
    }
  }

  void read_catalog(const op_result& r) {
    if (r.status != op_status::ok && r.status != op_status::not_found)
      return give_up("reading the namespace catalog: " + std::string(to_string(r.status)));
    auto doc = nlohmann::json::parse(r.record.json.empty() ? "{}" : r.record.json, nullptr, false);
    if (doc.is_object())
      for (const auto& item : doc.items()) namespaces.push_back(item.key());
    ns = SIZE_MAX;
    next_namespace();
  }

  void next_namespace() {
    uploads.clear();
    drops.clear();
    moved = false;
    if (++ns >= namespaces.size()) {
      phase = Phase::done;
      return;
    }
    phase = Phase::chunks;
    list(large::chunk_namespace(namespaces[ns]), 0);
  }

  /// A fresh listing of ns; in one group only when group is not 0.
  void list(const std::string& name, uint32_t in_group) {
    lister = Lister{};
    lister.ns = name;
    lister.q.count = records_per_page;
    lister.q.manifests = lister.q.tombstones = phase == Phase::manifests;
    if (in_group != 0) lister.groups = {in_group};
  }

  void note_chunk(const listed_record& e) {
    std::string upload;
    uint64_t index = 0;
    if (!large::parse_chunk_key(e.meta.key, &upload, &index)) return;
    Upload& u = uploads[upload];
    u.newest_ms = std::max(u.newest_ms, e.meta.version.stamp >> 16);
    u.last = std::max(u.last, index);
  }

  /// A manifest names its upload. A manifest's tombstone from about the sweep's time may be
  /// a RENAME's: its new key may sit where the listing had already passed, so this sweep
  /// deletes nothing in the namespace (the next one will).
  void note_manifest(const listed_record& e) {
    large::Manifest m;
    if (e.meta.tombstone)
      moved = moved || (e.meta.version.stamp >> 16) + margin_ms >= started_ms;
    else if (large::Manifest::decode(e.data, &m))
      uploads.erase(m.upload);
  }

  void plan_drops() {
    phase = Phase::drop;
    if (moved) return;
    report.uploads += uploads.size();
    for (const auto& [upload, u] : uploads) {
      ++report.collected;
      report.chunks += u.last + 1;
      for (uint64_t i = 0; i <= u.last; ++i)
        drops.push_back(large::chunk_op(op_kind::remove, namespaces[ns], upload, i));
    }
  }

  /// A failed step ends this namespace's sweep with nothing deleted; the others go on.
  void give_up(std::string why) {
    report.failed = std::move(why);
    if (phase == Phase::catalog) {
      phase = Phase::done;
      return;
    }
    next_namespace();
  }
};

}  // namespace

SweepGate node_gate(std::string self, std::vector<uint32_t> own_groups,
                    std::function<std::string()> view) {
  return [=](std::vector<uint32_t>* groups, std::string* why) {
    std::set<uint32_t> found(own_groups.begin(), own_groups.end());
    if (view) {
      auto doc = nlohmann::json::parse(view(), nullptr, false);
      if (!doc.is_object() || !doc["nodes"].is_array()) return *why = "no cluster view", false;
      for (const auto& n : doc["nodes"]) {
        const std::string state = n.value("state", ""), name = n.value("name", "");
        if (state == "left" || state == "forgotten") continue;
        if (state != "up" && state != "self") return *why = "node " + name + " is " + state, false;
        if (name < self) return *why = "node " + name + " sweeps", false;
        for (const auto& b : n.value("backends", nlohmann::json::array()))
          found.insert(b.value("group", 0u));
      }
    }
    found.erase(0);
    groups->assign(found.begin(), found.end());
    if (groups->empty()) return *why = "no groups", false;
    return true;
  };
}

void sweep_chunks(Coordinator c, asio::any_io_executor ex, const SweepGate& gate,
                  std::chrono::milliseconds idle, std::function<void(SweepReport)> done) {
  auto s = std::make_shared<Sweep>();
  if (!gate(&s->groups, &s->report.skipped)) return asio::post(ex, [s, done] { done(s->report); });
  s->before_ms = s->started_ms - std::min<uint64_t>(idle.count(), s->started_ms);
  s->margin_ms = std::min<uint64_t>(idle.count(), clock_margin_max_ms);
  rounds(std::move(c), ex, [s, ex, done](result_batch* got, op_batch* ops) {
    s->next(got, ops);
    if (ops->empty()) asio::post(ex, [s, done] { done(s->report); });
  });
}

ChunkCollector::ChunkCollector(Coordinator c, asio::any_io_executor ex, SweepGate gate,
                               CollectorOptions o, std::shared_ptr<RequestMetrics> metrics)
    : c_(std::move(c)),
      timer_(std::move(ex)),
      gate_(std::move(gate)),
      opts_(o),
      metrics_(std::move(metrics)) {}

void ChunkCollector::start() {
  if (opts_.every.count() > 0)
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->arm(); });
}

void ChunkCollector::stop() {
  asio::post(timer_.get_executor(), [self = shared_from_this()] {
    self->stopped_ = true;
    self->timer_.cancel();
  });
}

void ChunkCollector::arm() {
  if (stopped_) return;
  timer_.expires_after(opts_.every);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->stopped_) return;
    sweep_chunks(self->c_, self->timer_.get_executor(), self->gate_, self->opts_.idle,
                 [self](SweepReport r) {
                   self->count(r);
                   self->arm();
                 });
  });
}

void ChunkCollector::count(const SweepReport& r) {
  if (!r.failed.empty()) spdlog::warn("chunk collector: {}", r.failed);
  if (r.collected > 0)
    spdlog::info("chunk collector: {} abandoned uploads, {} chunks deleted", r.collected, r.chunks);
  if (!metrics_) return;
  auto& m = metrics_->collector;
  (r.skipped.empty() ? m.sweeps : m.skipped).fetch_add(1, std::memory_order_relaxed);
  m.uploads.fetch_add(r.collected, std::memory_order_relaxed);
  m.chunks.fetch_add(r.chunks, std::memory_order_relaxed);
  if (!r.failed.empty()) m.failed.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace apsis::frontend
