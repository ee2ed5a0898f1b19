// A node's three wire servers (RESP, binary, HTTP), set up from its config on one I/O pool:
// what apsisd's main would otherwise build by hand.
#pragma once

#include <memory>
#include <string>

#include "actors/node.hpp"
#include "config/node_config.hpp"
#include "frontends/binary_frontend.hpp"
#include "frontends/chunk_collector.hpp"
#include "frontends/http_frontend.hpp"
#include "frontends/io_pool.hpp"
#include "frontends/resp_frontend.hpp"

namespace apsis {

struct Servers {
  std::shared_ptr<WireServer> resp, binary, http;
  std::shared_ptr<frontend::ChunkCollector> collector;  ///< large values' leftover chunks
  std::shared_ptr<frontend::ServerTls> tls;             ///< the TLS ports' context (null: none)
  std::shared_ptr<frontend::Authenticator> auth;        ///< the users every surface checks
  /// Stops accepting and closes every connection (of those started), and the collector.
  void stop();
  /// "RESP on host:port, binary on host:port (TLS), http on host:port", for the start line.
  std::string describe(const config::NodeConfig& cfg) const;
};

/// Starts the three servers and the chunk collector on `io` as the config says (ports, limits,
/// timeouts), serving the node's parts; false with *error naming the port that could not be opened
/// or the TLS files that would not load (the servers already started are stopped). `cfg` must
/// outlive the servers (INFO reads it).
bool start_servers(IoPool& io, caf::actor_system& sys, const config::NodeConfig& cfg,
                   const NodeParts& parts, std::shared_ptr<RequestMetrics> metrics, Servers* out,
                   std::string* error);

}  // namespace apsis
