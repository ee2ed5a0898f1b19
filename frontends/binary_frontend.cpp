#include "frontends/binary_frontend.hpp"

#include "actors/session.hpp"
#include "frontends/ask.hpp"
#include "frontends/frontend.hpp"
#include "frontends/large_transfer.hpp"
#include "frontends/rounds.hpp"
#include "messages/frame.hpp"
#include "messages/large.hpp"

namespace apsis {

namespace {

/// A key request as an operation; a replica request as its put or del, already versioned.
kv_op to_op(wire::Request q) {
  wire::opcode op = q.op == wire::opcode::replica ? q.inner : q.op;
  kv_op o;
  o.kind = op == wire::opcode::get      ? op_kind::get
           : op == wire::opcode::lookup ? op_kind::lookup
           : op == wire::opcode::put    ? op_kind::put
           : op == wire::opcode::change ? op_kind::change
                                        : op_kind::remove;
  o.change.kind = q.change_kind;
  o.change.by = q.by;
  o.cond = q.cond;
  o.expected = q.expected;
  o.fence = q.fence;
  o.id = storage::make_id(q.ns, q.key);
  o.key = std::move(q.key);
  o.json = std::move(q.json);
  o.data = std::move(q.data);
  o.expiry_ms = q.expiry_ms;
  o.user_flags = q.user_flags;
  o.policy = q.policy;
  o.read = q.latest ? uint8_t(success_policy::all) + 1 : q.read;
  o.groups = std::move(q.groups);
  if (q.op == wire::opcode::replica) o.version = q.version;
  return o;
}

struct Plan {
  wire::opcode op = wire::opcode::none;
  uint64_t id = 0;
  long op_index = -1;     ///< >= 0: the coordinator's result at that index answers it
  std::string ready;      ///< a frame ready to send (hello, ping, errors)
  bool async = false;     ///< lock/unlock/stat: `response` arrives later
  wire::Request request;  ///< for async plans
  wire::Response response;
};
using Pending = frontend::Batch<Plan>;

std::string frame(wire::kind k, wire::opcode op, uint64_t id, std::string body) {
  std::string out;
  wire::encode_frame(wire::Frame{k, op, 0, id, std::move(body)}, out);
  return out;
}

class BinaryProtocol {
 public:
  using Plan = apsis::Plan;
  struct Context {
    caf::actor_system* sys;
    lock_manager_actor locks;
    node_actor node;
    uint32_t max_frame;
    std::string name;
    uint64_t max_object_size;
    std::shared_ptr<frontend::Authenticator> auth;  ///< null: no logins
  };
  using Conn = frontend::Connection<BinaryProtocol>;

  BinaryProtocol(const Context& ctx, std::string peer) : ctx_(&ctx), peer_(std::move(peer)) {}

  bool parse(std::string& in, size_t* pos, Pending& b, Conn&) {
    wire::Frame f;
    wire::error_code code;
    std::string err;
    for (;;) {
      wire::Decode d = wire::decode_frame(in, pos, &f, ctx_->max_frame, &code, &err);
      if (d == wire::Decode::incomplete) return true;
      if (d == wire::Decode::error) return fail(b, code, 0, err);
      if (!hello_done_) {
        wire::Hello h;
        if (f.k != wire::kind::hello || !wire::decode_hello(f.body, &h, &err))
          return fail(b, wire::error_code::hello_first, f.id, "the first frame must be a hello");
        if (h.min_version > wire::protocol_version || h.max_version < wire::protocol_version)
          return fail(b, wire::error_code::unsupported_version, f.id,
                      "this server speaks version " + std::to_string(wire::protocol_version));
        hello_done_ = true;
        Plan p;
        p.ready = frame(wire::kind::hello, wire::opcode::none, f.id,
                        wire::encode_hello({wire::protocol_version, wire::protocol_version,
                                            ctx_->name, ctx_->max_frame}));
        b.plans.push_back(std::move(p));
        continue;
      }
      if (f.k != wire::kind::request)
        return fail(b, wire::error_code::malformed, f.id, "expected a request frame");
      if (f.op < wire::opcode::get || f.op > wire::opcode::login)
        return fail(b, wire::error_code::unknown_opcode, f.id,
                    "unknown opcode " + std::to_string(int(f.op)));
      if (f.flags &
          ~(wire::flag_policy_mask | wire::flag_latest | wire::flag_groups | wire::flag_read_mask))
        return fail(b, wire::error_code::malformed, f.id,
                    "unknown request flags " + std::to_string(f.flags));
      wire::Request q;
      q.policy = uint8_t(f.flags & wire::flag_policy_mask);
      q.latest = (f.flags & wire::flag_latest) != 0;
      q.read = uint8_t((f.flags & wire::flag_read_mask) >> wire::flag_read_shift);
      if (!wire::decode_request(f.op, f.body, &q, &err, f.flags))
        return fail(b, wire::error_code::malformed, f.id, err);
      plan(std::move(q), f.id, b);
    }
  }

  /// Sends the batch's lock, unlock, stat, admin and replica requests; each answer fills its
  /// plan's response on the connection's thread.
  void submitted(const std::shared_ptr<Pending>& b, Conn& c) {
    for (size_t i = 0; i < b->plans.size(); ++i) {
      Plan& p = b->plans[i];
      if (!p.async) continue;
      ++b->waiting;
      auto answered = [b, i, weak = c.weak_from_this()](wire::Response r) {
        b->plans[i].response = std::move(r);
        if (auto conn = weak.lock()) conn->arrived(*b);
      };
      if (p.op == wire::opcode::list)
        list(p.request, c.coordinator(), c.executor(), std::move(answered));
      else if (p.op == wire::opcode::commit || p.op == wire::opcode::read)
        large_value(p.request, c.coordinator(), c.executor(), std::move(answered));
      else
        send(p, c.executor(), std::move(answered));
    }
  }

  void format(const Pending& b, std::string& out) {
    for (const Plan& p : b.plans) {
      if (!p.ready.empty()) {
        out += p.ready;
      } else {
        wire::Response r =
            p.op_index >= 0 ? wire::from_result(b.results[size_t(p.op_index)]) : p.response;
        wire::encode_frame(
            wire::Frame{wire::kind::response, p.op, 0, p.id, wire::encode_response(p.op, r)}, out);
      }
    }
  }

  void closed() {
    if (session_) caf::anon_send_exit(session_, caf::exit_reason::user_shutdown);  // frees leases
  }

 private:
  using Reply = std::function<void(wire::Response)>;

  static wire::Response failed(op_status s, std::string why) {
    wire::Response r;
    r.status = s;
    r.message = std::move(why);
    return r;
  }

  /// One request that is not a key operation, to the connection's SESSION (leases) or the
  /// NODE; `reply` gets its answer as a response.
  void send(Plan& p, boost::asio::any_io_executor ex, Reply reply) {
    using frontend::Answer;
    caf::actor_system& sys = *ctx_->sys;
    wire::Request& q = p.request;
    std::string key = q.ns + std::string(1, '\0') + q.key;
    if (p.op == wire::opcode::lock || p.op == wire::opcode::unlock) {
      if (!session_) session_ = sys.spawn(session, ctx_->locks);
    }
    switch (p.op) {
      case wire::opcode::lock:
        return frontend::ask<lease>(
            sys, ex, caf::infinite, session_,
            [reply](Answer<lease> a) {
              wire::Response r = a.ok ? wire::Response{} : failed(op_status::invalid, a.error);
              r.token = a.value.token;
              r.expiry_ms = a.value.expires_ms;
              reply(std::move(r));
            },
            atom::lock_v, std::move(key), q.lease_ms);
      case wire::opcode::unlock:
        return frontend::ask<bool>(
            sys, ex, caf::infinite, session_,
            [reply](Answer<bool> a) {
              reply(!a.ok     ? failed(op_status::unavailable, {})
                    : a.value ? wire::Response{}
                              : failed(op_status::not_found, "no lease with that token"));
            },
            atom::unlock_v, std::move(key), q.token);
      case wire::opcode::replica:
        return frontend::ask<result_batch>(
            sys, ex, caf::infinite, ctx_->node,
            [reply](Answer<result_batch> a) {
              reply(!a.ok             ? failed(op_status::unavailable, a.error)
                    : a.value.empty() ? wire::Response{}
                                      : wire::from_result(a.value[0]));
            },
            atom::apply_v, q.backend, op_batch{to_op(std::move(q))});
      default: {  // stat and admin: a JSON text
        frontend::AnswerFn<std::string> json = [reply](Answer<std::string> a) {
          wire::Response r = a.ok ? wire::Response{} : failed(op_status::unavailable, a.error);
          r.data = std::move(a.value);
          reply(std::move(r));
        };
        if (p.op == wire::opcode::admin)
          return frontend::ask<std::string>(sys, ex, caf::infinite, ctx_->node, std::move(json),
                                            atom::admin_v, std::move(q.data));
        return frontend::ask<std::string>(sys, ex, caf::infinite, ctx_->node, std::move(json),
                                          atom::stats_v);
      }
    }
  }

  /// A page of a namespace's keys from a cursor; with payloads (an export), one engine page
  /// (a few MiB, or one large value) so that the response stays within a frame.
  static void list(wire::Request& q, const Coordinator& c, boost::asio::any_io_executor ex,
                   Reply reply) {
    auto l = std::make_shared<frontend::Lister>();
    std::string why;
    if (!parse_cursor(q.cursor, &l->at, &why)) return reply(failed(op_status::invalid, why));
    if (q.limit > list_limit_max)
      return reply(
          failed(op_status::invalid, "limit must be at most " + std::to_string(list_limit_max)));
    l->ns = std::move(q.ns);
    l->want = q.limit ? q.limit : 100;
    l->pages = q.payload ? 1 : 64;
    l->q.count = uint32_t(std::max<size_t>(l->want, 100));
    l->q.match = std::move(q.match);
    l->q.payload = q.payload;
    l->q.tombstones = q.tombstones;
    l->q.since = q.version;
    frontend::list(c, std::move(ex), l, [l, reply] {
      wire::Response r =
          l->failed == op_status::ok ? wire::Response{} : failed(l->failed, l->message);
      r.cursor = l->cursor();
      r.listed = std::move(l->records);
      reply(std::move(r));
    });
  }

  /// The most bytes one read answers (a download reads in ranges of this size at most).
  static constexpr uint64_t read_max = 16u << 20;

  /// A large value's commit (its manifest, visible from then on) or a read of a range of any
  /// value (frontends/large_transfer.hpp).
  void large_value(wire::Request& q, const Coordinator& c, boost::asio::any_io_executor ex,
                   Reply reply) const {
    kv_op op;
    op.id = storage::make_id(q.ns, q.key);
    op.key = q.key;
    op.groups = q.groups;
    if (q.op == wire::opcode::read) {
      op.kind = op_kind::get;
      op.read = q.latest ? uint8_t(success_policy::all) + 1 : q.read;
      if (q.length > read_max)
        return reply(failed(op_status::invalid,
                            "a read answers at most " + std::to_string(read_max) + " bytes"));
      return frontend::read_range(
          c, ex, q.ns, std::move(op), q.offset, q.length, [reply](op_result r, uint64_t total) {
            wire::Response w =
                r.status == op_status::ok ? wire::Response{} : failed(r.status, r.message);
            w.version = r.version;
            w.expiry_ms = r.record.expiry_ms;
            w.user_flags = r.record.user_flags & ~large::manifest_flag;
            w.total = total;
            w.data = std::move(r.record.data);
            w.replicas = std::move(r.replicas);
            reply(std::move(w));
          });
    }
    if (q.length > ctx_->max_object_size)
      return reply(failed(op_status::invalid, "a value of " + std::to_string(q.length) +
                                                  " bytes exceeds limits.max_object_size"));
    op.cond = q.cond;
    op.expected = q.expected;
    op.fence = q.fence;
    op.expiry_ms = q.expiry_ms;
    op.policy = q.policy;
    frontend::commit_upload(c, ex, q.ns, std::move(op), q.length, q.upload,
                            [reply](op_result r) { reply(wire::from_result(r)); });
  }

  bool fail(Pending& b, wire::error_code code, uint64_t id, const std::string& why) {
    Plan p;
    p.ready = frame(wire::kind::error, wire::opcode::none, id, wire::encode_error(code, why));
    b.plans.push_back(std::move(p));
    b.quit = true;
    return false;
  }

  void plan(wire::Request q, uint64_t id, Pending& b) {
    Plan p;
    p.op = q.op;
    p.id = id;
    if (q.user_flags & large::manifest_flag) {  // the bit that marks a large value's manifest
      wire::Response r = failed(op_status::invalid, "user_flags bit 31 is reserved");
      p.ready = frame(wire::kind::response, q.op, id, wire::encode_response(q.op, r));
      b.plans.push_back(std::move(p));
      return;
    }
    if (q.op == wire::opcode::login || !admitted(q)) {
      wire::Response r = q.op == wire::opcode::login ? login(q) : refusal_;
      p.ready = frame(wire::kind::response, q.op, id, wire::encode_response(q.op, r));
      b.plans.push_back(std::move(p));
      return;
    }
    switch (q.op) {
      case wire::opcode::ping:
        p.ready = frame(wire::kind::response, q.op, id, wire::encode_response(q.op, {}));
        break;
      case wire::opcode::lock:
      case wire::opcode::unlock:
      case wire::opcode::stat:
      case wire::opcode::admin:
      case wire::opcode::replica:
      case wire::opcode::list:
      case wire::opcode::commit:
      case wire::opcode::read:
        p.async = true;
        p.request = std::move(q);
        break;
      case wire::opcode::part: {  // one chunk of an upload: a plain write of its record
        if (!large::valid_upload(q.upload) || q.data.size() > large::chunk_size ||
            q.offset >= ctx_->max_object_size / large::chunk_size + 1) {
          wire::Response r = failed(op_status::invalid,
                                    "a part needs an upload id (16 hex digits), at most 1 MiB, "
                                    "and an index within limits.max_object_size");
          p.ready = frame(wire::kind::response, q.op, id, wire::encode_response(q.op, r));
          break;
        }
        kv_op o = large::chunk_op(op_kind::put, q.ns, q.upload, q.offset);
        o.data = std::move(q.data);
        o.policy = q.policy;
        o.groups = std::move(q.groups);
        p.op_index = long(b.ops.size());
        b.ops.push_back(std::move(o));
        break;
      }
      default: {
        kv_op o = to_op(std::move(q));
        o.change.max_size = ctx_->max_frame;  // the engine holds a value to the node's limit
        p.op_index = long(b.ops.size());
        b.ops.push_back(std::move(o));
      }
    }
    b.plans.push_back(std::move(p));
  }

  const Context* ctx_;
  bool hello_done_ = false;
  std::string peer_;                    ///< the client's address, for refusals' log lines
  const config::User* user_ = nullptr;  ///< logged in as (with users configured)
  std::string login_user_, client_nonce_, server_nonce_;  ///< a login between its steps
  wire::Response refusal_;                                ///< why admitted() said no

  /// What a request needs of its user in its namespace (config/users.hpp); *global: on "*".
  static uint8_t needs(const wire::Request& q, bool* global) {
    *global = q.op == wire::opcode::admin;
    switch (q.op) {
      case wire::opcode::get:
      case wire::opcode::lookup:
      case wire::opcode::list:
      case wire::opcode::read:
        return config::perm_read;
      case wire::opcode::change:
        return config::perm_read | config::perm_write;
      case wire::opcode::replica:
        return config::perm_replicate;
      case wire::opcode::admin:
        return config::perm_admin;
      case wire::opcode::stat:
      case wire::opcode::ping:
        return 0;
      default:  // put, del, lock, unlock, part, commit
        return config::perm_write;
    }
  }

  /// Whether the connection may make the request (with no users, always); else refusal_.
  bool admitted(const wire::Request& q) {
    auto* auth = ctx_->auth.get();
    if (!auth || !auth->required()) return true;
    bool global = false;
    const uint8_t need = needs(q, &global);
    if (q.op == wire::opcode::ping) return true;  // a liveness check, before a login too
    if (user_ && !(need & ~(global ? user_->global() : user_->on(q.ns)))) return true;
    refusal_ = failed(
        op_status::denied,
        user_ ? "user " + user_->name + " may not do this " +
                    (global ? std::string("on every namespace") : "in namespace '" + q.ns + "'") +
                    " (it needs " + config::permission_names(need) + ")"
              : std::string("log in first (opcode 16, docs/protocol.md)"));
    auth->refused(RequestMetrics::binary,
                  user_ ? RequestMetrics::auth_no_permission : RequestMetrics::auth_no_login, peer_,
                  "opcode " + std::to_string(int(q.op)) + (user_ ? " by " + user_->name : ""));
    return false;
  }

  /// A login's step: 1 answers the user's salt and iterations and a fresh nonce; 2 checks the
  /// proof over "user,client nonce,server nonce" (SCRAM-SHA-256's, without channel binding).
  wire::Response login(const wire::Request& q) {
    auto* auth = ctx_->auth.get();
    if (!auth || !auth->required())
      return failed(op_status::invalid, "this node has no users: no login is needed");
    wire::Response r;
    if (q.step == 1) {
      if (q.data.size() < 16 || q.key.empty())
        return failed(op_status::invalid, "step 1 names a user and sends a nonce of 16+ bytes");
      login_user_ = q.key;
      client_nonce_ = q.data;
      server_nonce_ = large::new_upload() + large::new_upload();  // 32 random hex digits
      auth->challenge(q.key, &r.salt, &r.iterations);
      r.nonce = server_nonce_;
      return r;
    }
    if (server_nonce_.empty() || q.key != login_user_)
      return failed(op_status::invalid, "step 2 follows step 1, for the same user");
    const std::string message = login_user_ + "," + client_nonce_ + "," + server_nonce_;
    server_nonce_.clear();  // one proof per challenge
    const config::User* u = nullptr;
    switch (auth->prove(RequestMetrics::binary, peer_, login_user_, message, q.data, &u)) {
      case frontend::Authenticator::Outcome::ok:
        user_ = u;
        return r;
      case frontend::Authenticator::Outcome::throttled:
        return failed(op_status::denied,
                      "too many failed logins from this address: wait and try again");
      default:
        return failed(op_status::denied, "invalid username-password pair");
    }
  }
  session_actor session_;
};

}  // namespace

std::shared_ptr<WireServer> make_binary_server(IoPool& io, caf::actor_system& sys,
                                               Coordinator coordinator, lock_manager_actor locks,
                                               node_actor node, BinaryOptions opts) {
  using Server = frontend::Server<BinaryProtocol>;
  BinaryProtocol::Context ctx{&sys,
                              std::move(locks),
                              std::move(node),
                              opts.max_frame ? opts.max_frame : wire::default_max_frame,
                              opts.name,
                              opts.max_object_size,
                              opts.auth};
  return std::make_shared<Server>(
      io, std::move(coordinator), std::move(ctx),
      Server::Options{opts.bind, opts.port, "binary", opts.idle_timeout, opts.metrics,
                      RequestMetrics::binary, std::move(opts.tls)});
}

}  // namespace apsis
