#include "frontends/resp_frontend.hpp"

#include <algorithm>

#include "frontends/frontend.hpp"

namespace apsis {

namespace {

enum class Cmd { reply, get, set, del, exists, mget, mset, expire, ttl, pttl };

/// How to answer one command: a ready reply, or a format over ops [first, first+count).
struct Plan {
  Cmd cmd = Cmd::reply;
  size_t first = 0, count = 0;
  std::string reply;
};
using Pending = frontend::Batch<Plan>;

std::string upper(std::string s) {
  for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size() || s.find_first_not_of("0123456789", i) != std::string::npos) return false;
  *out = std::stoll(s);
  return true;
}

std::string failure(const op_result& r) {
  std::string s = "ERR ";
  s += to_string(r.status);
  if (!r.message.empty()) s += ": " + r.message;
  return s;
}

void format(const Pending& p, std::string& out) {
  for (const Plan& plan : p.plans) {
    auto at = [&](size_t k) -> const op_result& { return p.results[plan.first + k]; };
    switch (plan.cmd) {
      case Cmd::reply:
        out += plan.reply;
        break;
      case Cmd::get: {
        const op_result& r = at(0);
        if (r.status == op_status::ok)
          resp::bulk(out, r.record.data);
        else if (r.status == op_status::not_found)
          resp::null_bulk(out);
        else
          resp::error(out, failure(r));
        break;
      }
      case Cmd::set: {
        const op_result& r = at(0);
        if (r.status == op_status::ok)
          resp::simple(out, "OK");
        else if (r.status == op_status::condition_failed)
          resp::null_bulk(out);
        else
          resp::error(out, failure(r));
        break;
      }
      case Cmd::mset: {
        const op_result* bad = nullptr;
        for (size_t k = 0; k < plan.count && !bad; ++k)
          if (at(k).status != op_status::ok) bad = &at(k);
        bad ? resp::error(out, failure(*bad)) : resp::simple(out, "OK");
        break;
      }
      case Cmd::del:
      case Cmd::exists: {
        int64_t n = 0;
        const op_result* bad = nullptr;
        for (size_t k = 0; k < plan.count; ++k) {
          const op_result& r = at(k);
          if (r.status == op_status::ok)
            n += plan.cmd == Cmd::exists || r.existed;
          else if (r.status != op_status::not_found)
            bad = &r;
        }
        bad ? resp::error(out, failure(*bad)) : resp::integer(out, n);
        break;
      }
      case Cmd::mget:
        resp::array(out, plan.count);
        for (size_t k = 0; k < plan.count; ++k)
          at(k).status == op_status::ok ? resp::bulk(out, at(k).record.data) : resp::null_bulk(out);
        break;
      case Cmd::expire: {
        const op_result& r = at(0);
        if (r.status == op_status::ok || r.status == op_status::not_found)
          resp::integer(out, r.status == op_status::ok);
        else
          resp::error(out, failure(r));
        break;
      }
      case Cmd::ttl:
      case Cmd::pttl: {
        const op_result& r = at(0);
        if (r.status == op_status::not_found) {
          resp::integer(out, -2);
          break;
        }
        if (r.status != op_status::ok) {
          resp::error(out, failure(r));
          break;
        }
        if (r.record.expiry_ms == 0) {
          resp::integer(out, -1);
          break;
        }
        uint64_t now = storage::now_ms();
        int64_t ms = r.record.expiry_ms > now ? int64_t(r.record.expiry_ms - now) : 0;
        resp::integer(out, plan.cmd == Cmd::pttl ? ms : (ms + 500) / 1000);
        break;
      }
    }
  }
}

/// The Redis protocol for frontend::Connection.
class RespProtocol {
 public:
  using Plan = apsis::Plan;
  struct Context {
    resp::Limits limits;
    std::function<std::string(const std::string& section)> info;
  };
  using Conn = frontend::Connection<RespProtocol>;

  explicit RespProtocol(const Context& ctx) : ctx_(&ctx) {}

  bool parse(std::string& in, size_t* pos, Pending& b, Conn&) {
    std::vector<std::string> args;
    std::string err;
    while (!b.quit) {
      resp::Parse r = resp::parse_command(in, pos, &args, &err, ctx_->limits);
      if (r == resp::Parse::incomplete) return true;
      if (r == resp::Parse::error) {  // answer, then close: the stream cannot be trusted
        std::string s;
        resp::error(s, "ERR " + err);
        reply(b, std::move(s), true);
        return false;
      }
      if (!args.empty()) plan(args, b);
    }
    return false;  // QUIT
  }

  void format(const Pending& b, std::string& out) { apsis::format(b, out); }
  void submitted(const std::shared_ptr<Pending>&, Conn&) {}
  void closed() {}

 private:
  kv_op key_op(op_kind kind, const std::string& key) {
    kv_op o;
    o.kind = kind;
    o.key = key;
    o.id = storage::make_id(ns_, key);
    return o;
  }

  void reply(Pending& b, std::string text, bool quit = false) {
    Plan p;
    p.reply = std::move(text);
    b.quit = b.quit || quit;
    b.plans.push_back(std::move(p));
  }
  void reply_error(Pending& b, const std::string& msg) {
    std::string s;
    resp::error(s, msg);
    reply(b, std::move(s));
  }
  void keyed(Pending& b, Cmd cmd, std::vector<kv_op> ops) {
    Plan p;
    p.cmd = cmd;
    p.first = b.ops.size();
    p.count = ops.size();
    for (auto& o : ops) b.ops.push_back(std::move(o));
    b.plans.push_back(std::move(p));
  }

  void plan(std::vector<std::string>& a, Pending& b) {
    const std::string name = upper(a[0]);
    const size_t argc = a.size();
    auto arity = [&](bool ok) {
      if (!ok) reply_error(b, "ERR wrong number of arguments for '" + a[0] + "' command");
      return ok;
    };
    std::string s;
    if (name == "GET") {
      if (arity(argc == 2)) keyed(b, Cmd::get, {key_op(op_kind::get, a[1])});
    } else if (name == "SET") {
      if (!arity(argc >= 3)) return;
      kv_op o = key_op(op_kind::put, a[1]);
      o.data = std::move(a[2]);
      for (size_t i = 3; i < argc; ++i) {
        std::string opt = upper(a[i]);
        int64_t n = 0;
        bool has_arg = i + 1 < argc;
        if ((opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && has_arg &&
            !o.expiry_ms) {
          if (!parse_int(a[++i], &n) || n <= 0)
            return reply_error(b, "ERR invalid expire time in 'set' command");
          uint64_t now = storage::now_ms();
          o.expiry_ms = opt == "EX"     ? now + uint64_t(n) * 1000
                        : opt == "PX"   ? now + uint64_t(n)
                        : opt == "EXAT" ? uint64_t(n) * 1000
                                        : uint64_t(n);
        } else if (opt == "NX" && o.cond == op_cond::none) {
          o.cond = op_cond::if_absent;
        } else if (opt == "XX" && o.cond == op_cond::none) {
          o.cond = op_cond::if_present;
        } else if (opt == "KEEPTTL" && !o.expiry_ms) {
          o.keep_expiry = true;
        } else {
          return reply_error(b, "ERR syntax error");
        }
      }
      keyed(b, Cmd::set, {std::move(o)});
    } else if (name == "DEL" || name == "EXISTS" || name == "MGET") {
      if (!arity(argc >= 2)) return;
      std::vector<kv_op> ops;
      op_kind kind = name == "DEL"      ? op_kind::remove
                     : name == "EXISTS" ? op_kind::lookup
                                        : op_kind::get;
      for (size_t i = 1; i < argc; ++i) ops.push_back(key_op(kind, a[i]));
      keyed(b,
            name == "DEL"      ? Cmd::del
            : name == "EXISTS" ? Cmd::exists
                               : Cmd::mget,
            std::move(ops));
    } else if (name == "MSET") {
      if (!arity(argc >= 3 && argc % 2 == 1)) return;
      std::vector<kv_op> ops;
      for (size_t i = 1; i + 1 < argc; i += 2) {
        ops.push_back(key_op(op_kind::put, a[i]));
        ops.back().data = std::move(a[i + 1]);
      }
      keyed(b, Cmd::mset, std::move(ops));
    } else if (name == "EXPIRE" || name == "PEXPIRE") {
      if (!arity(argc == 3)) return;
      int64_t n = 0;
      if (!parse_int(a[2], &n))
        return reply_error(b, "ERR value is not an integer or out of range");
      kv_op o = key_op(op_kind::expire, a[1]);
      int64_t ms = name == "EXPIRE" ? n * 1000 : n;
      uint64_t now = storage::now_ms();
      o.expiry_ms = ms > 0 ? now + uint64_t(ms) : 1;  // <= 0: expired at once, as in Redis
      keyed(b, Cmd::expire, {std::move(o)});
    } else if (name == "TTL" || name == "PTTL") {
      if (arity(argc == 2))
        keyed(b, name == "TTL" ? Cmd::ttl : Cmd::pttl, {key_op(op_kind::lookup, a[1])});
    } else if (name == "PING") {
      if (!arity(argc <= 2)) return;
      argc == 2 ? resp::bulk(s, a[1]) : resp::simple(s, "PONG");
      reply(b, std::move(s));
    } else if (name == "ECHO") {
      if (!arity(argc == 2)) return;
      resp::bulk(s, a[1]);
      reply(b, std::move(s));
    } else if (name == "SELECT") {
      if (!arity(argc == 2)) return;
      int64_t n = -1;
      if (parse_int(a[1], &n) && n >= 0)
        ns_ = n == 0 ? "default" : "db" + std::to_string(n);
      else if (!a[1].empty() && a[1].size() <= 64 &&
               a[1].find_first_not_of(
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
                   std::string::npos)
        ns_ = a[1];
      else
        return reply_error(
            b, "ERR invalid namespace: use a number or a name of letters, digits, _ - .");
      resp::simple(s, "OK");
      reply(b, std::move(s));
    } else if (name == "QUIT") {
      resp::simple(s, "OK");
      reply(b, std::move(s), true);
    } else if (name == "COMMAND" || name == "CONFIG") {
      resp::array(s, 0);  // enough for redis-cli and redis-benchmark
      reply(b, std::move(s));
    } else if (name == "CLIENT") {
      resp::simple(s, "OK");
      reply(b, std::move(s));
    } else if (name == "INFO") {
      resp::bulk(s, ctx_->info ? ctx_->info(argc > 1 ? a[1] : "") : "");
      reply(b, std::move(s));
    } else {
      std::string msg = "ERR unknown command '" + a[0].substr(0, 64) + "'";
      reply_error(b, msg);
    }
  }

  const Context* ctx_;
  std::string ns_ = "default";
};

}  // namespace

struct RespServer::Impl {
  std::shared_ptr<frontend::Server<RespProtocol>> server;
  RespOptions opts;
};

RespServer::RespServer(IoPool& io, Coordinator coordinator, RespOptions opts)
    : impl_(std::make_shared<Impl>()) {
  RespProtocol::Context ctx{opts.limits, opts.info};
  impl_->server = std::make_shared<frontend::Server<RespProtocol>>(
      io, std::move(coordinator), std::move(ctx), opts.metrics, RequestMetrics::resp);
  impl_->opts = std::move(opts);
}

RespServer::~RespServer() = default;

bool RespServer::start(std::string* error) {
  impl_->server->idle_timeout = impl_->opts.idle_timeout;
  return impl_->server->start(impl_->opts.bind, impl_->opts.port, "RESP", error);
}

void RespServer::set_info(std::function<std::string(const std::string&)> info) {
  impl_->server->context.info = std::move(info);
}

uint16_t RespServer::port() const { return impl_->server->port(); }

void RespServer::stop() { impl_->server->stop(); }

}  // namespace apsis
