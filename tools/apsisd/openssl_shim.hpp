// See openssl_shim.cpp: the cluster port's TLS (CAF's OpenSSL module) made safe against a
// failed handshake, and its refusals logged.
#pragma once

#include <cstdint>

namespace apsis {

/// Logs refused TLS handshakes on this local port (the cluster port), at most one a second.
void watch_cluster_tls(uint16_t port);

}  // namespace apsis
