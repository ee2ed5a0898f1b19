// HttpServer: the node's HTTP port, on Boost.Beast over the IoPool. Today it serves what an
// operator watches: GET /healthz (the process answers), /readyz (the node's actors answer
// within a second), /v1/stats (the node's statistics as JSON) and /metrics (the same in
// Prometheus text format). Each connection has a deadline per request (a slow or silent
// client is closed) and a header limit; keep-alive is honoured.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "actors/interfaces.hpp"
#include "actors/io_pool.hpp"

namespace apsis {

struct HttpOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;  ///< 0 = an ephemeral port
  std::chrono::milliseconds deadline{10000};  ///< to receive a request and send its answer
};

/// The node's statistics JSON (node_stats_json) as Prometheus text: every number, as a
/// gauge or counter named apsis_<section>_<field>, backends labelled by id and group.
std::string prometheus_text(const std::string& stats_json);

class HttpServer {
 public:
  HttpServer(IoPool& io, caf::actor_system& sys, node_actor node, HttpOptions opts);
  ~HttpServer();
  bool start(std::string* error);
  uint16_t port() const;
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace apsis
