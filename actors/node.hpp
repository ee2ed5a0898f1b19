// NODE: wires a node from its config (see interfaces.hpp): opens every backend's engine,
// spawns its shards, the coordinator and the lock manager, and stays linked to all of them,
// so that stopping the node stops them and closes the engines.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/anti_entropy.hpp"
#include "actors/interfaces.hpp"
#include "actors/peer.hpp"
#include "actors/replica_group.hpp"
#include "config/node_config.hpp"
#include "storage/engine.hpp"

namespace apsis {

/// What a started node is made of.
struct NodeParts {
  node_actor node;
  Coordinator coordinator;  ///< the actor, and the direct path where the node allows one
  lock_manager_actor locks;
  peer_actor peer;  ///< in a cluster (cluster.port set): to publish on the cluster port
  anti_entropy_actor anti_entropy;               ///< anti-entropy, merge and `apsis recover`
  std::shared_ptr<ae_stats> anti_entropy_stats;  ///< their progress
  std::shared_ptr<cluster_view> cluster;         ///< in a cluster: the PEER's view
  std::vector<std::shared_ptr<storage::Engine>> engines;  ///< in config order
};

struct node_state {
  std::vector<std::shared_ptr<storage::Engine>> engines;
  anti_entropy_actor anti_entropy;
  peer_actor peer;                           ///< in a cluster
  std::map<uint32_t, Coordinator> backends;  ///< in a cluster: each backend's own coordinator
  std::shared_ptr<ae_stats> anti_entropy_stats;
  std::shared_ptr<cluster_view> cluster;
  std::shared_ptr<RequestMetrics> metrics;  ///< what the frontends count (may be null)
  config::NodeConfig cfg;
  static inline const char* name = "node";
};

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               config::NodeConfig cfg,
                               std::vector<std::shared_ptr<storage::Engine>> engines,
                               std::vector<caf::actor> children, anti_entropy_actor anti_entropy,
                               peer_actor peer, std::map<uint32_t, Coordinator> backends,
                               std::shared_ptr<ae_stats> anti_entropy_stats,
                               std::shared_ptr<cluster_view> cluster,
                               std::shared_ptr<RequestMetrics> metrics);

/// Opens the engines and spawns the actors. An engine that cannot open (a directory in use
/// by another process, garbage, no permission) is an error naming the backend. `on_left` is
/// called once the node has left its cluster (`apsis cluster leave`).
bool start_node(caf::actor_system& sys, const config::NodeConfig& cfg, NodeParts* out,
                std::string* error, std::shared_ptr<RequestMetrics> metrics = nullptr,
                std::function<void()> on_left = {});

/// Engine statistics of every backend, as a JSON document.
std::string node_stats_json(const config::NodeConfig& cfg,
                            const std::vector<std::shared_ptr<storage::Engine>>& engines,
                            const ae_stats* ae = nullptr, cluster_view* cluster = nullptr,
                            const RequestMetrics* metrics = nullptr);

}  // namespace apsis
