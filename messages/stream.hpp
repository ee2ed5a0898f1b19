// Stream: a wire connection's byte stream, plain TCP or TLS over it, behind one face (Asio's
// Async/SyncReadStream and WriteStream, so that asio::write, asio::async_write and Beast's
// readers and writers take it), for the servers (frontends/) and the C++ client alike. A TLS
// stream shakes hands first: a server's start() calls back once it has; a client calls
// handshake() after connecting.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <memory>
#include <string>
#include <utility>

namespace apsis {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

class Stream {
 public:
  using executor_type = tcp::socket::executor_type;

  /// Plain TCP when tls is null; else TLS with that context (kept while the stream lives, so
  /// that a reload only changes what later connections get).
  Stream(tcp::socket sock, std::shared_ptr<ssl::context> tls) : sock_(std::move(sock)) {
    if (tls) tls_ = std::make_unique<Tls>(sock_, std::move(tls));
  }
  /// Not yet connected (a client's).
  Stream(asio::io_context& io, std::shared_ptr<ssl::context> tls) : sock_(io) {
    if (tls) tls_ = std::make_unique<Tls>(sock_, std::move(tls));
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  executor_type get_executor() { return sock_.get_executor(); }
  tcp::socket& socket() { return sock_; }

  /// Shakes hands (TLS as the server; at once for plain TCP), then calls done(error_code).
  template <class Handler>
  void start(Handler&& done) {
    if (!tls_) return done(boost::system::error_code{});
    tls_->stream.async_handshake(ssl::stream_base::server, std::forward<Handler>(done));
  }

  /// A client's handshake (blocking), checking that the certificate names host.
  void handshake(const std::string& host, boost::system::error_code& ec) {
    if (!tls_) return;
    SSL_set_tlsext_host_name(tls_->stream.native_handle(), host.c_str());  // SNI
    tls_->stream.set_verify_callback(ssl::host_name_verification(host));
    tls_->stream.handshake(ssl::stream_base::client, ec);
  }

  template <class Buffers>
  size_t read_some(const Buffers& b, boost::system::error_code& ec) {
    return tls_ ? tls_->stream.read_some(b, ec) : sock_.read_some(b, ec);
  }
  template <class Buffers>
  size_t write_some(const Buffers& b, boost::system::error_code& ec) {
    return tls_ ? tls_->stream.write_some(b, ec) : sock_.write_some(b, ec);
  }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    if (tls_)
      tls_->stream.async_read_some(b, std::forward<Handler>(h));
    else
      sock_.async_read_some(b, std::forward<Handler>(h));
  }

  template <class Buffers, class Handler>
  void async_write_some(const Buffers& b, Handler&& h) {
    if (tls_)
      tls_->stream.async_write_some(b, std::forward<Handler>(h));
    else
      sock_.async_write_some(b, std::forward<Handler>(h));
  }

  /// Closes the socket (no TLS close_notify: the peer sees the TCP close).
  void close() {
    boost::system::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  struct Tls {
    std::shared_ptr<ssl::context> ctx;
    ssl::stream<tcp::socket&> stream;
    Tls(tcp::socket& s, std::shared_ptr<ssl::context> c) : ctx(std::move(c)), stream(s, *ctx) {}
  };
  tcp::socket sock_;
  std::unique_ptr<Tls> tls_;
};

/// A connected socket's peer as "host:port" ("?" once it is gone), for log lines.
inline std::string peer_of(const tcp::socket& sock) {
  boost::system::error_code ec;
  auto at = sock.remote_endpoint(ec);
  return ec ? std::string("?") : at.address().to_string() + ":" + std::to_string(at.port());
}

}  // namespace apsis
