// ANTI_ENTROPY (see interfaces.hpp): recovery between the groups of a cluster, by itself.
// A round takes the next (local backend, replica in another group) pair, round robin:
//   1. digests: the ids both own are split into `buckets` by their first bits; each bucket's
//      digest is the XOR of a hash of every (id, version) in it. One engine scan, O(buckets)
//      memory; the other side computes the same and answers the buckets that differ.
//   2. keys: for each chunk of those buckets (as many as hold about `chunk_keys` ids, by the
//      backend's key count; at least one), the other side lists its (id, version) there.
//   3. push: every record of ours it lacks or holds older goes to it as a replica write
//      (the version travels with it, so the newer one wins there, and a replay is harmless),
//      at most `rate` records a second.
// Each side pushes what it has newer when its own rounds reach the pair, so both converge.
// Merge (actors/merge.cpp) runs in the same actor: records a backend holds but no longer
// owns in its group's ring go to their owner and are then forgotten here; tombstones past
// their grace period are forgotten. `apsis recover dc|merge` (actors/recover_pass.cpp) runs
// either as a pass now, with progress, saved to a file after every step so that it can be
// stopped and resumed.
// Engine scans (ae_scan.hpp) run on the actor's scanner, a thread of its own, so that they
// never hold one of the scheduler's threads; the actor goes on answering meanwhile.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "actors/ae_scan.hpp"
#include "actors/interfaces.hpp"
#include "actors/metrics.hpp"
#include "storage/engine.hpp"

namespace apsis {

/// Progress, readable from any thread (node stats).
struct ae_stats {
  std::atomic<uint64_t> rounds{0}, buckets_compared{0}, buckets_differing{0}, keys_compared{0},
      divergent{0}, repaired{0}, failed_rounds{0};
  // merge
  std::atomic<uint64_t> merge_passes{0}, moved{0}, misplaced{0}, purged{0}, merge_failures{0};
  std::atomic<uint64_t> read_repairs{0};  ///< counted by the coordinators
  /// While this node leaves: records its backends still hold after the last merge pass
  /// (-1: not leaving, or no pass has ended since it began).
  std::atomic<int64_t> leave_left{-1};
  // scrub
  std::atomic<uint64_t> scrub_rounds{0}, scrub_checked{0}, scrub_corrupt{0}, scrub_repairing{0};
  std::atomic<uint64_t> scrub_unrepairable{
      0};  ///< corrupt records with no other group to refill them
  /// The `apsis recover` pass, as JSON (guarded by mu).
  mutable std::mutex mu;
  std::string pass_json = "{}";
};

struct ae_backend {
  uint32_t group = 0;
  std::shared_ptr<storage::Engine> engine;
};

struct ae_config {
  std::string node;                              ///< this node's name
  uint64_t node_id = 1;                          ///< the node of the versions it stamps
  std::map<uint32_t, ae_backend> backends;       ///< local backend id -> group and engine
  std::chrono::milliseconds every{10000};        ///< between rounds; 0: only when sent round
  std::chrono::milliseconds merge_every{60000};  ///< between merge passes; 0: no timer
  std::chrono::milliseconds timeout{5000};
  uint64_t rate = 20000;  ///< records pushed per second, at most
  uint64_t tombstone_grace_ms = 7 * 86400000ull;
  size_t buckets = 1024;  ///< a power of two
  /// About how many ids one step lists and compares: bounds a step's memory (~100 bytes an
  /// id on each side) while letting a small backend's differing buckets go in one step.
  size_t chunk_keys = 1 << 16;
  size_t push_batch = 256;        ///< records per replica write
  size_t push_bytes = 32u << 20;  ///< payload a step pushes at most (the rest: the next step)
  size_t merge_batch = 1024;      ///< records a merge step moves
  uint64_t scrub_rate = 0;        ///< records a second the scrub verifies (0: no scrub)
  std::chrono::milliseconds scrub_pause{3600000};  ///< before each scrub round
  std::string state_file;  ///< where a recover pass is saved (empty: not saved)
  std::shared_ptr<ae_stats> stats;
  std::shared_ptr<MailboxGauge> mailbox;  ///< sampled at every round step and request (may be null)
  /// Scans on a scanner thread; false: on the actor's own (tests on a simulated clock, where
  /// every message must run on the test's scheduler).
  bool scan_thread = true;
};

/// One (local backend, replica in another group) pair that a round compares.
struct pair_task {
  uint32_t backend = 0;  // local
  ae_range range;
  std::string node_b;
  std::string key() const;  ///< names the pair in a recover pass
};

/// The round in progress: the pair and the buckets found differing, walked in chunks.
struct ae_round {
  pair_task task;
  std::vector<uint32_t> differ;
  size_t offset = 0;
  size_t chunk = 1;  ///< buckets per step
  bool dry_run = false;
  bool for_pass = false;   ///< a pair of the recover pass: counts into it
  bool truncated = false;  ///< the last step stopped at push_bytes: its chunk goes again
  uint64_t pushed = 0;     ///< by the last step, for the rate limit
  uint64_t accepted = 0;   ///< of those, what the other side took
};

/// An `apsis recover` pass: what it covers and how far it got.
struct recover_pass {
  std::string mode;   ///< "dc" or "merge"; empty: none ever started
  std::string state;  ///< running, stopped, done
  bool dry_run = false;
  std::vector<uint32_t> groups;  ///< empty: every group
  uint64_t since_ms = 0;
  std::vector<pair_task> pairs;      ///< dc: the pairs to compare, fixed at start
  size_t total = 0, done = 0;        ///< pairs (dc) or backends (merge)
  std::vector<std::string> skipped;  ///< dc: pairs whose node was down or never seen
  uint64_t buckets_differing = 0, keys_compared = 0, divergent = 0, repaired = 0;
  uint64_t moved = 0, misplaced = 0, purged = 0;
  std::chrono::steady_clock::time_point waiting_since{};  ///< for a pair's node to appear
  bool running() const { return state == "running"; }
};

/// The merge pass in progress.
struct merge_pass {
  bool active = false;
  bool again = false;  ///< the ring changed during the pass: run another one after it
  bool dry_run = false;
  bool for_recover = false;    ///< counts into the recover pass
  std::vector<uint32_t> todo;  ///< local backends still to go
  int retries = 0;             ///< of the current backend's moves, after a failed one
};

/// The scrub round in progress: the local backends still to walk, and where in the first.
struct scrub_walk {
  std::vector<uint32_t> todo;
  uint64_t cursor = 0;
  std::set<std::string> unrepairable;  ///< ids (hex) found this round with nowhere to heal from
};

struct ae_state {
  ae_config cfg;
  route_table table;
  std::map<uint32_t, ring> rings;
  ae_view_ptr view;            ///< the same for the scanner: rebuilt at every route change
  ae_scanner_actor scanner;    ///< null: scans run on the actor's thread
  std::string ring_signature;  ///< which backends hold ring points: a change starts a merge
  std::set<std::string> down;
  size_t cursor = 0;     ///< the next pair, round robin
  bool running = false;  ///< a round is in flight
  std::optional<ae_round> round;
  recover_pass pass;
  merge_pass merge;
  scrub_walk scrub;
  std::map<uint32_t, uint64_t> misplaced;  ///< per local backend: records waiting for their owner
  static inline const char* name = "anti-entropy";
};

using ae_self = anti_entropy_actor::stateful_pointer<ae_state>;

anti_entropy_actor::behavior_type anti_entropy(ae_self self, ae_config cfg);

// -- shared by the rounds, merge (actors/merge.cpp) and passes (actors/recover_pass.cpp) --

/// Every pair this node's rounds compare: each local backend with each owner in another group.
std::vector<pair_task> pairs(const ae_state& st, uint64_t since_ms = 0);
/// Whether a `recover dc` pass is running.
bool dc_pass_running(const ae_state& st);
/// A round with one pair: digests, then every chunk of the buckets that differ.
void start_round(ae_self self, const pair_task& t, bool dry_run, bool for_pass);
/// A dc pass: its next pair, once no round runs.
void pass_next(ae_self self);
/// Reads the pass a restarted node saved; false if there is none.
bool load_pass(ae_state& st);
/// `apsis recover`: a JSON command; answers the pass's progress (or an error) as JSON.
std::string recover_command(ae_self self, const std::string& text);

/// Runs work() on the scanner's thread (on this one when there is none), then then(result)
/// in the actor. work gets what it reads by value (the view, an engine): it must not touch
/// the actor's state, which may change before then() runs.
template <class Work, class Then>
void off_thread(ae_self self, Work work, Then then) {
  using R = decltype(work());
  if (!self->state.scanner) {
    R r = work();
    return then(r);
  }
  auto out = std::make_shared<R>();
  auto job = std::make_shared<scan_job>();
  job->work = [out, work = std::move(work)]() mutable { *out = work(); };
  self->request(self->state.scanner, caf::infinite, atom::scan_v, std::move(job))
      .then([out, then = std::move(then)](scan_job_ptr&) mutable { then(*out); },
            [](caf::error&) {});  // the scanner stops only with this actor
}

/// How long to wait after pushing n records, to stay under the rate.
std::chrono::milliseconds pause_for(uint64_t rate, uint64_t n);
/// Saves the recover pass to the state file and the stats.
void save_pass(ae_state& st);
/// Starts a merge pass (its first step `after` from now) unless one runs (then it runs
/// again after it).
void start_merge(ae_self self, bool dry_run, bool for_recover, const std::vector<uint32_t>& groups,
                 std::chrono::milliseconds after = {});
/// The merge pass's next step.
void merge_step(ae_self self);
/// The scrub's next step: about a second's worth of records (at scrub_rate) of one backend
/// verified; a corrupt one is dropped for anti-entropy to refill from another group, or, with
/// no other group, counted and logged as unrepairable. A round ends with the last backend.
void scrub_step(ae_self self);
/// Tombstones every live record of a dropped namespace in the local backends (a version
/// newer than the record's, so the replicas agree on the delete); answers how many.
uint64_t purge_namespace(ae_state& st, const std::string& ns);

}  // namespace apsis
