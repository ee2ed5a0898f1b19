// The node's HTTP port, on Boost.Beast over the IoPool: the REST routes
// (actors/rest.hpp decides what a request asks; docs/rest.md lists them) and what an
// operator watches (/healthz, /readyz, /v1/stats, /metrics). Requests on a connection are
// answered one after another (keep-alive and pipelining); each has a deadline to arrive and
// be answered, a header limit and a body limit, so a slow or malicious client holds only its
// own connection, and only until its deadline.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "actors/interfaces.hpp"
#include "actors/metrics.hpp"
#include "actors/replica_group.hpp"
#include "frontends/auth.hpp"
#include "frontends/io_pool.hpp"
#include "frontends/listener.hpp"
#include "frontends/tls.hpp"
#include "storage/record.hpp"

namespace apsis {

struct HttpOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;                          ///< 0 = an ephemeral port
  std::chrono::milliseconds deadline{10000};  ///< to receive a request and send its answer
  storage::Limits limits;  ///< key and value sizes; a body may hold a value's base64 and more
  std::shared_ptr<frontend::Authenticator> auth;  ///< logins and permissions (null: none)
  std::shared_ptr<frontend::ServerTls> tls;       ///< null: plain TCP
};

/// The HTTP server; start() binds it.
std::shared_ptr<WireServer> make_http_server(IoPool& io, caf::actor_system& sys,
                                             Coordinator coordinator, lock_manager_actor locks,
                                             node_actor node,
                                             std::shared_ptr<RequestMetrics> metrics,
                                             HttpOptions opts);

}  // namespace apsis
