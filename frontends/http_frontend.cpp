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
#include "frontends/ask.hpp"
#include "frontends/large_transfer.hpp"
#include "frontends/listener.hpp"
#include "frontends/rest.hpp"
#include "frontends/rmw.hpp"
#include "frontends/rounds.hpp"

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

using clock = std::chrono::steady_clock;
using frontend::Answer;

/// The operations to run, moved out of the call; the call keeps them without their payload
/// (the responses need each one's kind and key, not a second copy of every value).
op_batch take_ops(Call& call) {
  op_batch run = std::move(call.ops);
  call.ops.clear();
  for (const kv_op& o : run) {
    kv_op light;
    light.kind = o.kind;
    light.key = o.key;
    light.change = o.change;
    call.ops.push_back(std::move(light));
  }
  return run;
}

constexpr int max_catalog_tries = 8;  ///< reads and conditional writes before 409

class HttpConnection;

/// The HTTP port's server: what its connections share.
struct HttpServer : WireServer, std::enable_shared_from_this<HttpServer> {
  caf::actor_system& sys;
  Coordinator coordinator;
  node_actor node;
  session_actor session;  ///< holds the leases REST clients take
  std::shared_ptr<RequestMetrics> metrics;
  HttpOptions opts;
  std::shared_ptr<frontend::Listener<HttpConnection>> listener;

  HttpServer(IoPool& io, caf::actor_system& sys, Coordinator coordinator, lock_manager_actor locks,
             node_actor node, std::shared_ptr<RequestMetrics> metrics, HttpOptions opts)
      : sys(sys),
        coordinator(std::move(coordinator)),
        node(node),
        session(sys.spawn(apsis::session, std::move(locks))),
        metrics(std::move(metrics)),
        opts(std::move(opts)),
        listener(std::make_shared<frontend::Listener<HttpConnection>>(io)) {}

  bool start(std::string* error) override;
  uint16_t port() const override { return listener->port(); }
  void stop() override {
    caf::anon_send_exit(session, caf::exit_reason::user_shutdown);
    listener->stop();
  }
};

/// One client connection: reads a request, answers it, reads the next (one at a time, so
/// pipelined requests are answered in order); the buffer keeps what arrived past a request.
/// Its deadline (a request's arrival and answer) is an atomic the server's sweep checks: a
/// timer per request would cost a timer-queue update each.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(std::shared_ptr<HttpServer> srv, tcp::socket sock)
      : srv_(std::move(srv)),
        sock_(std::move(sock), srv_->opts.tls ? srv_->opts.tls->context() : nullptr) {}

  Stream::executor_type executor() { return sock_.get_executor(); }

  void start() {
    beast::error_code ec;
    sock_.socket().set_option(tcp::no_delay(true), ec);
    // The handshake has the time of a request.
    deadline_.store((clock::now() + srv_->opts.deadline).time_since_epoch().count(),
                    std::memory_order_relaxed);
    sock_.start([self = shared_from_this()](beast::error_code ec) {
      if (!ec) return self->read();
      frontend::refused_handshake(self->srv_->opts.auth.get(), self->srv_->metrics.get(),
                                  RequestMetrics::rest, self->sock_.socket(), ec);
      self->close();
    });
  }

  void read() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(8 * 1024);  // a huge header is refused, not buffered
    // The largest body any route takes: on_header() sets the route's own once the header is in
    // (a Content-Length over this one fails the header's read).
    parser_->body_limit(std::max<uint64_t>(bulk_limit(), srv_->opts.limits.max_object_size));
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
    sock_.close();
    srv_->listener->forget(shared_from_this());
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
    const auto length = parser_->content_length();
    const uint64_t limit = streams() ? srv_->opts.limits.max_object_size
                           : bulk    ? bulk_limit()
                                     : srv_->opts.limits.max_value_size;
    parser_->body_limit(limit);
    if (length && *length > limit) {
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
      if (self->streams()) return self->upload();
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

  /// A PUT of a key whose body is over the record limit, or chunked: streamed into chunks
  /// (when a chunk fits in a record).
  bool streams() const {
    const auto& h = parser_->get();
    if (h.method() != http::verb::put || h.target().find("/keys/") == beast::string_view::npos ||
        srv_->opts.limits.max_value_size < large::chunk_size)
      return false;
    const auto length = parser_->content_length();
    return length ? *length > srv_->opts.limits.max_value_size : parser_->chunked();
  }

  void touch() {
    deadline_.store((clock::now() + srv_->opts.deadline).time_since_epoch().count(),
                    std::memory_order_relaxed);
  }

  /// A large value's upload (frontends/large_transfer.hpp), routed from its header alone.
  void upload() {
    Request head;
    head.base() = parser_->get().base();
    start_ = clock::now();
    Response err;
    call_ = Call{};
    if (!rest::route(head, srv_->opts.limits, &call_, &err) || call_.kind != Kind::key ||
        call_.ops.empty() || call_.ops[0].kind != op_kind::put) {
      if (err.result_int() < 400)
        err = rest::error(head, http::status::bad_request, "no such upload");
      err.keep_alive(false);  // the body is not read: the connection cannot go on
      return send(head, std::move(err));
    }
    if (!admitted(head, true)) return;
    auto self = shared_from_this();
    kv_op commit = take_ops(call_).at(0);
    auto up = std::make_shared<frontend::Upload>(
        sock_, buf_, std::move(*parser_), srv_->opts.limits.max_object_size, srv_->coordinator,
        call_.ns, std::move(commit), [self] { self->touch(); },
        [self, head](std::optional<op_result> r) mutable {
          if (!r) return self->close();
          if (r->status != op_status::ok) head.keep_alive(false);  // the body may be unread
          self->send(head, rest::key_response(self->call_, head, *r));
        });
    up->start();
  }

  /// A GET or HEAD that found a large value's manifest: its head, then its bytes streamed.
  void download(op_result r) {
    auto self = shared_from_this();
    if (r.record.data.empty()) {  // a HEAD's lookup: the manifest itself says the size
      kv_op get;
      get.kind = op_kind::get;
      get.key = call_.key;
      get.id = storage::make_id(call_.ns, call_.key);
      return exec({std::move(get)},
                  [self](result_batch got) { self->download(std::move(got.at(0))); });
    }
    large::Manifest m;
    if (!large::Manifest::decode(r.record.data, &m))
      return send(req_, rest::error(req_, http::status::internal_server_error,
                                    "the large value's manifest is unreadable"));
    uint64_t first = 0, last = 0;
    Response head = rest::large_response(call_, req_, r, m.size, &first, &last);
    if (first > last) return send(req_, std::move(head));
    head_.emplace(head.result(), head.version());
    for (const auto& f : head) head_->set(f.name_string(), f.value());
    head_->keep_alive(req_.keep_alive());
    serializer_.emplace(*head_);
    http::async_write_header(sock_, *serializer_,
                             [self, m, first, last](beast::error_code ec, size_t) {
                               if (ec) return self->close();
                               auto d = std::make_shared<frontend::Download>(
                                   self->sock_, self->srv_->coordinator, self->call_.ns, m, first,
                                   last, [self] { self->touch(); },
                                   [self](bool ok) {
                                     if (!ok || !self->head_->keep_alive()) return self->close();
                                     self->read();
                                   });
                               d->start();
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
    if (!admitted(req_, false)) return;
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
      case Kind::patch:
        return exec(take_ops(call_), [self](result_batch r) {
          self->count(r);
          const bool read =
              self->call_.ops[0].kind == op_kind::get || self->call_.ops[0].kind == op_kind::lookup;
          if (read && r[0].status == op_status::ok &&
              (r[0].record.user_flags & large::manifest_flag))
            return self->download(std::move(r[0]));
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
      case Kind::ns_create:
      case Kind::ns_drop:
        return edit_catalog();
      case Kind::list_keys:
        return list_keys();
    }
  }

  /// A page of keys: as many pages as it takes to gather `limit` keys (at most 64, so that
  /// a sparse namespace answers soon, with a cursor to go on from).
  void list_keys() {
    auto l = std::make_shared<frontend::Lister>();
    l->ns = call_.ns;
    l->q = call_.list;
    l->at = call_.list_from;
    l->want = call_.list_limit;
    l->pages = 64;
    auto self = shared_from_this();
    frontend::list(srv_->coordinator, executor(), l, [self, l] {
      rest::ListPage page{std::move(l->records), l->cursor(), l->failed, l->message};
      self->send(self->req_, rest::list_response(self->call_, self->req_, page));
    });
  }

  /// Runs a batch on the direct path (this thread), or through the coordinator actor.
  void exec(op_batch ops, std::function<void(result_batch)> then) {
    frontend::exec(srv_->coordinator, executor(), std::move(ops), std::move(then));
  }

  void count(const result_batch& r) {
    if (!srv_->metrics) return;
    for (size_t i = 0; i < r.size() && i < call_.ops.size(); ++i)
      srv_->metrics->op(RequestMetrics::rest, call_.ops[i].kind, r[i].status);
  }

  /// Namespace create and drop: read the catalog, edit it, write it if its version is still
  /// the one read; a lost race reads again.
  void edit_catalog() {
    auto self = shared_from_this();
    auto stop = std::make_shared<Response>();  // catalog_step's answer when it makes no write
    auto rmw = std::make_shared<frontend::Rmw>();
    rmw->modify = [self, stop](const op_result& read, kv_op* write) {
      return rest::catalog_step(self->call_, read, self->req_, write, stop.get());
    };
    rmw->done = [self, stop](const op_result&, const op_result* written, int tries_left) {
      if (!written) return self->send(self->req_, std::move(*stop)), false;
      const bool lost = written->status == op_status::condition_failed;
      if (lost && tries_left > 0) return true;
      if (lost)
        return self->send(self->req_,
                          rest::error(self->req_, http::status::conflict,
                                      "the catalog changed under " +
                                          std::to_string(max_catalog_tries) + " edits in a row")),
               false;
      self->namespace_changed(*written);
      return false;
    };
    frontend::read_modify_write(srv_->coordinator, executor(), call_.ops[0], rmw,
                                max_catalog_tries);
  }

  void namespace_changed(op_result res) {
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
    frontend::ask<std::string>(
        srv_->sys, executor(), caf::duration{wait}, srv_->node,
        [self = shared_from_this()](Answer<std::string> a) {
          self->node_answered(a.ok, a.ok ? a.value : a.error);
        },
        atom::stats_v);
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

  void admin(const json& cmd) {
    frontend::ask<std::string>(
        srv_->sys, executor(), caf::infinite, srv_->node,
        [self = shared_from_this()](Answer<std::string> a) {
          if (!a.ok)
            return self->send(self->req_,
                              rest::error(self->req_, http::status::service_unavailable, a.error));
          json body = json::parse(a.value, nullptr, false);
          if (body.is_object() && body.contains("error"))
            return self->send(
                self->req_,
                rest::json_response(self->req_, http::status::internal_server_error, body));
          if (self->call_.kind == Kind::ns_drop)
            body = {{"namespace", self->call_.ns}, {"dropped", true}, {"purge", body}};
          self->send(self->req_, rest::json_response(self->req_, http::status::ok, body));
        },
        atom::admin_v, cmd.dump());
  }

  /// Takes or ends a lease through the server's SESSION, which holds REST clients' leases.
  void lock() {
    std::string key = call_.ns + std::string(1, '\0') + call_.key;
    auto self = shared_from_this();
    auto refused = [self](http::status s, const std::string& why) {
      self->send(self->req_, rest::error(self->req_, s, why));
    };
    if (call_.kind == Kind::lock)
      return frontend::ask<lease>(
          srv_->sys, executor(), caf::infinite, srv_->session,
          [self, refused](Answer<lease> a) {
            if (!a.ok) return refused(http::status::bad_request, a.error);
            self->send(self->req_, rest::json_response(self->req_, http::status::ok,
                                                       {{"token", a.value.token},
                                                        {"expires_ms", a.value.expires_ms}}));
          },
          atom::lock_v, std::move(key), call_.lease_ms);
    frontend::ask<bool>(
        srv_->sys, executor(), caf::infinite, srv_->session,
        [self, refused](Answer<bool> a) {
          if (!a.ok) return refused(http::status::service_unavailable, a.error);
          if (!a.value) return refused(http::status::not_found, "no lease with that token");
          self->send(self->req_,
                     rest::json_response(self->req_, http::status::ok, {{"unlocked", true}}));
        },
        atom::unlock_v, std::move(key), call_.token);
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

  /// Whether the request's user may make call_ (anyone may, with no users); else its refusal
  /// is sent: 401 without credentials or with wrong ones, 429 while its address is throttled,
  /// 403 without the permission. body_unread: the connection cannot go on after a refusal.
  bool admitted(const Request& req, bool body_unread) {
    auto* auth = srv_->opts.auth.get();
    bool global = false;
    const int need = rest::needs(call_, &global);
    if (!auth || !auth->required() || need < 0) return true;
    const std::string peer = peer_of(sock_.socket());
    auto refuse = [&](http::status s, const std::string& why) {
      Response res = rest::error(req, s, why);
      if (s == http::status::unauthorized)
        res.set(http::field::www_authenticate,
                "Basic realm=\"apsis\", charset=\"UTF-8\", Bearer realm=\"apsis\"");
      if (body_unread) res.keep_alive(false);
      send(req, std::move(res));
      return false;
    };
    std::string name, password, token;
    const bool basic = rest::basic_credentials(req, &name, &password);
    if (!basic && !rest::bearer_token(req, &token)) {
      auth->refused(RequestMetrics::rest, RequestMetrics::auth_no_login, peer,
                    std::string(req.target()).substr(0, 200) + " without credentials");
      return refuse(http::status::unauthorized,
                    "authentication required (Authorization: Basic or Bearer, docs/security.md)");
    }
    const config::User* user = nullptr;
    switch (basic ? auth->login(RequestMetrics::rest, peer, name, password, &user)
                  : auth->bearer(RequestMetrics::rest, peer, token, &user)) {
      case frontend::Authenticator::Outcome::throttled:
        return refuse(http::status::too_many_requests,
                      "too many failed logins from this address: wait and try again");
      case frontend::Authenticator::Outcome::wrong:
        return refuse(http::status::unauthorized,
                      basic ? "invalid username-password pair" : "invalid bearer token");
      case frontend::Authenticator::Outcome::ok:
        break;
    }
    const uint8_t has = global ? user->global() : user->on(call_.ns);
    if (!(need & ~has)) return true;
    const std::string where = global ? "on every namespace" : "in namespace '" + call_.ns + "'";
    auth->refused(RequestMetrics::rest, RequestMetrics::auth_no_permission, peer,
                  std::string(req.target()).substr(0, 200) + " by " + user->name);
    return refuse(http::status::forbidden, "user " + user->name + " may not do this " + where +
                                               " (it needs " + config::permission_names(need) +
                                               ", has " + config::permission_names(has) + ")");
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

  std::shared_ptr<HttpServer> srv_;
  Stream sock_;
  std::atomic<clock::rep> deadline_{std::numeric_limits<clock::rep>::max()};
  bool closed_ = false;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  Response res_;
  Call call_;
  // a large value's download: its head, written before the chunks
  std::optional<http::response<http::empty_body>> head_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  clock::time_point start_ = clock::now();
  size_t header_bytes_ = 0;
};

bool HttpServer::start(std::string* error) {
  if (!listener->listen(opts.bind, opts.port, "http", error)) return false;
  listener->serve(
      [self = shared_from_this()](tcp::socket s) {
        return std::make_shared<HttpConnection>(self, std::move(s));
      },
      frontend::sweep_period(opts.deadline));
  return true;
}

}  // namespace

std::shared_ptr<WireServer> make_http_server(IoPool& io, caf::actor_system& sys,
                                             Coordinator coordinator, lock_manager_actor locks,
                                             node_actor node,
                                             std::shared_ptr<RequestMetrics> metrics,
                                             HttpOptions opts) {
  return std::make_shared<HttpServer>(io, sys, std::move(coordinator), std::move(locks),
                                      std::move(node), std::move(metrics), std::move(opts));
}

}  // namespace apsis
