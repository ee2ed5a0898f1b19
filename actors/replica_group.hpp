// REPLICA_GROUP: the coordinator (see interfaces.hpp). Writes get a version from the node's
// HLC, then go to their owner in every group at once, each request with a finite timeout.
// Reads under the read policy `one` ask one group and pass a miss or a failure to the next;
// under `quorum` or `all` they ask every group and answer the newest version. Every result
// lists one entry per replica asked, and the policy (one, quorum, all) decides success;
// replicas that succeeded stay written.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "actors/hlc.hpp"
#include "actors/interfaces.hpp"
#include "actors/metrics.hpp"
#include "messages/route.hpp"
#include "storage/unsynced.hpp"

namespace apsis {

class ShardCore;

/// One backend as the coordinator reaches it: local (its shards) or on another node (that
/// node's PEER). Without rings it owns its group's whole id space; with rings, the parts
/// its ring points give it.
struct group_route {
  uint32_t group = 0;
  std::string node;
  uint32_t backend = 0;
  std::vector<shard_actor> shards;
  /// Requests to a remote node get the config's timeout (a dead peer drops them silently).
  /// A local shard always answers, or fails with an error if it died, so it needs none, and
  /// skipping the timer spares the clock thread one wake-up per request.
  bool remote = false;
  /// The same shards' cores, for a local route (empty for a remote one): what the direct
  /// path (LocalCoordinator) applies to.
  std::vector<std::shared_ptr<ShardCore>> cores = {};
  peer_actor peer = {};  ///< remote: its node's PEER
  bool down = false;     ///< remote: its node is down, so fail at once instead of timing out
  /// local: its engine waits for fsync on every write, so the shard actors apply (their
  /// waits overlap); otherwise the coordinator applies to the cores itself, with no hop.
  bool fsync_always = false;
};

struct replica_group_config {
  /// Without rings: one route per group, in the session's order. With rings: every backend.
  std::vector<group_route> groups;
  /// In a cluster: each group's ring, in the session's order (reads ask the first group
  /// whose owner is up). Empty on a node of its own.
  std::vector<std::pair<uint32_t, ring>> rings;
  success_policy policy = success_policy::quorum;       ///< writes, unless an op names its own
  success_policy read_policy = success_policy::quorum;  ///< reads, unless an op names its own
  read_order_kind read_order = read_order_kind::session;
  std::chrono::milliseconds timeout{5000};
  std::shared_ptr<Hlc> clock;
  std::shared_ptr<std::atomic<uint64_t>> read_repairs;  ///< counts them (may be null)
  std::shared_ptr<MailboxGauge> mailbox;  ///< where the actor samples its mailbox (may be null)
  /// While not empty, every operation fails `unavailable` with this message: a new node whose
  /// seeds name other nodes, before it has heard of any, does not know its groups, and a
  /// "quorum" of its own would acknowledge writes that no other replica holds.
  std::string not_joined;
  /// In a cluster: where the actor publishes its routes at every change, for reads that a
  /// frontend's thread answers from this node's own replicas (may be null).
  std::shared_ptr<class RouteSnapshot> snapshot;
};

/// Operations for one remote backend, gathered from every batch that arrived before the next
/// flush: one request over the network carries them all.
struct remote_outbox {
  peer_actor peer;
  op_batch ops;
  /// Per batch that added operations: how many, and who takes their results (or failure).
  std::vector<std::pair<size_t, std::function<void(result_batch*, op_status)>>> parts;
};

struct replica_group_state {
  replica_group_config cfg;
  std::vector<group_route> local;  ///< this node's own backends, kept across route changes
  /// (node, backend) -> what waits for the flush
  std::map<std::pair<std::string, uint32_t>, remote_outbox> outbox;
  bool flush_pending = false;
  std::map<std::string, double> latency_us;  ///< node -> its smoothed reply latency
  static inline const char* name = "replica-group";
};

replica_group_actor::behavior_type replica_group(
    replica_group_actor::stateful_pointer<replica_group_state> self, replica_group_config cfg);

/// The coordinator's work done on the caller's thread, for a node whose every replica is a
/// local shard: the same versioning, split by shard, per-replica entries and policy as the
/// actor, without the hops (I/O thread -> coordinator -> shards -> I/O thread) that cost a
/// cross-CPU wake-up each (docs/benchmarks.md). Thread-safe: shards lock, the clock is atomic.
class LocalCoordinator {
 public:
  /// Null unless every route is local with its cores.
  static std::shared_ptr<LocalCoordinator> make(const replica_group_config& cfg);
  /// Runs a batch and returns its results, as the actor's exec would. Given `owed`, fsyncs
  /// under `always` are left to the caller to settle before it answers (storage/unsynced.hpp).
  result_batch run(op_batch& ops, storage::Unsynced* owed = nullptr) const;
  /// Whether a backend has fsync `always`: run() without `owed` would block for a flush.
  bool waits_for_fsync() const { return waits_for_fsync_; }
  /// In a cluster (made by for_reads()): a batch of gets and lookups under read policy `one`
  /// whose every read asks a replica on this node, answered here when each finds its key;
  /// none otherwise (a miss is the actor's to fail over, a remote replica its to ask).
  std::optional<result_batch> read_here(const op_batch& ops) const;
  /// A coordinator for read_here() over the routes of a cluster, which name other nodes.
  static std::shared_ptr<const LocalCoordinator> for_reads(replica_group_config cfg);

 private:
  explicit LocalCoordinator(replica_group_config cfg);
  /// One pass of plan and apply (run() adds a second for changes, with several groups).
  result_batch run_once(op_batch& ops, storage::Unsynced* owed) const;
  /// A node alone (alone_): each operation to its shard, each result back as the shard gave
  /// it plus the one replica's entry; none of plan()'s tracking and merging (a GET went
  /// from 10,526 to 8,880 instructions without them, docs/benchmarks.md).
  result_batch run_alone(op_batch& ops, storage::Unsynced* owed) const;
  replica_group_config cfg_;
  bool waits_for_fsync_ = false;
  bool alone_ = false;  ///< one group of one backend, no rings: every replica is one shard
};

/// The coordinator actor's routes, as it last set them, for other threads (read_here()).
class RouteSnapshot {
 public:
  std::shared_ptr<const LocalCoordinator> get() const { return std::atomic_load(&now_); }
  void set(std::shared_ptr<const LocalCoordinator> c) { std::atomic_store(&now_, std::move(c)); }

 private:
  std::shared_ptr<const LocalCoordinator> now_;
};

/// How a frontend reaches the coordinator: the actor, or the direct path when there is one.
struct Coordinator {
  replica_group_actor actor;
  std::shared_ptr<LocalCoordinator> local;  ///< null: every batch goes to the actor
  std::shared_ptr<RouteSnapshot> cluster;   ///< in a cluster: reads this node can answer

  /// The one way in: runs a batch on this thread through the direct path, answering its
  /// results now, or sends it to the actor with the sink `make_sink()` makes (made only
  /// then: the direct path allocates nothing), answering nothing. Under fsync `always` the
  /// direct path serves only a caller that settles the fsyncs itself (`owed`); the others'
  /// waits are the shard actors' (a thread blocked on a flush would stall its connections).
  template <class MakeSink>
  std::optional<result_batch> exec(op_batch& ops, MakeSink&& make_sink,
                                   storage::Unsynced* owed = nullptr) const {
    if (local && (owed || !local->waits_for_fsync())) return local->run(ops, owed);
    if (auto here = cluster ? cluster->get() : nullptr)
      if (auto r = here->read_here(ops)) return r;
    caf::anon_send(actor, atom::exec_v, std::move(ops), batch_sink_ptr(make_sink()));
    return std::nullopt;
  }

  /// The same way in for an actor's handler: the direct path's results now, or the
  /// coordinator actor's answer (delegated: it goes straight to the asker).
  template <class Self>
  caf::result<result_batch> exec(Self* self, op_batch& ops) const {
    if (local && !local->waits_for_fsync()) return local->run(ops);
    return self->delegate(actor, atom::exec_v, std::move(ops));
  }
};

}  // namespace apsis
