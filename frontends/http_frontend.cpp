#include "frontends/http_frontend.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <set>

#include "actors/session.hpp"
#include "frontends/rest.hpp"

namespace apsis {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using rest::Call;
using rest::Kind;
using rest::Request;
using rest::Response;

namespace {

using done_fn = std::function<void(bool, std::string)>;
using clock = std::chrono::steady_clock;

/// A short-lived actor that asks the node for its statistics; the answer (or a failure,
/// after `wait`) goes to `done` on the connection's thread. (It takes its inputs as spawn
/// arguments: CAF 0.17 binds a null reference when spawning a function with none.)
void stats_asker(caf::event_based_actor* self, node_actor node, std::chrono::milliseconds wait,
                 asio::any_io_executor ex, done_fn done) {
  self->request(node, wait, atom::stats_v)
      .then([=](std::string& j) { asio::post(ex, [=] { done(true, j); }); },
            [=](caf::error& e) {
              std::string why = self->home_system().render(e);
              asio::post(ex, [=] { done(false, why); });
            });
}

/// Results of a batch the coordinator actor ran, handed to the connection's thread.
struct Sink : batch_sink {
  asio::any_io_executor ex;
  std::function<void(result_batch)> then;
  void done(result_batch r) override {
    asio::post(ex, [then = std::move(then), r = std::move(r)]() mutable { then(std::move(r)); });
  }
};

/// The operations to run, moved out of the call; the call keeps them without their payload
/// (the responses need each one's kind and key, not a second copy of every value).
op_batch take_ops(Call& call) {
  op_batch run = std::move(call.ops);
  call.ops.clear();
  for (const kv_op& o : run) {
    kv_op light;
    light.kind = o.kind;
    light.key = o.key;
    call.ops.push_back(std::move(light));
  }
  return run;
}

constexpr int max_patch_tries = 8;  ///< reads and conditional writes before 409

}  // namespace

class HttpConnection;
using socket_t = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  IoPool& io;
  caf::actor_system& sys;
  Coordinator coordinator;
  node_actor node;
  session_actor session;  ///< holds the leases REST clients take
  std::shared_ptr<RequestMetrics> metrics;
  HttpOptions opts;
  tcp::acceptor acceptor;
  std::mutex mu;
  std::set<std::shared_ptr<HttpConnection>> open;  ///< for stop() and the sweep
  asio::steady_timer sweeper;

  Impl(IoPool& io, caf::actor_system& sys, Coordinator coordinator, lock_manager_actor locks,
       node_actor node, std::shared_ptr<RequestMetrics> metrics, HttpOptions opts)
      : io(io),
        sys(sys),
        coordinator(std::move(coordinator)),
        node(node),
        session(sys.spawn(apsis::session, std::move(locks), node)),
        metrics(std::move(metrics)),
        opts(std::move(opts)),
        acceptor(io.main()),
        sweeper(io.main()) {}

  void accept();
  /// Closes every connection past its deadline; runs every tenth of the timeout.
  void sweep();
  void forget(const std::shared_ptr<HttpConnection>& c) {
    std::lock_guard<std::mutex> lock(mu);
    open.erase(c);
  }
};

/// One client connection: reads a request, answers it, reads the next (one at a time, so
/// pipelined requests are answered in order); the buffer keeps what arrived past a request.
/// Its deadline (a request's arrival and answer) is an atomic the server's sweep checks: a
/// timer per request would cost a timer-queue update each.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(std::shared_ptr<HttpServer::Impl> srv, asio::io_context& io)
      : srv_(std::move(srv)), sock_(io.get_executor()) {}

  socket_t& socket() { return sock_; }

  void read() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(8 * 1024);  // a huge header is refused, not buffered
    parser_->body_limit(bulk_limit());
    deadline_.store((clock::now() + srv_->opts.deadline).time_since_epoch().count(),
                    std::memory_order_relaxed);
    http::async_read_header(
        sock_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_header(ec, n); });
  }

  bool expired(clock::time_point now) const {
    return now.time_since_epoch().count() > deadline_.load(std::memory_order_relaxed);
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    srv_->forget(shared_from_this());
  }

 private:
  /// A bulk call's body holds values in base64 and the JSON around them.
  size_t bulk_limit() const { return srv_->opts.limits.max_value_size * 2 + (1u << 20); }

  /// The header is in: a body bigger than the route takes is refused before it is read;
  /// a client that waits for "100 Continue" gets it.
  void on_header(beast::error_code ec, size_t n) {
    if (ec) return on_read(ec, n);
    header_bytes_ = n;
    const auto& h = parser_->get();
    const bool bulk = h.target().find("/bulk/") != beast::string_view::npos;
    const size_t limit = bulk ? bulk_limit() : srv_->opts.limits.max_value_size;
    parser_->body_limit(limit);
    if (auto length = parser_->content_length(); length && *length > limit) {
      Request head;
      head.version(h.version());
      head.keep_alive(false);  // the body is not read: the connection cannot go on
      return send(head, rest::error(head, http::status::payload_too_large,
                                    "a body of " + std::to_string(*length) +
                                        " bytes exceeds the limit of " + std::to_string(limit)));
    }
    if (parser_->is_done()) return on_read(ec, n);  // no body: nothing more to read
    auto self = shared_from_this();
    auto body = [self] {
      http::async_read(
          self->sock_, self->buf_, *self->parser_,
          [self](beast::error_code ec, size_t n) { self->on_read(ec, self->header_bytes_ + n); });
    };
    if (!beast::iequals(h[http::field::expect], "100-continue")) return body();
    static const std::string go_on = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(sock_, asio::buffer(go_on), [self, body](beast::error_code ec, size_t) {
      if (ec) return self->close();
      body();
    });
  }

  void on_read(beast::error_code ec, size_t n) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
      return close();
    if (srv_->metrics) srv_->metrics->bytes_in(RequestMetrics::rest, n);
    if (ec) {  // the request is malformed or too big: say why, then close
      Request bad;
      bad.version(11);
      bad.keep_alive(false);
      auto status = ec == http::error::body_limit ? http::status::payload_too_large
                    : ec == http::error::header_limit
                        ? http::status::request_header_fields_too_large
                        : http::status::bad_request;
      return send(bad, rest::error(bad, status, "bad request: " + ec.message()));
    }
    req_ = parser_->release();
    start_ = clock::now();
    handle();
  }

  void handle() {
    call_ = Call{};
    Response err;
    if (!rest::route(req_, srv_->opts.limits, &call_, &err)) return send(req_, std::move(err));
    auto self = shared_from_this();
    switch (call_.kind) {
      case Kind::healthz:
        return text(http::status::ok, "ok\n");
      case Kind::readyz:
      case Kind::stats:
      case Kind::metrics:
      case Kind::cluster:
        return ask_node();
      case Kind::routes:
        return admin(json{{"cmd", "routes"}});
      case Kind::lock:
      case Kind::unlock:
        return lock();
      case Kind::key:
        return exec(take_ops(call_), [self](result_batch r) {
          self->count(r);
          self->send(self->req_, rest::key_response(self->call_, self->req_, r[0]));
        });
      case Kind::bulk_get:
      case Kind::bulk_put:
        return exec(take_ops(call_), [self](result_batch r) {
          self->count(r);
          self->send(self->req_, rest::bulk_response(self->call_, self->req_, r));
        });
      case Kind::ns_list:
        call_.ops.push_back(kv_op{});
        call_.ops[0].id = storage::make_id(rest::system_ns, rest::catalog_key);
        call_.ops[0].read = uint8_t(success_policy::all) + 1;
        return exec(op_batch(call_.ops), [self](result_batch r) { self->list_namespaces(r[0]); });
      case Kind::patch:
      case Kind::ns_create:
      case Kind::ns_drop:
        return patch(max_patch_tries);
    }
  }

  /// Runs a batch on the direct path (this thread), or through the coordinator actor.
  void exec(op_batch ops, std::function<void(result_batch)> then) {
    auto now = srv_->coordinator.exec(ops, [&] {
      auto sink = std::make_shared<Sink>();
      sink->ex = sock_.get_executor();
      sink->then = std::move(then);  // the lambda runs only when `then` is not called here
      return sink;
    });
    if (now) then(std::move(*now));
  }

  void count(const result_batch& r) {
    if (!srv_->metrics) return;
    for (size_t i = 0; i < r.size() && i < call_.ops.size(); ++i)
      srv_->metrics->op(RequestMetrics::rest, call_.ops[i].kind, r[i].status);
  }

  /// Read, merge, write if the version is still the one read; a lost race reads again.
  void patch(int tries) {
    auto self = shared_from_this();
    exec(op_batch{call_.ops[0]}, [self, tries](result_batch r) {
      kv_op write;
      Response done;
      if (!rest::patch_step(self->call_, r[0], self->req_, &write, &done))
        return self->send(self->req_, std::move(done));
      self->exec(op_batch{std::move(write)}, [self, tries](result_batch w) {
        op_result& res = w[0];
        if (res.status == op_status::condition_failed && self->call_.patch_cond == op_cond::none &&
            tries > 1)
          return self->patch(tries - 1);
        if (res.status == op_status::condition_failed && self->call_.patch_cond == op_cond::none)
          return self->send(self->req_,
                            rest::error(self->req_, http::status::conflict,
                                        "the key changed under " + std::to_string(max_patch_tries) +
                                            " patches in a row"));
        if (self->call_.kind == Kind::patch) {
          if (self->srv_->metrics)
            self->srv_->metrics->op(RequestMetrics::rest, op_kind::put, res.status);
          Call as_put = self->call_;
          as_put.ops[0].kind = op_kind::put;
          return self->send(self->req_, rest::key_response(as_put, self->req_, res));
        }
        self->namespace_changed(res);
      });
    });
  }

  void namespace_changed(op_result& res) {
    if (res.status != op_status::ok) return send(req_, rest::key_response(call_, req_, res));
    if (call_.kind == Kind::ns_create)
      return send(req_, rest::json_response(req_, http::status::created,
                                            {{"namespace", call_.ns}, {"created", true}}));
    // Dropped from the catalog: every node now deletes the namespace's keys it holds.
    admin(json{{"cmd", "purge_ns"}, {"ns", call_.ns}});
  }

  void list_namespaces(const op_result& r) {
    if (r.status != op_status::ok && r.status != op_status::not_found)
      return send(req_, rest::error(req_, rest::status_of(r.status),
                                    "the namespace catalog: " + std::string(to_string(r.status))));
    json names = json::array({"default"});
    json doc = json::parse(r.record.json.empty() ? "{}" : r.record.json, nullptr, false);
    if (doc.is_object())
      for (const auto& [name, info] : doc.items()) names.push_back(name);
    send(req_, rest::json_response(req_, http::status::ok, {{"namespaces", names}}));
  }

  void ask_node() {
    auto wait = call_.kind == Kind::readyz ? std::chrono::milliseconds(1000) : srv_->opts.deadline;
    srv_->sys.spawn(stats_asker, srv_->node, wait, asio::any_io_executor(sock_.get_executor()),
                    done_fn([self = shared_from_this()](bool ok, std::string body) {
                      self->node_answered(ok, body);
                    }));
  }

  void node_answered(bool ok, const std::string& body) {
    if (!ok)
      return send(req_, rest::error(req_, http::status::service_unavailable,
                                    "the node did not answer: " + body));
    switch (call_.kind) {
      case Kind::readyz:
        return text(http::status::ok, "ready\n");
      case Kind::metrics: {
        std::string out = prometheus_text(body);
        if (srv_->metrics) out += srv_->metrics->prometheus();
        return text(http::status::ok, std::move(out), "text/plain; version=0.0.4");
      }
      case Kind::cluster: {
        json s = json::parse(body, nullptr, false);
        json c =
            s.is_object() && s.contains("cluster") ? s["cluster"] : json{{"nodes", json::array()}};
        c["node"] = s.is_object() ? s.value("node", "") : "";
        return send(req_, rest::json_response(req_, http::status::ok, c));
      }
      default:
        return text(http::status::ok, body + "\n", "application/json");
    }
  }

  /// A reply_fn (the session's answers) that resumes this connection on its own thread.
  wire::reply_fn on_reply(std::function<void(wire::Response)> then) {
    return std::make_shared<std::function<void(wire::Response)>>(
        [ex = sock_.get_executor(), then = std::move(then)](wire::Response r) {
          asio::post(ex, [then, r = std::move(r)]() mutable { then(std::move(r)); });
        });
  }

  void admin(const json& cmd) {
    caf::anon_send(
        srv_->session, atom::admin_v, cmd.dump(),
        on_reply([self = shared_from_this()](wire::Response r) {
          if (r.status != op_status::ok)
            return self->send(
                self->req_, rest::error(self->req_, http::status::service_unavailable, r.message));
          json body = json::parse(r.data, nullptr, false);
          if (body.is_object() && body.contains("error"))
            return self->send(
                self->req_,
                rest::json_response(self->req_, http::status::internal_server_error, body));
          if (self->call_.kind == Kind::ns_drop)
            body = {{"namespace", self->call_.ns}, {"dropped", true}, {"purge", body}};
          self->send(self->req_, rest::json_response(self->req_, http::status::ok, body));
        }));
  }

  void lock() {
    std::string key = call_.ns + std::string(1, '\0') + call_.key;
    auto self = shared_from_this();
    if (call_.kind == Kind::lock)
      return caf::anon_send(
          srv_->session, atom::lock_v, std::move(key), call_.lease_ms,
          on_reply([self](wire::Response r) {
            if (r.status != op_status::ok)
              return self->send(self->req_,
                                rest::error(self->req_, rest::status_of(r.status), r.message));
            self->send(self->req_,
                       rest::json_response(self->req_, http::status::ok,
                                           {{"token", r.token}, {"expires_ms", r.expiry_ms}}));
          }));
    caf::anon_send(
        srv_->session, atom::unlock_v, std::move(key), call_.token,
        on_reply([self](wire::Response r) {
          if (r.status != op_status::ok)
            return self->send(self->req_,
                              rest::error(self->req_, rest::status_of(r.status), r.message));
          self->send(self->req_,
                     rest::json_response(self->req_, http::status::ok, {{"unlocked", true}}));
        }));
  }

  void text(http::status s, std::string body, const char* type = "text/plain") {
    Response res(s, req_.version());
    res.set(http::field::server, "apsisd");
    res.set(http::field::content_type, type);
    res.keep_alive(req_.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    send(req_, std::move(res));
  }

  void send(const Request& req, Response res) {
    if (req.method() == http::verb::head)
      res.body().clear();  // the headers say what a GET would send
    if (auto& m = srv_->metrics) {
      m->http_response(res.result_int());
      m->latency(RequestMetrics::rest, clock::now() - start_);
    }
    res_ = std::move(res);
    res_.keep_alive(req.keep_alive() && res_.keep_alive());
    http::async_write(sock_, res_, [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (self->srv_->metrics) self->srv_->metrics->bytes_out(RequestMetrics::rest, n);
      if (ec || !self->res_.keep_alive()) return self->close();
      self->res_ = {};
      self->read();
    });
  }

  std::shared_ptr<HttpServer::Impl> srv_;
  socket_t sock_;
  std::atomic<clock::rep> deadline_{std::numeric_limits<clock::rep>::max()};
  bool closed_ = false;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  Response res_;
  Call call_;
  clock::time_point start_ = clock::now();
  size_t header_bytes_ = 0;
};

void HttpServer::Impl::accept() {
  auto conn = std::make_shared<HttpConnection>(shared_from_this(), io.next());
  acceptor.async_accept(conn->socket(), [self = shared_from_this(), conn](beast::error_code ec) {
    if (ec) return;  // closed by stop()
    conn->socket().set_option(tcp::no_delay(true), ec);
    {
      std::lock_guard<std::mutex> lock(self->mu);
      self->open.insert(conn);
    }
    asio::post(conn->socket().get_executor(), [conn] { conn->read(); });
    self->accept();
  });
}

void HttpServer::Impl::sweep() {
  auto period = std::clamp(opts.deadline / 10, std::chrono::milliseconds(10),
                           std::chrono::milliseconds(1000));
  sweeper.expires_after(period);
  sweeper.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // stopped
    const auto now = clock::now();
    {
      std::lock_guard<std::mutex> lock(self->mu);
      for (const auto& c : self->open)
        if (c->expired(now)) asio::post(c->socket().get_executor(), [c] { c->close(); });
    }
    self->sweep();
  });
}

HttpServer::HttpServer(IoPool& io, caf::actor_system& sys, Coordinator coordinator,
                       lock_manager_actor locks, node_actor node,
                       std::shared_ptr<RequestMetrics> metrics, HttpOptions opts)
    : impl_(std::make_shared<Impl>(io, sys, std::move(coordinator), std::move(locks),
                                   std::move(node), std::move(metrics), std::move(opts))) {}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::start(std::string* error) {
  beast::error_code ec;
  tcp::endpoint at(asio::ip::make_address(impl_->opts.bind, ec), impl_->opts.port);
  if (!ec) impl_->acceptor.open(at.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(at, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error =
        "http " + impl_->opts.bind + ":" + std::to_string(impl_->opts.port) + ": " + ec.message();
    return false;
  }
  impl_->accept();
  impl_->sweep();
  return true;
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void HttpServer::stop() {
  caf::anon_send_exit(impl_->session, caf::exit_reason::user_shutdown);
  asio::post(impl_->io.main(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->sweeper.cancel();
    std::set<std::shared_ptr<HttpConnection>> open;
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      open.swap(impl->open);
    }
    for (auto& c : open) asio::post(c->socket().get_executor(), [c] { c->close(); });
  });
}

}  // namespace apsis
