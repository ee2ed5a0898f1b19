#include "clients/cpp/client_actor.hpp"

#include "clients/cpp/handshake.hpp"

#include <boost/asio.hpp>

#include <map>
#include <thread>

namespace apsis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

/// The socket and its I/O thread. Reads go to the actor as (reply, id, response) messages.
struct Connection : std::enable_shared_from_this<Connection> {
  asio::io_context io;
  Stream sock;
  explicit Connection(std::shared_ptr<asio::ssl::context> tls) : sock(io, std::move(tls)) {}
  std::string in, out, writing;
  std::array<char, 65536> buf;
  std::thread thread;
  caf::weak_actor_ptr owner;  // weak: the actor owns this connection, not the other way round
  uint32_t max_frame = wire::default_max_frame;

  void run(const client_actor& self) {
    owner = caf::actor_cast<caf::weak_actor_ptr>(self);
    read();
    thread = std::thread([c = shared_from_this()] { c->io.run(); });
  }

  // Closing the socket ends every pending operation, so the I/O thread runs out of work and
  // returns. Stopping the io_context instead would keep their handlers, and the shared_ptrs
  // to this connection in them, alive forever (a leak LeakSanitizer showed).
  void stop() {
    asio::post(io, [c = shared_from_this()] {
      c->owner = nullptr;  // nobody to tell any more
      c->sock.close();
    });
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) {
      thread.join();
      io.restart();  // the thread may have run out of work before the close was posted
      io.run();
    }
  }

  template <class... Ts>
  void tell(Ts&&... xs) {
    if (auto strong = caf::actor_cast<caf::strong_actor_ptr>(owner))
      caf::anon_send(caf::actor_cast<client_actor>(strong), std::forward<Ts>(xs)...);
  }

  void fail(const std::string& why) {
    tell(atom::closed_v, why);
    owner = nullptr;
  }

  void read() {
    sock.async_read_some(asio::buffer(buf), [c = shared_from_this()](auto ec, size_t n) {
      if (ec) return c->fail("connection lost: " + ec.message());
      c->in.append(c->buf.data(), n);
      size_t pos = 0;
      wire::Frame f;
      wire::error_code code;
      std::string err;
      wire::Decode d;
      while ((d = wire::decode_frame(c->in, &pos, &f, c->max_frame, &code, &err)) ==
             wire::Decode::complete) {
        wire::Response r;
        if (f.k != wire::kind::response || !wire::decode_response(f.op, f.body, &r, &err))
          return c->fail("bad frame from the node: " + (err.empty() ? "not a response" : err));
        c->tell(atom::reply_v, f.id, std::move(r));
      }
      if (d == wire::Decode::error) return c->fail("bad frame from the node: " + err);
      c->in.erase(0, pos);
      c->read();
    });
  }

  /// Called from the actor's thread: hands the bytes to the I/O thread.
  void send(std::string frame) {
    asio::post(io, [c = shared_from_this(), f = std::move(frame)]() mutable {
      c->out += f;
      c->write();
    });
  }

  void write() {
    if (!writing.empty() || out.empty()) return;
    writing.swap(out);
    asio::async_write(sock, asio::buffer(writing), [c = shared_from_this()](auto ec, size_t) {
      c->writing.clear();
      if (ec) return c->fail("send failed: " + ec.message());
      c->write();
    });
  }
};

struct client_state {
  std::shared_ptr<Connection> conn;
  std::string ns;
  uint64_t next_id = 1;
  std::map<uint64_t, caf::typed_response_promise<wire::Response>> waiting;
  std::string failed;  ///< why the connection is gone; empty while it works
  static inline const char* name = "client";
  ~client_state() {
    if (conn) conn->stop();
  }
};

client_actor::behavior_type client(client_actor::stateful_pointer<client_state> self,
                                   std::shared_ptr<Connection> conn, std::string ns) {
  self->state.conn = std::move(conn);
  self->state.ns = std::move(ns);
  return {
      [=](wire::Request& q) -> caf::typed_response_promise<wire::Response> {
        auto rp = self->make_response_promise<wire::Response>();
        auto& st = self->state;
        if (!st.failed.empty()) {
          rp.deliver(caf::make_error(caf::sec::request_receiver_down, st.failed));
          return rp;
        }
        if (q.ns.empty()) q.ns = st.ns;
        uint64_t id = st.next_id++;
        std::string frame;
        wire::encode_frame(
            {wire::kind::request, q.op, wire::request_flags(q), id, wire::encode_request(q)},
            frame);
        st.waiting.emplace(id, rp);
        st.conn->send(std::move(frame));
        return rp;
      },
      [=](atom::reply, uint64_t id, wire::Response& r) {
        auto it = self->state.waiting.find(id);
        if (it == self->state.waiting.end()) return;
        it->second.deliver(std::move(r));
        self->state.waiting.erase(it);
      },
      [=](atom::closed, std::string& why) {
        auto& st = self->state;
        st.failed = why;
        for (auto& [id, rp] : st.waiting)
          rp.deliver(caf::make_error(caf::sec::request_receiver_down, why));
        st.waiting.clear();
      },
  };
}

}  // namespace

client_actor spawn_client(caf::actor_system& sys, const ClientOptions& opts, std::string* error) {
  std::string why;
  auto tls = detail::client_tls(opts, &why);
  if (!tls && !opts.tls_ca.empty()) return *error = why, client_actor{};
  auto conn = std::make_shared<Connection>(std::move(tls));
  // The handshake is blocking, before the I/O thread takes the socket over.
  if (!detail::connect_and_hello(conn->sock, opts, &conn->in, &conn->max_frame, error))
    return client_actor{};
  auto actor = sys.spawn(client, conn, opts.ns);
  conn->run(actor);
  return actor;
}

}  // namespace apsis
