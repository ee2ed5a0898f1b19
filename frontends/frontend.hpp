// The connection machinery shared by the Asio frontends (RESP, binary): read what the
// socket has, let the protocol turn it into one batch of operations plus reply plans, send
// the batch to the coordinator as one message (or run it on this thread, when the node has a
// direct path), take the results back as one post, and write every finished batch's
// replies, in request order, with one write. A client with
// too much outstanding stops being read, so it only holds up its own connection. Under
// fsync `always`, the direct path leaves the fsync owed and the write of the replies waits
// for it (without blocking the thread), so that the writes of every client in a round share
// one fsync.
//
// A Protocol provides:
//   struct Plan;                                   how to answer one request
//   bool parse(std::string& in, size_t* pos, Batch& b, Connection& c);
//                                                  false = stop reading (quit or bad input)
//   void format(const Batch& b, std::string& out); the replies of a finished batch
// A connection runs on one thread of the IoPool for its whole life; results from actor
// threads arrive via post to it. With an idle timeout, a connection that has nothing in
// flight and has sent nothing for that long is closed (the Listener's sweep checks).
#pragma once

#include <spdlog/spdlog.h>
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
#include "frontends/listener.hpp"
#include "frontends/tls.hpp"

namespace apsis::frontend {

template <class Plan>
struct Batch {
  std::vector<Plan> plans;
  op_batch ops;
  result_batch results;
  std::vector<op_kind> kinds;  ///< of ops, kept for the metrics (ops move to the coordinator)
  std::chrono::steady_clock::time_point start;  ///< when its requests were read
  int waiting = 0;    ///< answers still to come (the coordinator's, and any others)
  bool quit = false;  ///< close the connection once these replies are written
  /// It ends with a command of several rounds (frontends/rounds.hpp): the requests after it
  /// are parsed only once it is answered, so that they run after it, in request order.
  bool barrier = false;
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
      : server_(std::move(server)),
        sock_(std::move(sock), server_->tls ? server_->tls->context() : nullptr),
        proto_(server_->context, peer_of(sock_.socket())) {}

  void start() {
    boost::system::error_code ec;
    sock_.socket().set_option(tcp::no_delay(true), ec);
    touch();
    sock_.start([self = this->shared_from_this()](boost::system::error_code ec) {
      if (!ec) return self->read();
      refused_handshake(self->server_->context.auth.get(), self->server_->metrics.get(),
                        self->server_->surface, self->sock_.socket(), ec);
      self->close();
    });
  }

  /// Whether it has been idle (nothing in flight, nothing read) for the idle timeout.
  bool expired(clock::time_point now) const {
    return server_->idle_timeout.count() > 0 && !busy_.load(std::memory_order_relaxed) &&
           last_read_.load(std::memory_order_relaxed) <
               (now - server_->idle_timeout).time_since_epoch().count();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    sock_.close();
    proto_.closed();
    server_->listener->forget(this->shared_from_this());
  }

  /// Marks one awaited answer of b as arrived, and writes what is finished.
  void arrived(BatchT& b) {
    --b.waiting;
    flush();
  }

  Protocol& protocol() { return proto_; }
  const Coordinator& coordinator() const { return server_->coordinator; }
  Stream::executor_type executor() { return sock_.get_executor(); }

 private:
  // Bounds on what one client may have outstanding before it stops being read.
  static constexpr size_t max_pending = 64;
  static constexpr size_t max_out = 64u << 20;

  void read() {
    if (reading_ || closed_ || stop_reading_ || (held_ && !in_.empty())) return;
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
    parse();
    read();
  }

  /// Parses what has arrived into one batch and submits it (unless a barrier is in flight).
  void parse() {
    if (held_ || closed_) return;
    BatchPtr batch = reuse();
    size_t pos = 0;
    if (!proto_.parse(in_, &pos, *batch, *this)) stop_reading_ = true;
    in_.erase(0, pos);
    if (in_.capacity() > (4u << 20) && in_.size() < (64u << 10))
      in_.shrink_to_fit();  // after a large value
    held_ = batch->barrier;
    if (!batch->plans.empty()) submit(batch);
  }

  void submit(const BatchPtr& batch) {
    pending_.push_back(batch);
    busy_.store(true, std::memory_order_relaxed);
    if (server_->metrics) {
      batch->start = std::chrono::steady_clock::now();
      batch->kinds.reserve(batch->ops.size());
      for (const kv_op& o : batch->ops) batch->kinds.push_back(o.kind);
    }
    if (!batch->ops.empty()) {
      auto now = server_->coordinator.exec(
          batch->ops,
          [&] {
            ++batch->waiting;
            return std::make_shared<PostingSink>(
                executor(), [weak = this->weak_from_this(), batch](result_batch r) {
                  batch->results = std::move(r);
                  if (auto c = weak.lock()) c->arrived(*batch);
                });
          },
          &owed_);
      if (now) batch->results = std::move(*now);
    }
    proto_.submitted(batch, *this);  // other answers the protocol awaits
    flush();
  }

  void flush() {
    while (!pending_.empty() && pending_.front()->waiting == 0) {
      // A reply behind an owed fsync is answered when that is done: counted then.
      owed_.empty() ? count(*pending_.front()) : uncounted_.push_back(pending_.front());
      proto_.format(*pending_.front(), out_);
      quit_ = quit_ || pending_.front()->quit;
      if (pending_.front()->barrier) release();
      if (pending_.front()->ops.capacity() <= 256) spare_ = std::move(pending_.front());
      pending_.pop_front();
    }
    if (pending_.empty()) busy_.store(false, std::memory_order_relaxed);
    schedule_write();
    read();
  }

  /// A barrier was answered: what arrived behind it is parsed next, from a posted handler
  /// (a pipeline of such commands on the direct path would otherwise nest a call each).
  void release() {
    held_ = false;
    if (in_.empty()) return;
    asio::post(sock_.get_executor(), [self = this->shared_from_this()] {
      self->parse();
      self->read();
    });
  }

  /// The last answered batch, emptied but with its vectors' room, if nothing holds it any
  /// more (a sink of the actor path may): a pipeline's operations then fill it without
  /// growing it again. Else a new one.
  BatchPtr reuse() {
    BatchPtr b = std::move(spare_);
    if (!b || b.use_count() != 1) return std::make_shared<BatchT>();
    op_batch ops = std::move(b->ops);
    std::vector<Plan> plans = std::move(b->plans);
    ops.clear();
    plans.clear();
    *b = BatchT{};
    b->ops = std::move(ops);
    b->plans = std::move(plans);
    return b;
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
    if (writing_ || settling_ || closed_) return;
    if (out_.empty()) {
      if ((quit_ || stop_reading_) && pending_.empty()) close();
      return;
    }
    wbuf_.swap(out_);
    out_.clear();
    if (owed_.empty()) return send();
    // These replies wait for the fsyncs owed so far, on the engine's flusher thread; this
    // thread meanwhile reads on (from every client), so the next fsync covers more.
    settling_ = true;
    owed_.when_settled([self = this->shared_from_this(),
                        waited = std::move(uncounted_)](storage::Status s) mutable {
      asio::post(self->sock_.get_executor(), [self, s = std::move(s), waited = std::move(waited)] {
        self->settling_ = false;
        if (s) {
          for (const BatchPtr& b : waited) self->count(*b);
          return self->send();
        }
        spdlog::error("{}: writes not acknowledged: {}", self->server_->what(), s.to_string());
        self->close();  // the client gets no reply rather than a false ok
      });
    });
    uncounted_.clear();  // moved into the callback
  }

  /// Writes wbuf_ out.
  void send() {
    if (closed_) return;
    writing_ = true;
    if (server_->metrics) server_->metrics->bytes_out(server_->surface, wbuf_.size());
    asio::async_write(sock_, asio::buffer(wbuf_),
                      [self = this->shared_from_this()](auto ec, size_t) {
                        self->writing_ = false;
                        self->wbuf_.clear();
                        if (self->wbuf_.capacity() > (4u << 20)) self->wbuf_.shrink_to_fit();
                        if (ec) return self->close();
                        self->write();
                        self->read();
                      });
  }

  std::shared_ptr<Server<Protocol>> server_;
  Stream sock_;
  Protocol proto_;
  std::array<char, 64 << 10> buf_;
  std::string in_, out_, wbuf_;
  std::deque<BatchPtr> pending_;
  BatchPtr spare_;                   ///< the last answered batch, for the next parse (reuse())
  storage::Unsynced owed_;           ///< fsyncs that the replies in out_ wait for
  std::vector<BatchPtr> uncounted_;  ///< batches in out_ whose metrics wait for those fsyncs
  bool reading_ = false, writing_ = false, write_posted_ = false, closed_ = false,
       stop_reading_ = false, quit_ = false, held_ = false;
  bool settling_ = false;  ///< wbuf_'s replies wait for owed_'s fsyncs
  // For the idle sweep, which runs on another thread.
  std::atomic<std::chrono::steady_clock::rep> last_read_{0};
  std::atomic<bool> busy_{false};  ///< requests in flight
};

/// A server of one protocol; Protocol::Context is shared by its connections.
template <class Protocol>
class Server : public WireServer, public std::enable_shared_from_this<Server<Protocol>> {
 public:
  using Context = typename Protocol::Context;
  using Conn = Connection<Protocol>;

  struct Options {
    std::string bind;
    uint16_t port = 0;
    std::string what;                           ///< the port's name in errors
    std::chrono::milliseconds idle_timeout{0};  ///< 0: a connection may stay idle forever
    std::shared_ptr<RequestMetrics> metrics;    ///< may be null (tests)
    RequestMetrics::Surface surface;
    std::shared_ptr<ServerTls> tls;  ///< null: plain TCP
  };

  Server(IoPool& io, Coordinator coordinator, Context ctx, Options opts)
      : coordinator(std::move(coordinator)),
        context(std::move(ctx)),
        metrics(std::move(opts.metrics)),
        surface(opts.surface),
        tls(std::move(opts.tls)),
        idle_timeout(opts.idle_timeout),
        listener(std::make_shared<Listener<Conn>>(io)),
        bind_(std::move(opts.bind)),
        port_(opts.port),
        what_(std::move(opts.what)) {}

  bool start(std::string* error) override {
    if (!listener->listen(bind_, port_, what_, error)) return false;
    listener->serve([self = this->shared_from_this()](
                        tcp::socket s) { return std::make_shared<Conn>(self, std::move(s)); },
                    idle_timeout.count() > 0 ? sweep_period(idle_timeout) : clock::duration(0));
    return true;
  }
  uint16_t port() const override { return listener->port(); }
  void stop() override { listener->stop(); }
  const std::string& what() const { return what_; }

  Coordinator coordinator;
  Context context;
  std::shared_ptr<RequestMetrics> metrics;
  RequestMetrics::Surface surface;
  std::shared_ptr<ServerTls> tls;
  std::chrono::milliseconds idle_timeout;
  std::shared_ptr<Listener<Conn>> listener;

 private:
  std::string bind_;
  uint16_t port_;
  std::string what_;
};

}  // namespace apsis::frontend
