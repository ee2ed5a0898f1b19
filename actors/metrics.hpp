// Metrics: what the frontends count as they answer (operations by surface, kind and status,
// a latency histogram per surface, bytes in and out, HTTP responses by code), and the
// Prometheus text of it all with the node's statistics. Counters are relaxed atomics: the
// I/O threads add to them without a lock, /metrics reads a consistent-enough snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/types.hpp"

namespace apsis {

/// An actor's mailbox depth, sampled by the actor itself as it takes a message (CAF lets
/// only the owner look): the last value seen and the peak since the last scrape.
struct MailboxGauge {
  std::atomic<uint64_t> last{0}, peak{0};
  void sample(uint64_t n) {
    last.store(n, std::memory_order_relaxed);
    uint64_t p = peak.load(std::memory_order_relaxed);
    while (n > p && !peak.compare_exchange_weak(p, n, std::memory_order_relaxed)) {
    }
  }
  /// Samples an actor's own mailbox: the messages it took from its inbox at this scheduling
  /// round and has not handled yet. (mailbox().size() would first move new arrivals over,
  /// and that path trips UBSan's vptr check inside CAF 0.17 on an empty queue.)
  template <class Self>
  void sample_of(Self self) {
    sample(self->mailbox().queue().total_task_size());
  }
};

/// The mailboxes worth watching: a queue that grows means the actor cannot keep up.
struct MailboxGauges {
  std::shared_ptr<MailboxGauge> coordinator = std::make_shared<MailboxGauge>(),
                                shards = std::make_shared<MailboxGauge>(),  ///< every shard's
      anti_entropy = std::make_shared<MailboxGauge>(), peer = std::make_shared<MailboxGauge>();
};

class RequestMetrics {
 public:
  enum Surface { resp, binary, rest, surfaces };
  static constexpr int kinds = 6;      ///< op_kind values
  static constexpr int statuses = 11;  ///< op_status values
  /// Histogram bucket bounds, in microseconds (the last bucket is +Inf).
  static constexpr uint64_t bounds_us[] = {100,   250,   500,    1000,   2500,    5000,   10000,
                                           25000, 50000, 100000, 250000, 1000000, 5000000};
  static constexpr int buckets = sizeof(bounds_us) / sizeof(bounds_us[0]) + 1;

  /// One operation answered.
  void op(Surface s, op_kind k, op_status st) {
    if (int(k) < kinds && int(st) < statuses)
      ops_[s][int(k)][int(st)].fetch_add(1, std::memory_order_relaxed);
  }
  /// One request's time from its arrival to its answer, counted n times (a batch's requests).
  void latency(Surface s, std::chrono::steady_clock::duration d, uint64_t n = 1);
  void bytes_in(Surface s, uint64_t n) { in_[s].fetch_add(n, std::memory_order_relaxed); }
  void bytes_out(Surface s, uint64_t n) { out_[s].fetch_add(n, std::memory_order_relaxed); }
  /// Why a request was refused before it ran (docs/security.md).
  enum AuthReason {
    auth_no_login,
    auth_wrong_password,
    auth_throttled,
    auth_no_permission,
    auth_tls_handshake,  ///< no TLS, or a client certificate the port does not trust
    auth_reasons
  };
  void auth_refused(Surface s, AuthReason r) {
    refused_[s][r].fetch_add(1, std::memory_order_relaxed);
  }
  /// One HTTP response with this status code.
  void http_response(unsigned code) {
    if (code >= 100 && code < 600) http_[code - 100].fetch_add(1, std::memory_order_relaxed);
  }

  /// The counters in Prometheus text format (with # TYPE lines); resets the mailbox peaks.
  std::string prometheus();
  /// A summary for the stats JSON (`apsis stat`): per surface the requests, the failed ones
  /// (neither ok nor not_found), p50/p99 as histogram bucket bounds, bytes; mailbox depths.
  nlohmann::json summary() const;

  MailboxGauges mailboxes;
  /// The chunk collector's work (frontends/chunk_collector.hpp): sweeps run and skipped,
  /// abandoned uploads and their chunks deleted, sweeps that failed part of the way.
  struct Collector {
    std::atomic<uint64_t> sweeps{0}, skipped{0}, uploads{0}, chunks{0}, failed{0};
  } collector;

 private:
  std::atomic<uint64_t> ops_[surfaces][kinds][statuses] = {};
  std::atomic<uint64_t> hist_[surfaces][buckets] = {};
  std::atomic<uint64_t> sum_us_[surfaces] = {};
  std::atomic<uint64_t> in_[surfaces] = {}, out_[surfaces] = {};
  std::atomic<uint64_t> http_[500] = {};
  std::atomic<uint64_t> refused_[surfaces][auth_reasons] = {};
};

/// The node's statistics JSON (node_stats_json) as Prometheus text: per-backend gauges and
/// counters labelled by backend and group, anti-entropy and merge progress, peer links.
std::string prometheus_text(const std::string& stats_json);

}  // namespace apsis
