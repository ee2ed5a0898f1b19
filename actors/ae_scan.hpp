// What anti-entropy and merge read from a local engine, as functions of an immutable
// snapshot of the cluster (ae_view): ANTI_ENTROPY hands them to its scanner thread, so that
// a scan of millions of records never holds one of the scheduler's threads. Nothing here
// touches the actor's state.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "messages/anti_entropy.hpp"
#include "messages/route.hpp"
#include "storage/engine.hpp"

namespace apsis {

/// The cluster as one route change left it: rebuilt at every change, never changed after.
struct ae_view {
  std::string node;                 ///< this node
  size_t buckets = 1024;            ///< digest buckets (a power of two)
  std::map<uint32_t, ring> rings;   ///< group -> its ring
  std::set<std::string> reachable;  ///< nodes up, with a PEER to send replica writes to
};
using ae_view_ptr = std::shared_ptr<const ae_view>;

using Versions = std::unordered_map<storage::Id, storage::Version, storage::IdHash>;

/// The digest of every bucket of a range on a local backend: the XOR of a hash of each
/// (id, version) in it. One scan, O(buckets) memory.
std::vector<uint64_t> digests(const ae_view& v, storage::Engine& e, const ae_range& r,
                              const std::string& node_b);

/// Each id's newest version in these buckets of a range (blob may show a record twice).
Versions versions_in(const ae_view& v, storage::Engine& e, const ae_range& r,
                     const std::string& node_b, const std::vector<uint32_t>& buckets);

/// A round's push for one chunk of buckets: what was compared with the other side's list,
/// and the replica writes of every record it lacks or holds older.
struct push_plan {
  uint64_t compared = 0, divergent = 0;
  std::vector<op_batch> batches;
  bool truncated = false;  ///< stopped at a step's limit: the chunk goes again
};
struct push_limits {
  size_t batch = 256;        ///< records per replica write
  size_t bytes = 32u << 20;  ///< payload at most
  uint64_t records = 20000;  ///< records at most (a second's worth at the rate)
  bool dry_run = false;      ///< compare only
};
push_plan plan_push(const ae_view& v, storage::Engine& e, const ae_range& r,
                    const std::string& node_b, const std::vector<uint32_t>& buckets,
                    const std::vector<id_version>& theirs, const push_limits& limits);

/// A merge scan of a backend: its tombstones past their grace, and what its group's ring
/// gives to other backends: counted, or (collect) gathered as replica writes, up to a step.
struct merge_scan {
  std::map<std::pair<std::string, uint32_t>, op_batch> moves;  ///< (node, backend) -> records
  size_t to_move = 0;      ///< records found to move (collected, or counted in a dry run)
  uint64_t misplaced = 0;  ///< not ours, but the owner cannot take them now
  std::vector<std::pair<storage::Id, storage::Version>> purge;  ///< tombstones past grace
  bool full = false;  ///< stopped early: more to do on this backend
};
struct merge_limits {
  uint64_t grace_ms = 0;    ///< tombstones older than this are forgotten
  size_t batch = 1024;      ///< records a step moves, or tombstones it purges, at most
  uint64_t rate = 20000;    ///< records a second: a step moves at most that many
  size_t bytes = 8u << 20;  ///< payload a step moves at most
};
merge_scan scan_for_merge(const ae_view& v, storage::Engine& e, uint32_t backend, uint32_t group,
                          bool collect, const merge_limits& limits);

}  // namespace apsis
