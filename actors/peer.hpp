// PEER: a node's face to its cluster (see interfaces.hpp). Published on the cluster port
// (CAF's BASP). It joins through the seeds with the cluster cookie, gossips the route
// table, monitors every other node's PEER (a frozen one is found by the middleman's
// heartbeats), reconnects with backoff, and hands the node's coordinator the routes and the
// nodes it sees as down. Replica operations from joined nodes go to the local backend's own
// coordinator.
//
// The route table is gossip data: what each node says of itself. A node's actor handles are
// not: a remote handle dies with the connection it came over (CAF kills every proxy of a
// node when BASP drops it), so they are kept per link, learned only from the node itself
// over its own connection, and dropped when that connection goes.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "actors/anti_entropy.hpp"
#include "actors/interfaces.hpp"
#include "actors/replica_group.hpp"

namespace apsis {

/// What the PEER knows of the cluster, as JSON text, for node stats (any thread).
struct cluster_view {
  std::mutex mu;
  std::string json = "{}";
  /// The route table for clients: every node's binary address, backends, groups and ring
  /// points (hex), as JSON (the admin command "routes").
  std::string routes = "{\"nodes\": []}";
};

struct peer_config {
  node_entry self;  ///< this node's entry (peer is filled in by the actor)
  std::string cookie;
  /// Dial other nodes through CAF's OpenSSL module (mutual TLS, tls.cluster) instead of
  /// the plain middleman.
  bool tls = false;
  std::vector<std::pair<std::string, uint16_t>> seeds;
  /// Between gossip rounds; 0: no timers at all (no gossip or redial unless sent tick or
  /// connect), for tests on a simulated clock that fires every pending timer.
  std::chrono::milliseconds gossip_every{1000};
  std::chrono::milliseconds timeout{2000};  ///< for connects and joins
  std::shared_ptr<MailboxGauge> mailbox;    ///< sampled at every replica write (may be null)
  replica_group_actor coordinator;          ///< told of every route change
  anti_entropy_actor anti_entropy;          ///< told of every route change too
  lock_manager_actor locks;                 ///< and this one
  /// Local backend id -> its own coordinator, for replica writes from other nodes (applied on
  /// the PEER's thread, with no hop, where the backend's fsync never blocks).
  std::map<uint32_t, Coordinator> backends;
  std::shared_ptr<cluster_view> view;  ///< refreshed at every route change
  /// Where the table is kept across restarts (empty: nowhere): a restarted node starts from
  /// the nodes it knew, all down until it reaches them, instead of a cluster of itself whose
  /// quorum it alone would make.
  std::string table_file;
  /// Merge's progress: a leaving node ends its leave once its backends are empty (may be null).
  std::shared_ptr<ae_stats> anti_entropy_stats;
  /// Called once this node has left the cluster (`apsis cluster leave`): apsisd stops.
  std::function<void()> on_left;
};

/// This node's connection to another node: the handles learned over it (null while there is
/// none: down, or not connected yet), and when the node was last heard from.
struct peer_link {
  peer_actor peer;                            ///< its PEER, monitored
  anti_entropy_actor anti_entropy;            ///< its ANTI_ENTROPY
  lock_manager_actor locks;                   ///< its LOCK_MANAGER
  caf::actor_clock::time_point last_heard{};  ///< a join or gossip from the node itself
  caf::actor_clock::time_point since{};       ///< when it last went up or down
  gossip_sent sent;  ///< what was last gossiped to it (cleared when it comes up again)
  bool up() const { return static_cast<bool>(peer); }
};

struct peer_state {
  peer_config cfg;
  route_table table;  ///< every node's entry; only this node's own carries handles
  std::map<std::string, peer_link> links;  ///< node name -> this node's link to it
  std::set<caf::node_id> joined;           ///< CAF nodes that joined with the cookie
  std::set<std::string> dialed;            ///< nodes this one connected to itself
  std::map<std::string, std::chrono::milliseconds> backoff;  ///< "host:port" -> next retry wait
  std::string saved;                                         ///< what table_file holds
  bool stopping = false;                                     ///< left the cluster: on_left called
  uint64_t moved_before_leave = 0;  ///< merge's moved count when the leave began
  uint64_t ticks = 0;               ///< gossip rounds so far (a whole table every full_every)
  static inline const char* name = "peer";
};

peer_actor::behavior_type peer(peer_actor::stateful_pointer<peer_state> self, peer_config cfg);

}  // namespace apsis
