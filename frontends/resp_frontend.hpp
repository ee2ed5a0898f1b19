// The Redis-protocol frontend, on Boost.Asio (an IoPool). Each socket read
// is parsed whole; its key operations go to the coordinator as one batch (run on the I/O
// thread by the direct path, or one actor message), answered with one write. Replies stay in
// request order across reads; a client with too much outstanding stops being read, so it only holds
// up its own connection.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "actors/metrics.hpp"
#include "actors/replica_group.hpp"
#include "frontends/auth.hpp"
#include "frontends/io_pool.hpp"
#include "frontends/listener.hpp"
#include "frontends/tls.hpp"
#include "messages/resp.hpp"
#include "storage/record.hpp"

namespace apsis {

struct RespOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;  ///< 0 = an ephemeral port
  resp::Limits limits;
  /// The text of INFO [section].
  std::function<std::string(const std::string& section)> info;
  std::shared_ptr<RequestMetrics> metrics;        ///< counts requests (may be null)
  std::chrono::milliseconds idle_timeout{0};      ///< close connections idle this long; 0: never
  std::shared_ptr<frontend::Authenticator> auth;  ///< logins and permissions (null: none)
  std::shared_ptr<frontend::ServerTls> tls;       ///< null: plain TCP
};

/// The RESP server; start() binds it.
std::shared_ptr<WireServer> make_resp_server(IoPool& io, Coordinator coordinator, RespOptions opts);

}  // namespace apsis
