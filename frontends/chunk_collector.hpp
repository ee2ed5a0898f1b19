// The chunk collector: a large value's chunks (messages/large.hpp) outlive it when it is
// deleted, expires or is overwritten by a small value, and when its upload never commits
// (a client gone mid-upload, a node crashed). A sweep lists each namespace's chunks and
// deletes those of every upload that no manifest names and that has written nothing for
// `idle`. It lists manifests in every group (a replica that missed one cannot hide it), and
// runs only on the first node of a cluster by name while every node is up.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/metrics.hpp"
#include "frontends/rmw.hpp"

namespace apsis::frontend {

struct CollectorOptions {
  std::chrono::milliseconds every{600000};  ///< between sweeps; 0: never
  std::chrono::milliseconds idle{3600000};  ///< an upload quiet this long may be collected
};

/// What one sweep did.
struct SweepReport {
  std::string skipped;  ///< why it did not run (empty: it ran)
  uint64_t uploads = 0, collected = 0, chunks = 0;
  std::string failed;  ///< a listing or delete that failed (the rest waits for the next sweep)
};

/// Whether this node sweeps now: false with *why when not; else the cluster's groups.
using SweepGate = std::function<bool(std::vector<uint32_t>* groups, std::string* why)>;

/// The gate for a node: alone (view null), its own backends' groups; in a cluster, only the
/// first node by name, with every node up (view: the peer's cluster JSON, "nodes").
SweepGate node_gate(std::string self, std::vector<uint32_t> own_groups,
                    std::function<std::string()> view);

/// One sweep of every namespace (the catalog's and "default"), then done(report) on ex.
void sweep_chunks(Coordinator c, asio::any_io_executor ex, const SweepGate& gate,
                  std::chrono::milliseconds idle, std::function<void(SweepReport)> done);

/// Sweeps every `every` until stopped; counts each sweep in metrics (may be null) and logs
/// what it collected.
class ChunkCollector : public std::enable_shared_from_this<ChunkCollector> {
 public:
  ChunkCollector(Coordinator c, asio::any_io_executor ex, SweepGate gate, CollectorOptions o,
                 std::shared_ptr<RequestMetrics> metrics);
  void start();
  void stop();

 private:
  void arm();
  void count(const SweepReport& r);
  Coordinator c_;
  asio::steady_timer timer_;
  SweepGate gate_;
  CollectorOptions opts_;
  std::shared_ptr<RequestMetrics> metrics_;
  bool stopped_ = false;
};

}  // namespace apsis::frontend
