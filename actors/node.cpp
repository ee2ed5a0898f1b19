#include "actors/node.hpp"

#include <nlohmann/json.hpp>

#include "actors/anti_entropy.hpp"
#include "actors/lock_manager.hpp"
#include "actors/peer.hpp"
#include "actors/replica_group.hpp"
#include "actors/shard.hpp"

namespace apsis {

namespace {

/// The node's incarnation: one more than the last start's, kept in data_dir.
bool next_incarnation(const std::string& data_dir, uint64_t* out, std::string* error) {
  storage::Env* env = storage::Env::posix();
  std::string path = storage::join_path(data_dir, "incarnation"), text;
  uint64_t last = 0;
  if (env->exists(path)) {
    storage::Status s = env->read_all(path, &text);
    if (s) last = std::strtoull(text.c_str(), nullptr, 10);
    if (!s || last == 0) return *error = path + ": unreadable incarnation", false;
  }
  *out = last + 1;
  storage::Status s = env->make_dirs(data_dir);
  if (s) s = env->write_atomic(path, std::to_string(*out) + "\n", true);
  if (!s) return *error = path + ": " + s.to_string(), false;
  return true;
}

/// A backend's ring points. Backends from before seeds keep the points they drew
/// (DIR.ids, one hex id a line); the others keep a seed and a count, drawn the first time
/// (DIR.ring: "<16 hex digits> <count>").
bool ring_points(const std::string& backend_dir, size_t n, backend_points* out,
                 std::string* error) {
  storage::Env* env = storage::Env::posix();
  std::string path = backend_dir + ".ids", text;
  if (env->exists(path)) {
    if (storage::Status s = env->read_all(path, &text); !s) return *error = s.to_string(), false;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      storage::Id id;
      if (!storage::Id::from_hex(std::string_view(text).substr(pos, end - pos), &id))
        return *error = path + ": line " + std::to_string(out->points.size() + 1) +
                        " is not a 128-digit hex id",
               false;
      out->points.push_back(id);
      pos = end + 1;
    }
    if (out->points.empty()) return *error = path + ": no ring points", false;
    return true;
  }
  path = backend_dir + ".ring";
  if (env->exists(path)) {
    if (storage::Status s = env->read_all(path, &text); !s) return *error = s.to_string(), false;
    std::string_view line = text;
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    const std::string_view digits = line.substr(std::min<size_t>(17, line.size()));
    const bool ok = line.size() > 17 && line.size() <= 24 && line[16] == ' ' &&
                    seed_from_hex(line.substr(0, 16), &out->seed) &&
                    digits.find_first_not_of("0123456789") == std::string_view::npos;
    const uint64_t count = ok ? std::stoull(std::string(digits)) : 0;
    if (count == 0 || count > 4096)
      return *error = path + ": not \"<16 hex digits> <count of points, 1-4096>\"", false;
    out->count = uint32_t(count);
    return true;
  }
  out->seed = random_seed();
  out->count = uint32_t(n);
  const std::string line = seed_hex(out->seed) + " " + std::to_string(out->count) + "\n";
  if (storage::Status s = env->write_atomic(path, line, true); !s)
    return *error = s.to_string(), false;
  return true;
}

/// A dropped namespace: this node's records of it are tombstoned, and every other node is
/// told to do the same with its own (a node down now keeps its copies until anti-entropy
/// brings it the other replicas' tombstones).
caf::result<std::string> purge_everywhere(node_actor::stateful_pointer<node_state> self,
                                          std::string ns) {
  auto rp = self->make_response_promise<std::string>();
  auto answer = [rp](uint64_t here, int64_t told) mutable {
    rp.deliver(nlohmann::json{{"purged_here", here}, {"nodes_told", told}}.dump());
  };
  self->request(self->state.anti_entropy, caf::infinite, atom::purge_v, ns)
      .then(
          [=](uint64_t here) mutable {
            if (!self->state.peer) return answer(here, 0);
            self->request(self->state.peer, std::chrono::seconds(5), atom::purge_v, ns)
                .then([=](uint32_t told) mutable { answer(here, told); },
                      [=](caf::error&) mutable { answer(here, -1); });
          },
          [rp, self](caf::error& e) mutable {
            rp.deliver(nlohmann::json{{"error", "purge: " + self->system().render(e)}}.dump());
          });
  return rp;
}

}  // namespace

std::string node_stats_json(const config::NodeConfig& cfg,
                            const std::vector<std::shared_ptr<storage::Engine>>& engines,
                            const ae_stats* ae, cluster_view* cluster,
                            const RequestMetrics* metrics) {
  nlohmann::json backends = nlohmann::json::array();
  for (size_t i = 0; i < engines.size() && i < cfg.backends.size(); ++i) {
    storage::EngineStats s = engines[i]->stats();
    const auto& b = cfg.backends[i];
    backends.push_back({{"id", b.id},
                        {"group", b.group},
                        {"engine", b.engine},
                        {"fsync", b.fsync.to_string()},
                        {"keys", s.keys},
                        {"disk_bytes", s.disk_bytes},
                        {"dead_bytes", s.dead_bytes},
                        {"index_bytes", s.index_bytes},
                        {"files", s.files},
                        {"compactions", s.compactions},
                        {"syncs", s.syncs},
                        {"synced_writes", s.synced_writes}});
  }
  nlohmann::json out{{"node", cfg.name}, {"backends", backends}};
  if (ae) {
    out["anti_entropy"] = {{"rounds", ae->rounds.load()},
                           {"buckets_compared", ae->buckets_compared.load()},
                           {"buckets_differing", ae->buckets_differing.load()},
                           {"keys_compared", ae->keys_compared.load()},
                           {"divergent_found", ae->divergent.load()},
                           {"repaired", ae->repaired.load()},
                           {"failed_rounds", ae->failed_rounds.load()},
                           {"read_repairs", ae->read_repairs.load()}};
    out["merge"] = {{"passes", ae->merge_passes.load()},
                    {"moved", ae->moved.load()},
                    {"misplaced", ae->misplaced.load()},
                    {"tombstones_purged", ae->purged.load()},
                    {"failures", ae->merge_failures.load()}};
    out["scrub"] = {{"rounds", ae->scrub_rounds.load()},
                    {"checked", ae->scrub_checked.load()},
                    {"corrupt_found", ae->scrub_corrupt.load()},
                    {"dropped_for_repair", ae->scrub_repairing.load()},
                    {"unrepairable", ae->scrub_unrepairable.load()}};
    std::lock_guard<std::mutex> lock(ae->mu);
    out["recover"] = nlohmann::json::parse(ae->pass_json);
  }
  if (cluster) {
    std::lock_guard<std::mutex> lock(cluster->mu);
    out["cluster"] = nlohmann::json::parse(cluster->json);
  }
  if (metrics) out.update(metrics->summary());
  return out.dump();
}

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               config::NodeConfig cfg,
                               std::vector<std::shared_ptr<storage::Engine>> engines,
                               std::vector<caf::actor> children, anti_entropy_actor anti_entropy,
                               peer_actor peer, std::map<uint32_t, Coordinator> backends,
                               std::shared_ptr<ae_stats> anti_entropy_stats,
                               std::shared_ptr<cluster_view> cluster,
                               std::shared_ptr<RequestMetrics> metrics) {
  self->state.cfg = std::move(cfg);
  self->state.anti_entropy = std::move(anti_entropy);
  self->state.peer = std::move(peer);
  self->state.backends = std::move(backends);
  self->state.anti_entropy_stats = std::move(anti_entropy_stats);
  self->state.cluster = std::move(cluster);
  self->state.engines = std::move(engines);
  self->state.metrics = std::move(metrics);
  for (auto& c : children) self->link_to(c);
  return {
      [=](atom::stats) {
        return node_stats_json(self->state.cfg, self->state.engines,
                               self->state.anti_entropy_stats.get(), self->state.cluster.get(),
                               self->state.metrics.get());
      },
      [=](atom::admin, std::string& text) -> caf::result<std::string> {
        auto cmd = nlohmann::json::parse(text, nullptr, false);
        std::string what = cmd.is_object() ? cmd.value("cmd", "") : "";
        if (what == "recover")
          return self->delegate(self->state.anti_entropy, atom::recover_v, std::move(text));
        if (what == "routes") {
          if (!self->state.cluster) return std::string("{\"nodes\": []}");  // a node of its own
          std::lock_guard<std::mutex> lock(self->state.cluster->mu);
          return self->state.cluster->routes;
        }
        if (what == "purge_ns") return purge_everywhere(self, cmd.value("ns", ""));
        if (what == "forget" || what == "leave") {
          if (!self->state.peer)
            return std::string("{\"error\": \"this node is not in a cluster\"}");
          return self->delegate(self->state.peer, atom::admin_v, std::move(text));
        }
        return nlohmann::json{{"error", "unknown command '" + what +
                                            "' (known: recover, routes, purge_ns, forget, leave)"}}
            .dump();
      },
      [=](atom::apply, uint32_t backend, op_batch& ops) -> caf::result<result_batch> {
        auto it = self->state.backends.find(backend);
        if (it == self->state.backends.end())
          return caf::make_error(caf::sec::runtime_error,
                                 self->state.backends.empty()
                                     ? std::string("this node is not in a cluster")
                                     : "no backend " + std::to_string(backend));
        return it->second.exec(self, ops);
      },
  };
}

namespace {

replica_group_config coordinator_config(const config::NodeConfig& cfg,
                                        const MailboxGauges* mailboxes) {
  replica_group_config rg;
  rg.policy = cfg.policy;
  rg.read_policy = cfg.read_policy;
  rg.read_order = cfg.read_order;
  rg.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  rg.clock = std::make_shared<Hlc>(cfg.node_id);
  if (mailboxes) rg.mailbox = mailboxes->coordinator;
  return rg;
}

ae_config anti_entropy_config(const config::NodeConfig& cfg, std::shared_ptr<ae_stats> stats,
                              const MailboxGauges* mailboxes) {
  ae_config ae;
  ae.node = cfg.name;
  ae.node_id = cfg.node_id;
  ae.every = std::chrono::milliseconds(cfg.anti_entropy_ms);
  ae.merge_every = std::chrono::milliseconds(cfg.merge_every_ms);
  ae.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  ae.rate = cfg.recovery_rate;
  ae.tombstone_grace_ms = cfg.tombstone_grace_ms;
  ae.scrub_rate = cfg.scrub_rate;
  ae.scrub_pause = std::chrono::milliseconds(cfg.scrub_pause_ms);
  ae.state_file = storage::join_path(cfg.data_dir, "recover.json");
  ae.stats = std::move(stats);
  if (mailboxes) ae.mailbox = mailboxes->anti_entropy;
  return ae;
}

bool cluster_config(const config::NodeConfig& cfg, std::shared_ptr<ae_stats> stats,
                    std::function<void()> on_left, peer_config* pc, std::string* error) {
  pc->self.name = cfg.name;
  pc->self.host = cfg.bind;
  pc->self.port = cfg.cluster_port;
  pc->cookie = cfg.cookie;
  pc->tls = cfg.tls.cluster;
  pc->seeds = cfg.seeds;
  pc->timeout = std::chrono::milliseconds(cfg.timeout_ms);
  if (!next_incarnation(cfg.data_dir, &pc->self.incarnation, error)) return false;
  pc->self.version = 1;
  pc->table_file = storage::join_path(cfg.data_dir, "cluster.json");
  pc->anti_entropy_stats = std::move(stats);
  pc->on_left = std::move(on_left);
  return true;
}

/// A node whose seeds name other nodes serves nothing until the PEER's routes name one: at
/// once for a restart that kept its table (cluster.json), after the first join for a new
/// node. Empty (serve at once) otherwise.
std::string not_joined(const config::NodeConfig& cfg) {
  std::string seeds;
  for (const auto& [host, port] : cfg.seeds)
    if (!(host == cfg.bind && port == cfg.cluster_port))
      seeds += (seeds.empty() ? "" : ", ") + host + ":" + std::to_string(port);
  if (cfg.cluster_port == 0 || seeds.empty()) return {};
  return "this node has not joined its cluster yet (seeds: " + seeds + ")";
}

/// Opens one backend's engine and spawns its shards; its route for the coordinator.
bool open_backend(caf::actor_system& sys, const config::NodeConfig& cfg,
                  const config::BackendConfig& b, const replica_group_config& rg,
                  const MailboxGauges* mailboxes, std::vector<caf::actor>& children,
                  std::shared_ptr<storage::Engine>* engine, group_route* route,
                  std::string* error) {
  storage::EngineOptions eo;
  eo.kind = b.engine;
  eo.dir = cfg.backend_dir(b);
  eo.sync = b.fsync;
  eo.limits = cfg.limits;
  std::unique_ptr<storage::Engine> opened;
  storage::Status s = storage::open_engine(eo, &opened);
  if (!s) {
    *error = "backend " + std::to_string(b.id) + " (" + b.engine + " in " + eo.dir +
             "): " + s.to_string();
    return false;
  }
  *engine = std::move(opened);
  *route = group_route{b.group, cfg.name, b.id, {}};
  route->fsync_always = b.fsync.mode == storage::SyncPolicy::Mode::always;
  for (uint32_t i = 0; i < b.shards; ++i) {
    route->cores.push_back(std::make_shared<ShardCore>(*engine, rg.clock));
    if (mailboxes) route->cores.back()->mailbox = mailboxes->shards;
    route->shards.push_back(sys.spawn(shard, route->cores.back()));
    children.push_back(caf::actor_cast<caf::actor>(route->shards.back()));
  }
  return true;
}

}  // namespace

bool start_node(caf::actor_system& sys, const config::NodeConfig& cfg, NodeParts* out,
                std::string* error, std::shared_ptr<RequestMetrics> metrics,
                std::function<void()> on_left) {
  NodeParts parts;
  const MailboxGauges* mailboxes = metrics ? &metrics->mailboxes : nullptr;
  replica_group_config rg = coordinator_config(cfg, mailboxes);
  parts.anti_entropy_stats = std::make_shared<ae_stats>();
  ae_config ae = anti_entropy_config(cfg, parts.anti_entropy_stats, mailboxes);
  rg.read_repairs = std::shared_ptr<std::atomic<uint64_t>>(ae.stats, &ae.stats->read_repairs);
  std::vector<caf::actor> children;
  const bool cluster = cfg.cluster_port != 0;
  peer_config pc;
  if (mailboxes) pc.mailbox = mailboxes->peer;
  if (cluster && !cluster_config(cfg, parts.anti_entropy_stats, std::move(on_left), &pc, error))
    return false;
  for (const auto& b : cfg.backends) {
    for (const auto& g : rg.groups) {
      if (g.group == b.group && !cluster) {
        *error = "backend " + std::to_string(b.id) + ": group " + std::to_string(b.group) +
                 " already has a backend on this node (several per group need ring points: "
                 "a cluster, cluster.port)";
        return false;
      }
    }
    std::shared_ptr<storage::Engine> engine;
    group_route route;
    if (!open_backend(sys, cfg, b, rg, mailboxes, children, &engine, &route, error)) return false;
    parts.engines.push_back(engine);
    if (cluster) {
      backend_points bp{b.id, b.group, {}};
      if (!ring_points(cfg.backend_dir(b), cfg.points, &bp, error)) return false;
      pc.self.backends.push_back(std::move(bp));
      replica_group_config one = rg;  // this backend alone: replica writes from other nodes
      one.groups = {route};
      Coordinator& c = pc.backends[b.id];
      c.local = LocalCoordinator::make(one);
      c.actor = sys.spawn(replica_group, std::move(one));
      children.push_back(caf::actor_cast<caf::actor>(c.actor));
    }
    ae.backends[b.id] = ae_backend{b.group, engine};
    rg.groups.push_back(std::move(route));
  }
  // In a cluster the routes change to name other nodes: no direct path for writes, and reads
  // only as the actor's last routes allow (it publishes them into the snapshot).
  if (!cluster) parts.coordinator.local = LocalCoordinator::make(rg);
  if (cluster) parts.coordinator.cluster = rg.snapshot = std::make_shared<RouteSnapshot>();
  // Not the backends' own coordinators above: replica writes are welcome before a join.
  rg.not_joined = not_joined(cfg);
  parts.coordinator.actor = sys.spawn(replica_group, std::move(rg));
  parts.locks = sys.spawn(lock_manager, cfg.name);
  children.push_back(caf::actor_cast<caf::actor>(parts.coordinator.actor));
  children.push_back(caf::actor_cast<caf::actor>(parts.locks));
  // Not detached: a detached actor that other nodes hold handles to keeps its thread, and
  // so the actor system, from ending. Its scans take a scheduler thread meanwhile.
  parts.anti_entropy = sys.spawn(anti_entropy, std::move(ae));
  children.push_back(caf::actor_cast<caf::actor>(parts.anti_entropy));
  std::map<uint32_t, Coordinator> backends = pc.backends;  // for clients that coordinate
  if (cluster) {
    pc.coordinator = parts.coordinator.actor;
    pc.locks = parts.locks;
    pc.self.locks = caf::actor_cast<caf::actor>(parts.locks);
    pc.view = parts.cluster = std::make_shared<cluster_view>();
    pc.anti_entropy = parts.anti_entropy;
    pc.self.anti_entropy = caf::actor_cast<caf::actor>(pc.anti_entropy);
    parts.peer = sys.spawn(peer, std::move(pc));
    children.push_back(caf::actor_cast<caf::actor>(parts.peer));
  }
  parts.node = sys.spawn(node, cfg, parts.engines, std::move(children), parts.anti_entropy,
                         parts.peer, backends, parts.anti_entropy_stats, parts.cluster, metrics);
  *out = std::move(parts);
  return true;
}

}  // namespace apsis
