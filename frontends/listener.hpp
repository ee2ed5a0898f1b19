// What every wire server shares: WireServer, the face apsisd holds of each; Listener, which
// binds, accepts connections onto the IoPool's threads, keeps the set of open ones, closes
// those a periodic sweep finds expired, and closes all on stop; and PostingSink, which hands
// a coordinator's results back to a connection's thread.
//
// A Conn (a connection type) provides, all called on its own thread but expired():
//   void start();                             once accepted
//   bool expired(clock::time_point now) const; read by the sweep, from the main thread
//   void close();                             closes the socket and forgets itself
#pragma once

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "actors/replica_group.hpp"
#include "frontends/io_pool.hpp"
#include "messages/stream.hpp"

namespace apsis {

/// One server of a node (RESP, binary, HTTP), as apsisd starts and stops it.
class WireServer {
 public:
  virtual ~WireServer() = default;
  /// Binds and starts accepting; false with *error naming the port when that fails.
  virtual bool start(std::string* error) = 0;
  /// The bound port (after start).
  virtual uint16_t port() const = 0;
  /// Stops accepting and closes every connection (from any thread).
  virtual void stop() = 0;
};

namespace frontend {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

/// The sweep's period for a timeout: a tenth of it, within 10 ms..1 s.
inline clock::duration sweep_period(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 10, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
}

template <class Conn>
class Listener : public std::enable_shared_from_this<Listener<Conn>> {
 public:
  using ConnPtr = std::shared_ptr<Conn>;
  using Make = std::function<ConnPtr(tcp::socket)>;

  explicit Listener(IoPool& io) : io_(io), acceptor_(io.main()), sweeper_(io.main()) {}

  /// Binds to bind:port; false with *error ("<what> port <bind>:<port>: <reason>").
  bool listen(const std::string& bind, uint16_t port, const std::string& what, std::string* error) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(bind, ec);
    if (ec) return *error = "bad bind address '" + bind + "'", false;
    tcp::endpoint ep(addr, port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return *error = what + " port " + bind + ":" + std::to_string(port) + ": " + ec.message(),
             false;
    return true;
  }

  /// Accepts connections that `make` builds, each started on the pool's next thread; with
  /// a period, sweeps them that often for expired ones.
  void serve(Make make, clock::duration period) {
    make_ = std::move(make);
    accept();
    if (period.count() > 0) sweep(period);
  }

  uint16_t port() const {
    boost::system::error_code ec;
    return acceptor_.local_endpoint(ec).port();
  }

  /// Stops accepting and closes every connection on its own thread (from any thread; on
  /// the main thread at once, so that the closes are posted before an io stop that follows).
  void stop() {
    asio::dispatch(io_.main(), [self = this->shared_from_this()] {
      self->stopped_ = true;
      boost::system::error_code ec;
      self->acceptor_.close(ec);
      self->sweeper_.cancel();
      self->make_ = nullptr;  // it may hold the server that holds this listener
      std::lock_guard<std::mutex> lock(self->mu_);
      for (auto& c : self->open_) post_close(c);
    });
  }

  void forget(const ConnPtr& c) {
    std::lock_guard<std::mutex> lock(mu_);
    open_.erase(c);
  }

 private:
  static void post_close(const ConnPtr& c) {
    asio::post(c->executor(), [c] { c->close(); });
  }

  void accept() {
    acceptor_.async_accept(io_.next(), [self = this->shared_from_this()](auto ec, tcp::socket s) {
      if (self->stopped_) return;
      if (!ec) {
        ConnPtr c = self->make_(std::move(s));
        {
          std::lock_guard<std::mutex> lock(self->mu_);
          self->open_.insert(c);
        }
        asio::post(c->executor(), [c] { c->start(); });
      }
      self->accept();
    });
  }

  void sweep(clock::duration period) {
    sweeper_.expires_after(period);
    sweeper_.async_wait([self = this->shared_from_this(), period](boost::system::error_code ec) {
      if (ec || self->stopped_) return;
      const auto now = clock::now();
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        for (auto& c : self->open_)
          if (c->expired(now)) post_close(c);
      }
      self->sweep(period);
    });
  }

  IoPool& io_;
  tcp::acceptor acceptor_;
  asio::steady_timer sweeper_;
  Make make_;
  std::mutex mu_;  ///< guards open_: connections forget themselves on their own threads
  std::set<ConnPtr> open_;
  bool stopped_ = false;  ///< on the main thread only
};

/// A coordinator's results, handed to `then` on a connection's thread.
struct PostingSink : batch_sink {
  asio::any_io_executor ex;
  std::function<void(result_batch)> then;
  PostingSink(asio::any_io_executor ex, std::function<void(result_batch)> then)
      : ex(std::move(ex)), then(std::move(then)) {}
  void done(result_batch r) override {
    asio::post(ex, [then = std::move(then), r = std::move(r)]() mutable { then(std::move(r)); });
  }
};

}  // namespace frontend
}  // namespace apsis
