// The connection machinery shared by the Asio frontends (RESP, binary): read what the
// socket has, let the protocol turn it into one batch of operations plus reply plans, send
// the batch to the coordinator as one message (or run it on this thread, when the node has a
// direct path), take the results back as one post, and write every finished batch's
// replies, in request order, with one write. A client with
// too much outstanding stops being read, so it only holds up its own connection.
//
// A Protocol provides:
//   struct Plan;                                   how to answer one request
//   bool parse(std::string& in, size_t* pos, Batch& b, Connection& c);
//                                                  false = stop reading (quit or bad input)
//   void format(const Batch& b, std::string& out); the replies of a finished batch
// A connection runs on one thread of the IoPool for its whole life; results from actor
// threads arrive via post to it. With an idle timeout, a connection that has nothing in
// flight and has sent nothing for that long is closed (a sweep checks, every tenth of it).
#pragma once

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "actors/metrics.hpp"
#include "actors/replica_group.hpp"
#include "frontends/io_pool.hpp"

namespace apsis::frontend {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

template <class Plan>
struct Batch {
  std::vector<Plan> plans;
  op_batch ops;
  result_batch results;
  std::vector<op_kind> kinds;  ///< of ops, kept for the metrics (ops move to the coordinator)
  std::chrono::steady_clock::time_point start;  ///< when its requests were read
  int waiting = 0;    ///< answers still to come (the coordinator's, and any others)
  bool quit = false;  ///< close the connection once these replies are written
};

template <class Protocol>
class Server;

template <class Protocol>
class Connection : public std::enable_shared_from_this<Connection<Protocol>> {
 public:
  using Plan = typename Protocol::Plan;
  using BatchT = Batch<Plan>;
  using BatchPtr = std::shared_ptr<BatchT>;

  Connection(std::shared_ptr<Server<Protocol>> server, tcp::socket sock)
      : server_(std::move(server)), sock_(std::move(sock)), proto_(server_->context) {}

  void start() {
    boost::system::error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
    touch();
    read();
  }

  /// Whether it has been idle (nothing in flight, nothing read) since before `since`.
  bool idle_since(std::chrono::steady_clock::time_point since) const {
    return !busy_.load(std::memory_order_relaxed) &&
           last_read_.load(std::memory_order_relaxed) < since.time_since_epoch().count();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    sock_.close(ec);
    proto_.closed();
    server_->forget(this->shared_from_this());
  }

  /// Runs f on the I/O thread later, if the connection still exists (for answers that
  /// arrive from actor threads).
  std::function<void(std::function<void(Connection&)>)> poster() {
    return [weak = this->weak_from_this(),
            ex = sock_.get_executor()](std::function<void(Connection&)> f) {
      asio::post(ex, [weak, f = std::move(f)] {
        if (auto c = weak.lock()) f(*c);
      });
    };
  }

  /// Marks one awaited answer of b as arrived, and writes what is finished.
  void arrived(BatchT& b) {
    --b.waiting;
    flush();
  }

  Protocol& protocol() { return proto_; }
  tcp::socket::executor_type executor() { return sock_.get_executor(); }
  /// Closes the connection on its own thread.
  void post_close() {
    asio::post(executor(), [self = this->shared_from_this()] { self->close(); });
  }

 private:
  // Bounds on what one client may have outstanding before it stops being read.
  static constexpr size_t max_pending = 64;
  static constexpr size_t max_out = 64u << 20;

  struct Sink : batch_sink {
    std::function<void(std::function<void(Connection&)>)> post;
    BatchPtr batch;
    void done(result_batch results) override {
      post([b = batch, r = std::move(results)](Connection& c) mutable {
        b->results = std::move(r);
        c.arrived(*b);
      });
    }
  };

  void read() {
    if (reading_ || closed_ || stop_reading_) return;
    if (pending_.size() >= max_pending || out_.size() >= max_out) return;  // flush() resumes
    reading_ = true;
    sock_.async_read_some(asio::buffer(buf_), [self = this->shared_from_this()](auto ec, size_t n) {
      self->reading_ = false;
      if (ec) {
        self->stop_reading_ = true;
        if (self->pending_.empty()) self->close();
        return;
      }
      self->on_read(n);
    });
  }

  void touch() {
    last_read_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                     std::memory_order_relaxed);
  }

  void on_read(size_t n) {
    if (server_->idle_timeout.count() > 0) touch();
    if (server_->metrics) server_->metrics->bytes_in(server_->surface, n);
    in_.append(buf_.data(), n);
    auto batch = std::make_shared<BatchT>();
    size_t pos = 0;
    if (!proto_.parse(in_, &pos, *batch, *this)) stop_reading_ = true;
    in_.erase(0, pos);
    if (!batch->plans.empty()) submit(batch);
    read();
  }

  void submit(const BatchPtr& batch) {
    pending_.push_back(batch);
    busy_.store(true, std::memory_order_relaxed);
    if (server_->metrics) {
      batch->start = std::chrono::steady_clock::now();
      for (const kv_op& o : batch->ops) batch->kinds.push_back(o.kind);
    }
    if (!batch->ops.empty()) {
      auto now = server_->coordinator.exec(batch->ops, [&] {
        ++batch->waiting;
        auto sink = std::make_shared<Sink>();
        sink->post = poster();
        sink->batch = batch;
        return sink;
      });
      if (now) batch->results = std::move(*now);
    }
    proto_.submitted(batch, *this);  // other answers the protocol awaits
    flush();
  }

  void flush() {
    while (!pending_.empty() && pending_.front()->waiting == 0) {
      count(*pending_.front());
      proto_.format(*pending_.front(), out_);
      quit_ = quit_ || pending_.front()->quit;
      pending_.pop_front();
    }
    if (pending_.empty()) busy_.store(false, std::memory_order_relaxed);
    schedule_write();
    read();
  }

  void count(const BatchT& b) {
    RequestMetrics* m = server_->metrics.get();
    if (!m || b.kinds.empty()) return;
    for (size_t i = 0; i < b.results.size() && i < b.kinds.size(); ++i)
      m->op(server_->surface, b.kinds[i], b.results[i].status);
    m->latency(server_->surface, std::chrono::steady_clock::now() - b.start, b.kinds.size());
  }

  // Replies go out from a posted handler, after the other sockets that were ready in this
  // round have been read and answered (as Redis writes in beforeSleep): a client then finds
  // many replies at once instead of being woken for each one, and a wake-up across CPUs is
  // what a loopback send costs most here (docs/benchmarks.md).
  void schedule_write() {
    if (write_posted_ || writing_ || closed_) return;
    write_posted_ = true;
    asio::post(sock_.get_executor(), [self = this->shared_from_this()] {
      self->write_posted_ = false;
      self->write();
    });
  }

  void write() {
    if (writing_ || closed_) return;
    if (out_.empty()) {
      if ((quit_ || stop_reading_) && pending_.empty()) close();
      return;
    }
    writing_ = true;
    if (server_->metrics) server_->metrics->bytes_out(server_->surface, out_.size());
    wbuf_.swap(out_);
    out_.clear();
    asio::async_write(sock_, asio::buffer(wbuf_),
                      [self = this->shared_from_this()](auto ec, size_t) {
                        self->writing_ = false;
                        self->wbuf_.clear();
                        if (ec) return self->close();
                        self->write();
                        self->read();
                      });
  }

  std::shared_ptr<Server<Protocol>> server_;
  tcp::socket sock_;
  Protocol proto_;
  std::array<char, 64 << 10> buf_;
  std::string in_, out_, wbuf_;
  std::deque<BatchPtr> pending_;
  bool reading_ = false, writing_ = false, write_posted_ = false, closed_ = false,
       stop_reading_ = false, quit_ = false;
  // For the idle sweep, which runs on another thread.
  std::atomic<std::chrono::steady_clock::rep> last_read_{0};
  std::atomic<bool> busy_{false};  ///< requests in flight
};

/// Accepts connections for one protocol; Protocol::Context is shared by its connections.
template <class Protocol>
class Server : public std::enable_shared_from_this<Server<Protocol>> {
 public:
  using Context = typename Protocol::Context;

  Server(IoPool& io, Coordinator coordinator, Context ctx, std::shared_ptr<RequestMetrics> metrics,
         RequestMetrics::Surface surface)
      : io(io),
        coordinator(std::move(coordinator)),
        context(std::move(ctx)),
        metrics(std::move(metrics)),
        surface(surface),
        acceptor_(io.main()),
        sweeper_(io.main()) {}

  /// Binds and starts accepting; false with *error set when that fails.
  bool start(const std::string& bind, uint16_t port, const std::string& what, std::string* error) {
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
    accept();
    if (idle_timeout.count() > 0) sweep();
    return true;
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  /// Stops accepting and closes every connection (on its own thread). Runs on main().
  void stop() {
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    sweeper_.cancel();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : connections_) c->post_close();
  }

  void forget(const std::shared_ptr<Connection<Protocol>>& c) {
    std::lock_guard<std::mutex> lock(mu_);
    connections_.erase(c);
  }

  IoPool& io;
  Coordinator coordinator;
  Context context;
  std::shared_ptr<RequestMetrics> metrics;  ///< may be null (tests)
  RequestMetrics::Surface surface;
  std::chrono::milliseconds idle_timeout{0};  ///< 0: a connection may stay idle forever

 private:
  void accept() {
    acceptor_.async_accept(io.next(), [self = this->shared_from_this()](auto ec, tcp::socket sock) {
      if (self->stopped_) return;
      if (!ec) {
        auto c = std::make_shared<Connection<Protocol>>(self, std::move(sock));
        {
          std::lock_guard<std::mutex> lock(self->mu_);
          self->connections_.insert(c);
        }
        asio::post(c->executor(), [c] { c->start(); });
      }
      self->accept();
    });
  }

  /// Closes the connections idle for longer than idle_timeout.
  void sweep() {
    sweeper_.expires_after(std::clamp(idle_timeout / 10, std::chrono::milliseconds(10),
                                      std::chrono::milliseconds(1000)));
    sweeper_.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
      if (ec || self->stopped_) return;
      auto since = std::chrono::steady_clock::now() - self->idle_timeout;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        for (auto& c : self->connections_)
          if (c->idle_since(since)) c->post_close();
      }
      self->sweep();
    });
  }

  tcp::acceptor acceptor_;
  asio::steady_timer sweeper_;
  std::mutex mu_;  ///< guards connections_: connections forget themselves on their threads
  std::set<std::shared_ptr<Connection<Protocol>>> connections_;
  bool stopped_ = false;
};

}  // namespace apsis::frontend
