#include "clients/cpp/client.hpp"

#include <istream>
#include <ostream>

#include "clients/cpp/client_actor.hpp"
#include "clients/cpp/handshake.hpp"
#include "config/users.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <random>

#include "actors/hlc.hpp"
#include "messages/large.hpp"
#include "messages/route.hpp"

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
  // With opts.route: the first group's ring, each node's binary address, a connection per
  // owner talked to (an empty handle: it could not be reached, use `actor`).
  std::map<uint32_t, ring> rings;  ///< every group's, by group id
  ring first_group;
  std::map<std::string, std::pair<std::string, uint16_t>> addresses;
  std::map<std::string, client_actor> owners;
  std::string last_node;
  Hlc clock{(uint64_t(1) << 63) |
            (std::random_device{}() & 0xffffffffu)};  ///< a client's node id: high bit set

  ~Impl() {
    if (actor) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    for (auto& [name, a] : owners)
      if (a) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  /// Reads the route table the node answers to {"cmd": "routes"}.
  bool load_routes(const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("nodes")) return false;
    route_table t;
    for (const auto& n : j["nodes"]) {
      node_entry e;
      e.name = n.value("name", "");
      if (n.value("binary_port", 0) != 0 && n.value("state", "") != "down")
        addresses[e.name] = {n.value("host", ""), uint16_t(n.value("binary_port", 0))};
      try {
        n.at("backends").get_to(e.backends);
      } catch (const std::exception&) {  // json's, or a point or seed that is not hex
        return false;
      }
      t.nodes[e.name] = std::move(e);
    }
    rings = ring::build(t);
    if (!rings.empty()) first_group = rings.begin()->second;
    return true;
  }

  /// A connection to a node by name (opened once; empty if it cannot be reached).
  client_actor connection(const std::string& node) {
    auto where = addresses.find(node);
    if (where == addresses.end()) return {};
    auto [it, fresh] = owners.emplace(node, client_actor{});
    if (fresh) {
      ClientOptions to = opts;
      to.host = where->second.first;
      to.port = where->second.second;
      std::string ignored;  // unreachable: the caller falls back or reports the replica
      it->second = spawn_client(sys, to, &ignored);
    }
    return it->second;
  }

  /// A put or del coordinated here: one versioned replica write per group, sent at once.
  bool coordinate(const wire::Request& q, wire::Response* out) {
    const storage::Id id = storage::make_id(q.ns.empty() ? opts.ns : q.ns, q.key);
    const storage::Version version = clock.next();
    caf::scoped_actor self{sys};
    std::vector<replica_entry> entries;
    std::vector<std::pair<size_t, decltype(self->request(client_actor{}, opts.timeout, q))>> sent;
    for (const auto& [group, r] : rings) {
      const ring::owner* o = r.owner_of(id);
      if (!o || (!q.groups.empty() &&
                 std::find(q.groups.begin(), q.groups.end(), group) == q.groups.end()))
        continue;
      entries.push_back(replica_entry{group, o->node, o->backend, op_status::unavailable, {}});
      client_actor to = connection(o->node);
      if (!to) continue;  // unreachable: unavailable
      wire::Request w = q;
      w.op = wire::opcode::replica;
      w.inner = q.op;
      w.backend = o->backend;
      w.version = version;
      sent.emplace_back(entries.size() - 1, self->request(to, opts.timeout, std::move(w)));
    }
    *out = wire::Response{};
    for (auto& [at, h] : sent) {
      replica_entry& e = entries[at];
      std::move(h).receive(
          [&](wire::Response& r) {
            e.status = r.status;
            e.version = r.version;
            out->existed = out->existed || r.existed;
            if (r.status != op_status::ok && out->message.empty()) out->message = r.message;
          },
          [&](caf::error& err) {
            e.status =
                err == caf::sec::request_timeout ? op_status::timeout : op_status::unavailable;
          });
    }
    out->status = decide(opts.policy.value_or(success_policy::quorum), entries);
    if (out->status == op_status::ok) out->message.clear();
    out->version = version;
    out->replicas = std::move(entries);
    return true;
  }

  void prepare(wire::Request& q) const;

  /// Sends every request at once (each to its connection), then waits for every response,
  /// in order, within the timeout.
  bool send_all(std::vector<wire::Request> qs, std::vector<wire::Response>* out,
                std::string* error) {
    caf::scoped_actor self{sys};
    using Handle = decltype(self->request(actor, opts.timeout, std::move(qs[0])));
    std::vector<Handle> pending;
    pending.reserve(qs.size());
    for (auto& q : qs) {
      client_actor to = route_for(q);
      pending.push_back(self->request(to, opts.timeout, std::move(q)));
    }
    out->resize(pending.size());
    bool ok = true;
    for (size_t i = 0; i < pending.size(); ++i)
      pending[i].receive([&](wire::Response& r) { (*out)[i] = std::move(r); },
                         [&](caf::error& e) {
                           if (!ok) return;
                           ok = false;
                           *error = e == caf::sec::request_timeout
                                        ? "timed out after " +
                                              std::to_string(opts.timeout.count()) + " ms"
                                        : sys.render(e);
                         });
    return ok;
  }

  /// The connection for a request: its key's owner in the first group, when routing.
  client_actor route_for(const wire::Request& q) {
    last_node.clear();
    bool keyed = q.op != wire::opcode::stat && q.op != wire::opcode::ping &&
                 q.op != wire::opcode::admin && q.op != wire::opcode::list;
    if (!(opts.route || opts.coordinate) || !keyed || first_group.size() == 0) return actor;
    const ring::owner* o =
        first_group.owner_of(storage::make_id(q.ns.empty() ? opts.ns : q.ns, q.key));
    client_actor to = o ? connection(o->node) : client_actor{};
    if (!to) return actor;  // unreachable: the connected node coordinates instead
    last_node = o->node;
    return to;
  }
};

namespace detail {

bool read_frame(Stream& sock, std::string* in, uint32_t max_frame, const ClientOptions& opts,
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

std::shared_ptr<asio::ssl::context> client_tls(const ClientOptions& opts, std::string* error) {
  if (opts.tls_ca.empty()) return nullptr;
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  boost::system::error_code ec;
  ctx->load_verify_file(opts.tls_ca, ec);
  if (ec) return *error = "TLS CA " + opts.tls_ca + ": " + ec.message(), nullptr;
  ctx->set_verify_mode(asio::ssl::verify_peer);
  if (!opts.tls_cert.empty()) {
    ctx->use_certificate_chain_file(opts.tls_cert, ec);
    if (ec) return *error = "TLS certificate " + opts.tls_cert + ": " + ec.message(), nullptr;
    ctx->use_private_key_file(opts.tls_key.empty() ? opts.tls_cert : opts.tls_key,
                              asio::ssl::context::pem, ec);
    if (ec) return *error = "TLS key " + opts.tls_key + ": " + ec.message(), nullptr;
  }
  return ctx;
}

bool connect_and_hello(Stream& sock, const ClientOptions& opts, std::string* in,
                       uint32_t* max_frame, std::string* error) {
  boost::system::error_code ec;
  tcp::resolver resolver(static_cast<asio::io_context&>(sock.get_executor().context()));
  auto endpoints = resolver.resolve(opts.host, std::to_string(opts.port), ec);
  if (!ec) asio::connect(sock.socket(), endpoints, ec);
  const std::string at = opts.host + ":" + std::to_string(opts.port);
  if (ec) return *error = "connect " + at + ": " + ec.message(), false;
  sock.socket().set_option(tcp::no_delay(true), ec);
  // Timeouts for the blocking calls (asynchronous operations are not affected).
  timeval tv{time_t(opts.timeout.count() / 1000),
             suseconds_t((opts.timeout.count() % 1000) * 1000)};
  ::setsockopt(sock.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(sock.socket().native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sock.handshake(opts.host, ec);
  if (ec) return *error = "TLS handshake with " + at + ": " + ec.message(), false;
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
  return opts.user.empty() || log_in(sock, opts, in, *max_frame, error);
}

bool log_in(Stream& sock, const ClientOptions& opts, std::string* in, uint32_t max_frame,
            std::string* error) {
  auto exchange = [&](const wire::Request& q, wire::Response* r) {
    std::string out, err;
    wire::encode_frame({wire::kind::request, wire::opcode::login, 0, 0, wire::encode_request(q)},
                       out);
    boost::system::error_code ec;
    asio::write(sock, asio::buffer(out), ec);
    if (ec) return *error = "send: " + ec.message(), false;
    wire::Frame f;
    if (!read_frame(sock, in, max_frame, opts, &f, error)) return false;
    if (f.k != wire::kind::response || !wire::decode_response(wire::opcode::login, f.body, r, &err))
      return *error = "the node did not answer the login: " + err, false;
    if (r->status != op_status::ok)
      return *error = "login as " + opts.user + ": " + r->message, false;
    return true;
  };
  wire::Request q;
  q.op = wire::opcode::login;
  q.step = 1;
  q.key = opts.user;
  q.data = large::new_upload() + large::new_upload();  // the client's nonce
  wire::Response challenge, done;
  if (!exchange(q, &challenge)) return false;
  const std::string message = opts.user + "," + q.data + "," + challenge.nonce;
  q.step = 2;
  q.data = config::client_proof(opts.password, challenge.salt, challenge.iterations, message);
  return exchange(q, &done);
}

}  // namespace detail

Client::Client() : impl_(std::make_unique<Impl>()) {}
Client::~Client() = default;

bool Client::connect(const ClientOptions& opts, std::string* error) {
  impl_->opts = opts;
  impl_->actor = spawn_client(impl_->sys, opts, error);
  if (!impl_->actor || !(opts.route || opts.coordinate)) return bool(impl_->actor);
  wire::Request q;
  q.op = wire::opcode::admin;
  q.data = R"({"cmd": "routes"})";
  wire::Response r;
  if (!call(q, &r, error)) return false;
  if (r.status != op_status::ok || !impl_->load_routes(r.data))
    return *error = "the node answered no route table", false;
  return true;
}

const std::string& Client::last_node() const { return impl_->last_node; }

/// Fills in what the session's options say (policy, read policy, groups).
void Client::Impl::prepare(wire::Request& q) const {
  if (q.policy == 0 && opts.policy) q.policy = uint8_t(*opts.policy) + 1;
  if (q.op == wire::opcode::get || q.op == wire::opcode::lookup) {
    q.latest = q.latest || opts.latest;
    if (q.read == 0 && opts.read) q.read = uint8_t(*opts.read) + 1;
  }
  const bool keyed = q.op == wire::opcode::get || q.op == wire::opcode::lookup ||
                     q.op == wire::opcode::put || q.op == wire::opcode::del ||
                     q.op == wire::opcode::change;
  if (keyed && q.groups.empty()) q.groups = opts.groups;
}

bool Client::call(wire::Request q, wire::Response* out, std::string* error) {
  if (!impl_->actor) return *error = "not connected", false;
  impl_->prepare(q);
  if (impl_->opts.coordinate && (q.op == wire::opcode::put || q.op == wire::opcode::del) &&
      !impl_->rings.empty()) {
    impl_->last_node.clear();
    return impl_->coordinate(q, out);
  }
  std::vector<wire::Response> one;
  if (!impl_->send_all({std::move(q)}, &one, error)) return false;
  *out = std::move(one[0]);
  return true;
}

bool Client::call_all(std::vector<wire::Request> qs, std::vector<wire::Response>* out,
                      std::string* error) {
  if (!impl_->actor) return *error = "not connected", false;
  out->clear();
  if (impl_->opts.coordinate) {  // each write is coordinated here, one after another
    for (auto& q : qs)
      if (!call(std::move(q), &out->emplace_back(), error)) return false;
    return true;
  }
  for (auto& q : qs) impl_->prepare(q);
  return impl_->send_all(std::move(qs), out, error);
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

bool Client::del(const std::string& key, const PutOptions& o, wire::Response* out,
                 std::string* error) {
  wire::Request q = keyed(wire::opcode::del, key);
  q.cond = o.cond;
  q.expected = o.expected;
  q.fence = o.fence;
  return call(std::move(q), out, error);
}

bool Client::lock(const std::string& key, uint32_t lease_ms, wire::Response* out,
                  std::string* error) {
  wire::Request q = keyed(wire::opcode::lock, key);
  q.lease_ms = lease_ms;
  return call(std::move(q), out, error);
}

bool Client::unlock(const std::string& key, uint64_t token, wire::Response* out,
                    std::string* error) {
  wire::Request q = keyed(wire::opcode::unlock, key);
  q.token = token;
  return call(std::move(q), out, error);
}

bool Client::list(wire::Request q, const std::function<bool(const listed_record&)>& each,
                  std::string* error) {
  q.op = wire::opcode::list;
  for (size_t pages = 0; pages < SIZE_MAX; ++pages) {
    wire::Response r;
    if (!call(q, &r, error)) return false;
    if (r.status != op_status::ok)
      return *error = std::string(to_string(r.status)) + ": " + r.message, false;
    for (const auto& e : r.listed)
      if (!each(e)) return true;
    if (r.cursor == "0") return true;
    q.cursor = std::move(r.cursor);
  }
  return true;
}

bool Client::change(const std::string& key, value_change::kind_t kind, int64_t by,
                    const std::string& arg, wire::Response* out, std::string* error) {
  wire::Request q = keyed(wire::opcode::change, key);
  q.change_kind = kind;
  q.by = by;
  q.data = arg;
  return call(std::move(q), out, error);
}

bool Client::upload(const std::string& key, std::istream& in,
                    const std::function<void(uint64_t)>& progress, wire::Response* out,
                    std::string* error) {
  const std::string upload = large::new_upload();
  uint64_t size = 0, index = 0;
  std::vector<wire::Response> answers;
  while (in) {
    std::vector<wire::Request> window;
    for (int i = 0; i < 8 && in; ++i) {
      wire::Request q = keyed(wire::opcode::part, key);
      q.upload = upload;
      q.offset = index;
      q.data.resize(large::chunk_size);
      in.read(q.data.data(), std::streamsize(q.data.size()));
      q.data.resize(size_t(in.gcount()));
      if (q.data.empty() && index > 0) break;
      size += q.data.size();
      ++index;
      window.push_back(std::move(q));
    }
    if (!call_all(std::move(window), &answers, error)) return false;
    for (const auto& a : answers)
      if (a.status != op_status::ok) return *out = a, *error = "a part was refused", false;
    if (progress) progress(size);
  }
  wire::Request commit = keyed(wire::opcode::commit, key);
  commit.upload = upload;
  commit.length = size;
  return call(std::move(commit), out, error);
}

bool Client::read(const std::string& key, uint64_t offset, uint64_t length, wire::Response* out,
                  std::string* error) {
  wire::Request q = keyed(wire::opcode::read, key);
  q.offset = offset;
  q.length = length;
  return call(std::move(q), out, error);
}

bool Client::download(const std::string& key, std::ostream& to,
                      const std::function<void(uint64_t, uint64_t)>& progress, wire::Response* out,
                      std::string* error) {
  uint64_t at = 0;
  do {
    if (!read(key, at, 16u << 20, out, error)) return false;
    if (out->status != op_status::ok) return *error = out->message, false;
    to.write(out->data.data(), std::streamsize(out->data.size()));
    at += out->data.size();
    if (progress) progress(at, out->total);
  } while (at < out->total && !out->data.empty());
  return bool(to) || (*error = "cannot write the output", false);
}

bool Client::stat(wire::Response* out, std::string* error) {
  wire::Request q;
  q.op = wire::opcode::stat;
  return call(std::move(q), out, error);
}

}  // namespace apsis
