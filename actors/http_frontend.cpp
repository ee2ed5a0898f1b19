#include "actors/http_frontend.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <mutex>
#include <set>

namespace apsis {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

void metric(std::string& out, const std::string& name, const std::string& labels, const json& v) {
  if (!v.is_number()) return;
  out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + v.dump() + "\n";
}

using done_fn = std::function<void(bool, std::string)>;

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

void ask_stats(caf::actor_system& sys, node_actor node, std::chrono::milliseconds wait,
               asio::any_io_executor ex, done_fn done) {
  sys.spawn(stats_asker, std::move(node), wait, std::move(ex), std::move(done));
}

}  // namespace

std::string prometheus_text(const std::string& stats_json) {
  json s = json::parse(stats_json, nullptr, false);
  std::string out;
  if (!s.is_object()) return out;
  for (const auto& b : s.value("backends", json::array())) {
    std::string labels = "backend=\"" + std::to_string(b.value("id", 0)) + "\",group=\"" +
                         std::to_string(b.value("group", 0)) + "\"";
    for (const auto& [k, v] : b.items())
      if (k != "id" && k != "group") metric(out, "apsis_backend_" + k, labels, v);  // labels already
  }
  for (const char* section : {"anti_entropy", "merge"})
    if (s.contains(section))
      for (const auto& [k, v] : s[section].items()) metric(out, std::string("apsis_") + section + "_" + k, "", v);
  if (s.contains("cluster"))
    for (const auto& n : s["cluster"].value("nodes", json::array()))
      out += "apsis_peer_up{node=\"" + n.value("name", std::string()) + "\"} " +
             (n.value("state", std::string()) == "down" ? "0" : "1") + "\n";
  return out;
}

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  IoPool& io;
  caf::actor_system& sys;
  node_actor node;
  HttpOptions opts;
  tcp::acceptor acceptor;
  std::mutex mu;
  std::set<std::shared_ptr<beast::tcp_stream>> open;

  Impl(IoPool& io, caf::actor_system& sys, node_actor node, HttpOptions opts)
      : io(io), sys(sys), node(std::move(node)), opts(std::move(opts)), acceptor(io.main()) {}

  void accept() {
    acceptor.async_accept(io.next(), [self = shared_from_this()](beast::error_code ec, tcp::socket sock) {
      if (ec) return;  // closed by stop()
      auto stream = std::make_shared<beast::tcp_stream>(std::move(sock));
      {
        std::lock_guard<std::mutex> lock(self->mu);
        self->open.insert(stream);
      }
      self->read(stream);
      self->accept();
    });
  }

  void forget(const std::shared_ptr<beast::tcp_stream>& stream) {
    beast::error_code ec;
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream->close();
    std::lock_guard<std::mutex> lock(mu);
    open.erase(stream);
  }

  void read(std::shared_ptr<beast::tcp_stream> stream) {
    auto buf = std::make_shared<beast::flat_buffer>();
    auto parser = std::make_shared<http::request_parser<http::empty_body>>();
    parser->header_limit(8 * 1024);  // a huge header is refused, not buffered
    parser->body_limit(0);           // GET only: no body
    stream->expires_after(opts.deadline);  // a slow or silent client is closed
    http::async_read(*stream, *buf, *parser,
                     [self = shared_from_this(), stream, buf, parser](beast::error_code ec, size_t) {
                       if (ec) return self->forget(stream);
                       self->answer(stream, parser->release());
                     });
  }

  void reply(std::shared_ptr<beast::tcp_stream> stream, bool keep_alive, http::status status,
             const std::string& type, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::server, "apsisd");
    res->set(http::field::content_type, type);
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    http::async_write(*stream, *res, [self = shared_from_this(), stream, res](beast::error_code ec, size_t) {
      if (ec || !res->keep_alive()) return self->forget(stream);
      self->read(stream);
    });
  }

  void answer(std::shared_ptr<beast::tcp_stream> stream, http::request<http::empty_body> req) {
    const bool keep = req.keep_alive();
    const std::string target(req.target());
    auto error = [&](http::status s, const std::string& why) {
      reply(stream, keep, s, "application/json", json{{"error", why}}.dump() + "\n");
    };
    if (req.method() != http::verb::get) return error(http::status::method_not_allowed, "only GET here");
    if (target == "/healthz") return reply(stream, keep, http::status::ok, "text/plain", "ok\n");
    if (target != "/readyz" && target != "/v1/stats" && target != "/metrics")
      return error(http::status::not_found, "no route " + target);
    auto wait = target == "/readyz" ? std::chrono::milliseconds(1000) : opts.deadline;
    ask_stats(sys, node, wait, stream->get_executor(),
              [self = shared_from_this(), stream, keep, target](bool ok, std::string body) {
                if (!ok)
                  return self->reply(stream, keep, http::status::service_unavailable, "application/json",
                                     json{{"error", "the node did not answer: " + body}}.dump() + "\n");
                if (target == "/readyz") return self->reply(stream, keep, http::status::ok, "text/plain", "ready\n");
                if (target == "/metrics")
                  return self->reply(stream, keep, http::status::ok, "text/plain; version=0.0.4",
                                     prometheus_text(body));
                self->reply(stream, keep, http::status::ok, "application/json", body + "\n");
              });
  }
};

HttpServer::HttpServer(IoPool& io, caf::actor_system& sys, node_actor node, HttpOptions opts)
    : impl_(std::make_shared<Impl>(io, sys, std::move(node), std::move(opts))) {}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::start(std::string* error) {
  beast::error_code ec;
  tcp::endpoint at(asio::ip::make_address(impl_->opts.bind, ec), impl_->opts.port);
  if (!ec) impl_->acceptor.open(at.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(at, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "http " + impl_->opts.bind + ":" + std::to_string(impl_->opts.port) + ": " + ec.message();
    return false;
  }
  impl_->accept();
  return true;
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void HttpServer::stop() {
  asio::post(impl_->io.main(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    std::set<std::shared_ptr<beast::tcp_stream>> open;
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      open.swap(impl->open);
    }
    for (auto& s : open) asio::post(s->get_executor(), [s] { s->close(); });
  });
}

}  // namespace apsis
