// The binary protocol (docs/protocol.md) on the shared frontend machinery.
// Key operations of one read go to the coordinator as one batch; lock and unlock go to the
// lock manager through the connection's own session actor, so that a connection that
// closes releases its leases; stat asks the node.
#pragma once

#include <memory>
#include <string>

#include "actors/metrics.hpp"
#include "actors/replica_group.hpp"
#include "frontends/auth.hpp"
#include "frontends/io_pool.hpp"
#include "frontends/listener.hpp"
#include "frontends/tls.hpp"

namespace apsis {

struct BinaryOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;                      ///< 0 = an ephemeral port
  uint32_t max_frame = 0;                 ///< 0 = the protocol's default
  uint64_t max_object_size = 4ull << 30;  ///< a large value's bytes (limits.max_object_size)
  std::string name = "apsisd";
  std::shared_ptr<RequestMetrics> metrics;        ///< counts requests (may be null)
  std::chrono::milliseconds idle_timeout{0};      ///< close connections idle this long; 0: never
  std::shared_ptr<frontend::Authenticator> auth;  ///< logins and permissions (null: none)
  std::shared_ptr<frontend::ServerTls> tls;       ///< null: plain TCP
};

/// The binary protocol's server; start() binds it.
std::shared_ptr<WireServer> make_binary_server(IoPool& io, caf::actor_system& sys,
                                               Coordinator coordinator, lock_manager_actor locks,
                                               node_actor node, BinaryOptions opts);

}  // namespace apsis
