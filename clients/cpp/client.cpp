#include "clients/cpp/client.hpp"

#include "clients/cpp/client_actor.hpp"
#include "clients/cpp/handshake.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>

namespace apsis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// The client actor on a small actor system of its own, so that a program with no actors
/// (the CLI) can use it; each call is one request, awaited with the timeout.
struct Client::Impl {
  struct config : caf::actor_system_config {
    config() {
      add_message_types<caf::id_block::apsis>();
      set("scheduler.max-threads", 1);
    }
  };
  config cfg;
  caf::actor_system sys{cfg};
  client_actor actor;
  ClientOptions opts;

  ~Impl() {
    if (actor) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }
};

namespace detail {

bool read_frame(tcp::socket& sock, std::string* in, uint32_t max_frame, const ClientOptions& opts,
                wire::Frame* f, std::string* error) {
  for (;;) {
    size_t pos = 0;
    wire::error_code code;
    std::string err;
    wire::Decode d = wire::decode_frame(*in, &pos, f, max_frame, &code, &err);
    if (d == wire::Decode::complete) {
      in->erase(0, pos);
      if (f->k == wire::kind::error) {
        std::string msg;
        wire::decode_error(f->body, &code, &msg);
        return *error = "server error " + std::to_string(int(code)) + ": " + msg, false;
      }
      return true;
    }
    if (d == wire::Decode::error) return *error = "bad frame from server: " + err, false;
    char buf[65536];
    boost::system::error_code ec;
    size_t n = sock.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      return *error = "timed out after " + std::to_string(opts.timeout.count()) + " ms", false;
    if (ec) return *error = "receive: " + ec.message(), false;
    in->append(buf, n);
  }
}

bool connect_and_hello(tcp::socket& sock, const ClientOptions& opts, std::string* in,
                       uint32_t* max_frame, std::string* error) {
  boost::system::error_code ec;
  tcp::resolver resolver(static_cast<asio::io_context&>(sock.get_executor().context()));
  auto endpoints = resolver.resolve(opts.host, std::to_string(opts.port), ec);
  if (!ec) asio::connect(sock, endpoints, ec);
  if (ec) return *error = "connect " + opts.host + ":" + std::to_string(opts.port) + ": " + ec.message(), false;
  sock.set_option(tcp::no_delay(true), ec);
  // Timeouts for the blocking calls (asynchronous operations are not affected).
  timeval tv{time_t(opts.timeout.count() / 1000), suseconds_t((opts.timeout.count() % 1000) * 1000)};
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  wire::Hello hello;
  hello.name = "apsis-client";
  std::string out;
  wire::encode_frame({wire::kind::hello, wire::opcode::none, 0, 0, wire::encode_hello(hello)}, out);
  asio::write(sock, asio::buffer(out), ec);
  if (ec) return *error = "send: " + ec.message(), false;
  wire::Frame f;
  if (!read_frame(sock, in, wire::default_max_frame, opts, &f, error)) return false;
  wire::Hello answer;
  std::string err;
  if (f.k != wire::kind::hello || !wire::decode_hello(f.body, &answer, &err))
    return *error = "the node did not answer the hello", false;
  *max_frame = answer.max_frame;
  return true;
}

}  // namespace detail

Client::Client() : impl_(std::make_unique<Impl>()) {}
Client::~Client() = default;

bool Client::connect(const ClientOptions& opts, std::string* error) {
  impl_->opts = opts;
  impl_->actor = spawn_client(impl_->sys, opts, error);
  return bool(impl_->actor);
}

bool Client::call(wire::Request q, wire::Response* out, std::string* error) {
  if (!impl_->actor) return *error = "not connected", false;
  if (q.policy == 0 && impl_->opts.policy) q.policy = uint8_t(*impl_->opts.policy) + 1;
  if (q.op == wire::opcode::get || q.op == wire::opcode::lookup) q.latest = q.latest || impl_->opts.latest;
  bool ok = false;
  caf::scoped_actor self{impl_->sys};
  self->request(impl_->actor, impl_->opts.timeout, std::move(q))
      .receive([&](wire::Response& r) { *out = std::move(r), ok = true; },
               [&](caf::error& e) {
                 *error = e == caf::sec::request_timeout
                              ? "timed out after " + std::to_string(impl_->opts.timeout.count()) + " ms"
                              : impl_->sys.render(e);
               });
  return ok;
}

namespace {
wire::Request keyed(wire::opcode op, const std::string& key) {
  wire::Request q;
  q.op = op;
  q.key = key;
  return q;
}
}  // namespace

bool Client::get(const std::string& key, wire::Response* out, std::string* error) {
  return call(keyed(wire::opcode::get, key), out, error);
}

bool Client::lookup(const std::string& key, wire::Response* out, std::string* error) {
  return call(keyed(wire::opcode::lookup, key), out, error);
}

bool Client::put(const std::string& key, const std::string& data, const std::string& json,
                 const PutOptions& o, wire::Response* out, std::string* error) {
  wire::Request q = keyed(wire::opcode::put, key);
  q.data = data;
  q.json = json;
  q.cond = o.cond;
  q.expected = o.expected;
  q.expiry_ms = o.expiry_ms;
  q.user_flags = o.user_flags;
  q.fence = o.fence;
  return call(std::move(q), out, error);
}

bool Client::del(const std::string& key, const PutOptions& o, wire::Response* out, std::string* error) {
  wire::Request q = keyed(wire::opcode::del, key);
  q.cond = o.cond;
  q.expected = o.expected;
  q.fence = o.fence;
  return call(std::move(q), out, error);
}

bool Client::lock(const std::string& key, uint32_t lease_ms, wire::Response* out, std::string* error) {
  wire::Request q = keyed(wire::opcode::lock, key);
  q.lease_ms = lease_ms;
  return call(std::move(q), out, error);
}

bool Client::unlock(const std::string& key, uint64_t token, wire::Response* out, std::string* error) {
  wire::Request q = keyed(wire::opcode::unlock, key);
  q.token = token;
  return call(std::move(q), out, error);
}

bool Client::stat(wire::Response* out, std::string* error) {
  wire::Request q;
  q.op = wire::opcode::stat;
  return call(std::move(q), out, error);
}

}  // namespace apsis
