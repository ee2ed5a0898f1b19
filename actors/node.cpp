#include "actors/node.hpp"

#include <nlohmann/json.hpp>

#include "actors/lock_manager.hpp"
#include "actors/replica_group.hpp"
#include "actors/shard.hpp"

namespace apsis {

std::string node_stats_json(const config::NodeConfig& cfg,
                            const std::vector<std::shared_ptr<storage::Engine>>& engines) {
  nlohmann::json backends = nlohmann::json::array();
  for (size_t i = 0; i < engines.size() && i < cfg.backends.size(); ++i) {
    storage::EngineStats s = engines[i]->stats();
    const auto& b = cfg.backends[i];
    backends.push_back({{"id", b.id}, {"group", b.group}, {"engine", b.engine},
                        {"fsync", b.fsync.to_string()}, {"keys", s.keys},
                        {"disk_bytes", s.disk_bytes}, {"dead_bytes", s.dead_bytes},
                        {"index_bytes", s.index_bytes}, {"files", s.files},
                        {"compactions", s.compactions}, {"syncs", s.syncs}});
  }
  return nlohmann::json{{"node", cfg.name}, {"backends", backends}}.dump();
}

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               config::NodeConfig cfg,
                               std::vector<std::shared_ptr<storage::Engine>> engines,
                               std::vector<caf::actor> children) {
  self->state.cfg = std::move(cfg);
  self->state.engines = std::move(engines);
  for (auto& c : children) self->link_to(c);
  return {
      [=](atom::stats) { return node_stats_json(self->state.cfg, self->state.engines); },
  };
}

bool start_node(caf::actor_system& sys, const config::NodeConfig& cfg, NodeParts* out,
                std::string* error) {
  NodeParts parts;
  replica_group_config rg;
  rg.policy = cfg.policy;
  rg.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  rg.clock = std::make_shared<Hlc>(cfg.node_id);
  std::vector<caf::actor> children;
  bool direct = true;
  for (const auto& b : cfg.backends) {
    for (const auto& g : rg.groups) {
      if (g.group == b.group) {
        *error = "backend " + std::to_string(b.id) + ": group " + std::to_string(b.group) +
                 " already has a backend on this node (one backend per group until ring "
                 "points arrive)";
        return false;
      }
    }
    storage::EngineOptions eo;
    eo.kind = b.engine;
    eo.dir = cfg.backend_dir(b);
    eo.sync = b.fsync;
    eo.limits = cfg.limits;
    std::unique_ptr<storage::Engine> engine;
    storage::Status s = storage::open_engine(eo, &engine);
    if (!s) {
      *error = "backend " + std::to_string(b.id) + " (" + b.engine + " in " + eo.dir + "): " +
               s.to_string();
      return false;
    }
    std::shared_ptr<storage::Engine> shared(std::move(engine));
    parts.engines.push_back(shared);
    group_route route{b.group, cfg.name, b.id, {}};
    for (uint32_t i = 0; i < b.shards; ++i) {
      route.cores.push_back(std::make_shared<ShardCore>(shared, rg.clock));
      route.shards.push_back(sys.spawn(shard, route.cores.back()));
      children.push_back(caf::actor_cast<caf::actor>(route.shards.back()));
    }
    // fsync `always` blocks its caller for a disk flush: on a frontend's I/O thread that
    // would stall every connection on it, while shard actors overlap their waits (group
    // commit). So only backends that never block on a write allow the direct path.
    direct = direct && b.fsync.mode != storage::SyncPolicy::Mode::always;
    rg.groups.push_back(std::move(route));
  }
  if (direct) parts.coordinator.local = LocalCoordinator::make(rg);
  parts.coordinator.actor = sys.spawn(replica_group, std::move(rg));
  parts.locks = sys.spawn(lock_manager);
  children.push_back(caf::actor_cast<caf::actor>(parts.coordinator.actor));
  children.push_back(caf::actor_cast<caf::actor>(parts.locks));
  parts.node = sys.spawn(node, cfg, parts.engines, std::move(children));
  *out = std::move(parts);
  return true;
}

}  // namespace apsis
