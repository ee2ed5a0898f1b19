// Every typed actor interface of apsis, one comment line per handler. Read this file to
// learn the whole protocol between actors.
#pragma once

#include <caf/all.hpp>

#include "messages/type_ids.hpp"

namespace apsis {

/// SHARD: owns one id range of one backend; applies operations to the engine in the order
/// they arrive, so that conditions (NX, XX, CAS, fencing) are atomic per key.
using shard_actor = caf::typed_actor<
    // Applies versioned operations; one result per operation, one fsync wait per batch.
    caf::replies_to<atom::apply, op_batch>::with<result_batch>>;

/// REPLICA_GROUP: the coordinator. Versions writes (HLC), sends each operation to its owner
/// in every group of the session, collects one entry per replica, applies the policy.
using replica_group_actor = caf::typed_actor<
    // Runs a batch for an actor client.
    caf::replies_to<atom::exec, op_batch>::with<result_batch>,
    // Runs a batch for a frontend that is not an actor: results go to the sink.
    caf::reacts_to<atom::exec, op_batch, batch_sink_ptr>,
    // The cluster changed: the route table, and the nodes this node sees as down.
    caf::reacts_to<atom::routes, route_table, std::vector<std::string>>,
    // (internal) sends what the batches handled so far hold for each remote backend.
    caf::reacts_to<atom::flush>>;

/// PEER: a node's face to the rest of its cluster, published on the cluster port. It joins
/// through the seeds, gossips the route table, watches every other node (monitor,
/// heartbeats, reconnection with backoff), and applies replica operations from other nodes.
using peer_actor = caf::typed_actor<
    // A node asks to join with the cluster cookie and its own entry; answers the table.
    caf::replies_to<atom::join, std::string, node_entry>::with<route_table>,
    // A peer's whole table: merged, the newer entry per node wins.
    caf::reacts_to<atom::gossip, route_table>,
    // Applies versioned operations to one of this node's backends, from a joined node.
    caf::replies_to<atom::apply, uint32_t, op_batch>::with<result_batch>,
    // (internal) connect to a node's cluster port and join it (host, port).
    caf::reacts_to<atom::connect, std::string, uint16_t>,
    // This node's binary port, once it listens: gossiped, so that clients can route by key.
    caf::reacts_to<atom::advertise, uint16_t>,
    // (internal) the gossip timer.
    caf::reacts_to<atom::tick>,
    // A namespace was dropped: tells every other node's ANTI_ENTROPY; answers how many.
    caf::replies_to<atom::purge, std::string>::with<uint32_t>,
    // An operator's cluster command as JSON ({"cmd": "forget", "node": NAME}); answers JSON.
    caf::replies_to<atom::admin, std::string>::with<std::string>>;

/// LOCK_MANAGER: per-key leases with fencing tokens; FIFO waiters; a lease ends at unlock,
/// at its expiry, or when its holder dies.
using lock_manager_actor = caf::typed_actor<
    // Waits for and grants the lease on a key to the sender, for lease_ms.
    caf::replies_to<atom::lock, std::string, uint32_t>::with<lease>,
    // Ends the lease with this token; false if it had already ended.
    caf::replies_to<atom::unlock, std::string, uint64_t>::with<bool>,
    // (internal) a lease's timer ran out.
    caf::reacts_to<atom::expire, std::string, uint64_t>,
    // The cluster changed: a key's lease lives with its owner in the first group.
    caf::reacts_to<atom::routes, route_table, std::vector<std::string>>>;

/// SESSION: a client connection's holder of leases. Stopping it when the connection closes
/// releases them.
using session_actor = caf::typed_actor<
    // Takes the lease on a key (ns ‖ 0 ‖ key) for lease_ms, waiting for it as long as it takes.
    caf::replies_to<atom::lock, std::string, uint32_t>::with<lease>,
    // Ends the lease with this token; false if it had already ended.
    caf::replies_to<atom::unlock, std::string, uint64_t>::with<bool>>;

/// ANTI_ENTROPY: converges this node's backends with their replicas in the other groups, by
/// itself: each round it compares bucketed digests of (id, version) with one replica, lists
/// the ids of buckets that differ, and pushes every record the other side lacks or holds
/// older (newest wins). Memory is bounded by the bucket count and one chunk of buckets.
/// It also runs merge: keys a backend holds but no longer owns go to their owner.
using anti_entropy_actor = caf::typed_actor<
    // The cluster changed (as for the coordinator); a ring change starts a merge pass.
    caf::reacts_to<atom::routes, route_table, std::vector<std::string>>,
    // The round timer: a round with the next pair (or, in a `recover dc` pass, its next pair).
    caf::reacts_to<atom::round>,
    // (internal) the round in progress goes on with its next chunk of differing buckets.
    caf::reacts_to<atom::step>,
    // The merge timer: starts a merge pass over every local backend.
    caf::reacts_to<atom::merge>,
    // (internal) the merge pass goes on with its next batch.
    caf::reacts_to<atom::migrate>,
    // The scrub's next step (actors/scrub.cpp): its timer, and its own pacing.
    caf::reacts_to<atom::scrub>,
    // `apsis recover`: a JSON command (start, status, stop, resume); answers progress JSON.
    caf::replies_to<atom::recover, std::string>::with<std::string>,
    // Another node's digests over a range: answers the buckets where this node's differ.
    caf::replies_to<atom::digest, ae_range, std::vector<uint64_t>>::with<std::vector<uint32_t>>,
    // The ids and versions this node holds in those buckets of a range.
    caf::replies_to<atom::keys, ae_range, std::vector<uint32_t>>::with<std::vector<id_version>>,
    // A dropped namespace: tombstones every live record of it in the local backends; answers
    // how many.
    caf::replies_to<atom::purge, std::string>::with<uint64_t>>;

/// ANTI_ENTROPY's scanner: runs its engine scans on a thread of its own; answers the job
/// once its work has run.
using ae_scanner_actor =
    caf::typed_actor<caf::replies_to<atom::scan, scan_job_ptr>::with<scan_job_ptr>>;

/// CLIENT: one connection to a node's binary port as an actor (clients/cpp/client_actor):
/// many requests in flight, each answered with its response.
using client_actor = caf::typed_actor<
    // Sends a request (ns filled in when empty) and answers with its response.
    caf::replies_to<wire::Request>::with<wire::Response>,
    // (internal) a response arrived for the request with this id.
    caf::reacts_to<atom::reply, uint64_t, wire::Response>,
    // (internal) the connection failed: fail every open and later request.
    caf::reacts_to<atom::closed, std::string>>;

/// NODE: wires a node from its config and reports on it.
using node_actor = caf::typed_actor<
    // Statistics of every backend and actor, as a JSON document.
    caf::replies_to<atom::stats>::with<std::string>,
    // An operator's command as JSON ({"cmd": "recover", ...}); answers JSON.
    caf::replies_to<atom::admin, std::string>::with<std::string>,
    // Versioned writes to one of this node's backends, from a client that coordinates.
    caf::replies_to<atom::apply, uint32_t, op_batch>::with<result_batch>>;

// node_entry (messages/route.hpp) carries a node's handles untyped: messages/ cannot name
// the interfaces above, which name its types. These give the handles their types back, in
// one place.
inline peer_actor peer_of(const node_entry& e) { return caf::actor_cast<peer_actor>(e.peer); }
inline anti_entropy_actor anti_entropy_of(const node_entry& e) {
  return caf::actor_cast<anti_entropy_actor>(e.anti_entropy);
}
inline lock_manager_actor locks_of(const node_entry& e) {
  return caf::actor_cast<lock_manager_actor>(e.locks);
}

}  // namespace apsis
