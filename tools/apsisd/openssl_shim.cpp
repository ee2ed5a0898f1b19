// Two things CAF 0.17's OpenSSL module (the cluster port's TLS) does not do, done here by
// standing in for the libssl calls it makes (this executable's definitions come first in the
// dynamic linker's order; each calls on to libssl's own):
//
// - Clear the thread's OpenSSL error queue before each TLS call. CAF drains it only in log
//   statements that its release build compiles out, so one failed handshake (a stranger's, a
//   foreign CA's) leaves errors behind, and every later call on the multiplexer thread that
//   merely wants more bytes reads as a failure: the node dropped every peer (seen here).
//   OpenSSL requires an empty queue before each call (SSL_get_error(3)).
// - Log a refused handshake on the cluster port with the peer's address (CAF says nothing).
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <string>

#include "tools/apsisd/openssl_shim.hpp"

namespace {

std::atomic<int> cluster_port{-1};
std::atomic<int64_t> last_log_ms{0};

template <class F>
F next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

/// The port of fd's local end, and its peer as "host:port" ("?" once the peer has gone).
int local_port(int fd, std::string* peer) {
  sockaddr_storage a{}, b{};
  socklen_t la = sizeof a, lb = sizeof b;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &la) != 0) return -1;
  bool known = getpeername(fd, reinterpret_cast<sockaddr*>(&b), &lb) == 0;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0, peer_port = 0;
  if (a.ss_family == AF_INET) {
    port = ntohs(reinterpret_cast<sockaddr_in&>(a).sin_port);
    auto& p = reinterpret_cast<sockaddr_in&>(b);
    if (known) inet_ntop(AF_INET, &p.sin_addr, host, sizeof host), peer_port = ntohs(p.sin_port);
  } else if (a.ss_family == AF_INET6) {
    port = ntohs(reinterpret_cast<sockaddr_in6&>(a).sin6_port);
    auto& p = reinterpret_cast<sockaddr_in6&>(b);
    if (known) inet_ntop(AF_INET6, &p.sin6_addr, host, sizeof host), peer_port = ntohs(p.sin6_port);
  }
  *peer = known ? std::string(host) + ":" + std::to_string(peer_port) : "?";
  return port;
}

}  // namespace

namespace apsis {
void watch_cluster_tls(uint16_t port) { cluster_port = port; }
}  // namespace apsis

extern "C" {

int SSL_read(SSL* s, void* buf, int n) {
  static auto real = next<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(s, buf, n);
}

int SSL_write(SSL* s, const void* buf, int n) {
  static auto real = next<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(s, buf, n);
}

int SSL_connect(SSL* s) {
  static auto real = next<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(s);
}

int SSL_accept(SSL* s) {
  static auto real = next<int (*)(SSL*)>("SSL_accept");
  // The peer's address, taken at the handshake's first step: a refused peer may have closed
  // (and taken its address with it) by the step that fails.
  static const int peer_index = SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr, [](void*, void* p, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<std::string*>(p);
      });
  if (cluster_port.load() >= 0 && !SSL_get_ex_data(s, peer_index)) {
    auto* peer = new std::string("?");
    if (local_port(SSL_get_fd(s), peer) != cluster_port.load()) *peer = "";  // a client port's
    SSL_set_ex_data(s, peer_index, peer);
  }
  ERR_clear_error();
  int r = real(s);
  if (r == 1 || cluster_port.load() < 0) return r;
  int why = SSL_get_error(s, r);
  if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE) return r;
  auto* peer = static_cast<std::string*>(SSL_get_ex_data(s, peer_index));
  if (!peer || peer->empty()) return r;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_log_ms.load();
  if (now - last >= 1000 && last_log_ms.compare_exchange_strong(last, now)) {
    char reason[256] = "the connection closed";
    if (unsigned long e = ERR_peek_error()) ERR_error_string_n(e, reason, sizeof reason);
    spdlog::warn("cluster: refused a connection from {}: TLS handshake ({})", *peer, reason);
  }
  return r;
}

}  // extern "C"
