// The TLS of a node's client ports (RESP, binary, HTTP): one server context built from the
// [tls] files, TLS 1.2 or newer with forward-secret AEAD ciphers only, asking for a client
// certificate when tls.client_ca is set. reload() rebuilds it from the same files (SIGHUP):
// connections keep the context they started with, new ones get the new one.
#pragma once

#include <boost/asio/ssl.hpp>

#include <memory>
#include <mutex>
#include <string>

#include "config/node_config.hpp"

namespace apsis::frontend {

/// A server context from c's files; null with *error naming the file and OpenSSL's reason.
/// It loads tls.ca too when set, so that a file the cluster port (CAF) will read is checked.
std::shared_ptr<boost::asio::ssl::context> server_context(const config::TlsConfig& c,
                                                          std::string* error);

class ServerTls {
 public:
  explicit ServerTls(config::TlsConfig c, std::shared_ptr<boost::asio::ssl::context> ctx)
      : cfg_(std::move(c)), ctx_(std::move(ctx)) {}
  /// Null with *error when the files do not load.
  static std::shared_ptr<ServerTls> load(const config::TlsConfig& c, std::string* error);

  /// The context for a connection accepted now.
  std::shared_ptr<boost::asio::ssl::context> context() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ctx_;
  }
  /// Reads the files again; on failure keeps the current context and says why.
  bool reload(std::string* error);

 private:
  config::TlsConfig cfg_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
};

}  // namespace apsis::frontend
