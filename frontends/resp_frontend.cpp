#include "frontends/resp_frontend.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_map>

#include "frontends/frontend.hpp"
#include "frontends/rounds.hpp"
#include "messages/large.hpp"
#include "messages/value_change.hpp"

namespace apsis {

namespace {

enum class Cmd {
  reply,
  get,
  set,
  del,
  exists,
  mget,
  mset,
  expire,
  ttl,
  pttl,
  setnx,
  get_then,  ///< GETSET, GETDEL, GETEX, SET ... GET: a get, then a write of the same key
  persist,
  expiretime,
  pexpiretime,
  type,
  strlen,
  getrange,
  change  ///< INCR and the rest (`from` holds the value_change kind)
};

/// A command of several rounds (frontends/rounds.hpp): started once its batch is submitted,
/// it calls `answer` once with its reply.
using Job = std::function<void(const Coordinator& c, frontend::asio::any_io_executor ex,
                               std::function<void(std::string reply)> answer)>;

/// How to answer one command: a ready reply (or a job's, once it has run), or a format over
/// ops [first, first+count).
struct Plan {
  Cmd cmd = Cmd::reply;
  size_t first = 0, count = 0;
  std::string reply;
  int64_t from = 0, to = 0;  ///< GETRANGE's offsets
  Job job;
  bool resp3 = false;  ///< the connection spoke RESP3 (HELLO 3) when the command came
};
using Pending = frontend::Batch<Plan>;

std::string upper(std::string s) {
  for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
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

/// A null: RESP2's null bulk, or RESP3's null.
void null(std::string& out, bool resp3) {
  if (resp3)
    out += "_\r\n";
  else
    resp::null_bulk(out);
}

/// One write's answer: OK; a null for the status that means "not done" (`miss`); else the
/// error.
void one_answer(const op_result& r, std::string& out, op_status miss, bool resp3) {
  if (r.status == op_status::ok)
    resp::simple(out, "OK");
  else if (r.status == miss)
    null(out, resp3);
  else
    resp::error(out, failure(r));
}

/// DEL and EXISTS: how many keys were deleted or exist.
void count_answer(Cmd cmd, const op_result* r, size_t n, std::string& out) {
  int64_t count = 0;
  const op_result* bad = nullptr;
  for (size_t k = 0; k < n; ++k) {
    if (r[k].status == op_status::ok)
      count += cmd == Cmd::exists || r[k].existed;
    else if (r[k].status != op_status::not_found)
      bad = &r[k];
  }
  bad ? resp::error(out, failure(*bad)) : resp::integer(out, count);
}

void ttl_answer(Cmd cmd, const op_result& r, std::string& out) {
  if (r.status == op_status::not_found) return resp::integer(out, -2);
  if (r.status != op_status::ok) return resp::error(out, failure(r));
  if (r.record.expiry_ms == 0) return resp::integer(out, -1);
  uint64_t now = storage::now_ms();
  int64_t ms = r.record.expiry_ms > now ? int64_t(r.record.expiry_ms - now) : 0;
  resp::integer(out, cmd == Cmd::pttl ? ms : (ms + 500) / 1000);
}

/// A large value (messages/large.hpp) is read through REST or the binary protocol's read: a
/// read of one here answers an error saying so (true when it did).
bool large_refused(const op_result& r, std::string& out) {
  const std::string why = large::read_refusal(r);
  if (!why.empty()) resp::error(out, "ERR " + why);
  return !why.empty();
}

/// A get's answer: the value, or a null for a miss.
void value_answer(const op_result& r, std::string& out, bool resp3) {
  if (large_refused(r, out)) return;
  if (r.status == op_status::ok)
    resp::bulk(out, r.record.data);
  else
    one_answer(r, out, op_status::not_found, resp3);
}

/// GETRANGE's slice, with Redis's offsets: negative ones count from the end, both inclusive.
void range_answer(const Plan& plan, const op_result& r, std::string& out) {
  if (r.status != op_status::ok && r.status != op_status::not_found)
    return resp::error(out, failure(r));
  if (large_refused(r, out)) return;
  const std::string& v = r.record.data;
  const int64_t n = int64_t(v.size());
  int64_t from = plan.from < 0 ? std::max<int64_t>(n + plan.from, 0) : plan.from;
  int64_t to = plan.to < 0 ? n + plan.to : std::min(plan.to, n - 1);
  if (n == 0 || from > to || from >= n) return resp::bulk(out, "");
  resp::bulk(out, v.substr(size_t(from), size_t(to - from + 1)));
}

/// A lookup's answers: TYPE, STRLEN, EXPIRETIME and PEXPIRETIME.
void meta_answer(Cmd cmd, const op_result& r, std::string& out) {
  if (r.status != op_status::ok && r.status != op_status::not_found)
    return resp::error(out, failure(r));
  const bool found = r.status == op_status::ok;
  const uint64_t at = r.record.expiry_ms;
  switch (cmd) {
    case Cmd::type:
      return resp::simple(out, found ? "string" : "none");
    case Cmd::strlen:
      return resp::integer(
          out,
          found ? int64_t(large::value_size(r.record.user_flags, r.data_size, r.record.data)) : 0);
    default:  // EXPIRETIME, PEXPIRETIME
      if (!found) return resp::integer(out, -2);
      if (at == 0) return resp::integer(out, -1);
      resp::integer(out, cmd == Cmd::pexpiretime ? int64_t(at) : int64_t(at / 1000));
  }
}

/// A change's answer: the new value (INCRBYFLOAT), or the number (INCR...) or length
/// (APPEND, SETRANGE) it makes; Redis's reason when it could not apply.
void change_answer(value_change::kind_t kind, const op_result& r, std::string& out) {
  if (r.status == op_status::invalid) return resp::error(out, "ERR " + r.message);
  if (r.status != op_status::ok) return resp::error(out, failure(r));
  const std::string& v = r.record.data;
  int64_t n = 0;
  if (kind == value_change::incr_float) return resp::bulk(out, v);
  if (kind == value_change::incr) return resp::integer(out, parse_integer(v, &n) ? n : 0);
  resp::integer(out, int64_t(v.size()));
}

/// GETSET, GETDEL, GETEX, SET ... GET: the value before the write, unless the write failed.
void get_then_answer(const op_result* r, size_t count, std::string& out, bool resp3) {
  if (count > 1) {
    const op_status w = r[1].status;
    if (w != op_status::ok && w != op_status::not_found && w != op_status::condition_failed)
      return resp::error(out, failure(r[1]));
  }
  value_answer(r[0], out, resp3);
}

void format(const Pending& p, std::string& out) {
  for (const Plan& plan : p.plans) {
    const op_result* r = plan.count ? &p.results[plan.first] : nullptr;
    switch (plan.cmd) {
      case Cmd::reply:
        out += plan.reply;
        break;
      case Cmd::change:
        change_answer(value_change::kind_t(plan.from), *r, out);
        break;
      case Cmd::get:
        value_answer(*r, out, plan.resp3);
        break;
      case Cmd::get_then:
        get_then_answer(r, plan.count, out, plan.resp3);
        break;
      case Cmd::setnx:
      case Cmd::persist:
        if (r->status == op_status::ok || r->status == op_status::condition_failed ||
            r->status == op_status::not_found)
          resp::integer(out, r->status == op_status::ok);
        else
          resp::error(out, failure(*r));
        break;
      case Cmd::getrange:
        range_answer(plan, *r, out);
        break;
      case Cmd::type:
      case Cmd::strlen:
      case Cmd::expiretime:
      case Cmd::pexpiretime:
        meta_answer(plan.cmd, *r, out);
        break;
      case Cmd::set:
        one_answer(*r, out, op_status::condition_failed, plan.resp3);
        break;
      case Cmd::mset: {
        const op_result* bad = nullptr;
        for (size_t k = 0; k < plan.count && !bad; ++k)
          if (r[k].status != op_status::ok) bad = &r[k];
        bad ? resp::error(out, failure(*bad)) : resp::simple(out, "OK");
        break;
      }
      case Cmd::del:
      case Cmd::exists:
        count_answer(plan.cmd, r, plan.count, out);
        break;
      case Cmd::mget:
        resp::array(out, plan.count);
        for (size_t k = 0; k < plan.count; ++k)
          r[k].status == op_status::ok ? value_answer(r[k], out, plan.resp3)
                                       : null(out, plan.resp3);
        break;
      case Cmd::expire:
        if (r->status == op_status::ok || r->status == op_status::not_found)
          resp::integer(out, r->status == op_status::ok);
        else
          resp::error(out, failure(*r));
        break;
      case Cmd::ttl:
      case Cmd::pttl:
        ttl_answer(plan.cmd, *r, out);
        break;
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
    std::shared_ptr<frontend::Authenticator> auth;  ///< null: no logins
  };
  using Conn = frontend::Connection<RespProtocol>;

  RespProtocol(const Context& ctx, std::string peer) : ctx_(&ctx), peer_(std::move(peer)) {
    if (!ctx.auth || !ctx.auth->required()) perms_ = 0xff;  // no users: anyone may do anything
  }

  bool parse(std::string& in, size_t* pos, Pending& b, Conn&) {
    const bool more = parse_commands(in, pos, b);
    hash_ids(b);
    return more;
  }

  bool parse_commands(std::string& in, size_t* pos, Pending& b) {
    std::vector<std::string> args;
    std::string err;
    while (!b.quit) {
      // An argument over the limit: its command is dropped as it arrives, then refused.
      resp::Parse r = skip_.active()
                          ? skip_.drain(in, pos, &err)
                          : resp::parse_command(in, pos, &args, &err, ctx_->limits, &skip_);
      if (r == resp::Parse::oversized) {
        skipped_ = err;
        continue;
      }
      if (r == resp::Parse::incomplete) return true;
      if (r == resp::Parse::complete && !skipped_.empty()) {
        reply_error(b, skipped_);
        skipped_.clear();
        continue;
      }
      if (r == resp::Parse::error) {  // answer, then close: the stream cannot be trusted
        std::string s;
        resp::error(s, "ERR " + err);
        reply(b, std::move(s), true);
        return false;
      }
      if (!args.empty()) plan(args, b);
      if (b.barrier) return true;  // what follows runs once the job is done
    }
    return false;  // QUIT
  }

  void format(const Pending& b, std::string& out) { apsis::format(b, out); }

  /// Starts the batch's job, if it has one (a job ends its batch: see Batch::barrier).
  void submitted(const std::shared_ptr<Pending>& b, Conn& c) {
    if (!b->barrier) return;
    const size_t i = b->plans.size() - 1;
    ++b->waiting;
    b->plans[i].job(c.coordinator(), c.executor(),
                    [b, i, weak = c.weak_from_this()](std::string reply) {
                      b->plans[i].reply = std::move(reply);
                      if (auto conn = weak.lock()) conn->arrived(*b);
                    });
  }
  void closed() {}

 private:
  using Args = std::vector<std::string>;
  /// A command: its arity (the name counts; max 0: no bound), what plans it, and the
  /// permissions it needs in the connection's namespace (config/users.hpp).
  struct Command {
    size_t min, max;
    void (RespProtocol::*run)(const std::string& name, Args& a, Pending& b);
    uint8_t need = 0;
  };
  static constexpr uint8_t R = config::perm_read, W = config::perm_write;

  void plan(Args& a, Pending& b) {
    static const std::unordered_map<std::string, Command> commands = {
        {"GET", {2, 2, &RespProtocol::get, R}},
        {"SET", {3, 0, &RespProtocol::set, W}},
        {"DEL", {2, 0, &RespProtocol::multi, W}},
        {"EXISTS", {2, 0, &RespProtocol::multi, R}},
        {"MGET", {2, 0, &RespProtocol::multi, R}},
        {"MSET", {3, 0, &RespProtocol::mset, W}},
        {"EXPIRE", {3, 3, &RespProtocol::expire, W}},
        {"PEXPIRE", {3, 3, &RespProtocol::expire, W}},
        {"TTL", {2, 2, &RespProtocol::ttl, R}},
        {"PTTL", {2, 2, &RespProtocol::ttl, R}},
        {"PING", {1, 2, &RespProtocol::ping}},
        {"ECHO", {2, 2, &RespProtocol::echo}},
        {"SELECT", {2, 2, &RespProtocol::select}},
        {"QUIT", {1, 0, &RespProtocol::quit}},
        {"COMMAND", {1, 0, &RespProtocol::command}},
        {"CONFIG", {1, 0, &RespProtocol::command}},
        {"CLIENT", {1, 0, &RespProtocol::client}},
        {"INFO", {1, 0, &RespProtocol::info}},
        {"SETNX", {3, 3, &RespProtocol::setnx, W}},
        {"GETSET", {3, 3, &RespProtocol::getset, R | W}},
        {"GETDEL", {2, 2, &RespProtocol::getdel, R | W}},
        {"GETEX", {2, 0, &RespProtocol::getex, R | W}},
        {"PERSIST", {2, 2, &RespProtocol::persist, W}},
        {"UNLINK", {2, 0, &RespProtocol::multi, W}},
        {"TOUCH", {2, 0, &RespProtocol::multi, R}},
        {"TYPE", {2, 2, &RespProtocol::lookup, R}},
        {"STRLEN", {2, 2, &RespProtocol::lookup, R}},
        {"EXPIRETIME", {2, 2, &RespProtocol::lookup, R}},
        {"PEXPIRETIME", {2, 2, &RespProtocol::lookup, R}},
        {"GETRANGE", {4, 4, &RespProtocol::getrange, R}},
        {"HELLO", {1, 0, &RespProtocol::hello}},
        {"AUTH", {2, 3, &RespProtocol::auth}},
        {"INCR", {2, 2, &RespProtocol::plan_change, R | W}},
        {"DECR", {2, 2, &RespProtocol::plan_change, R | W}},
        {"INCRBY", {3, 3, &RespProtocol::plan_change, R | W}},
        {"DECRBY", {3, 3, &RespProtocol::plan_change, R | W}},
        {"INCRBYFLOAT", {3, 3, &RespProtocol::plan_change, R | W}},
        {"APPEND", {3, 3, &RespProtocol::plan_change, R | W}},
        {"SETRANGE", {4, 4, &RespProtocol::plan_change, R | W}},
        {"SCAN", {2, 8, &RespProtocol::scan, R}},
        {"KEYS", {2, 2, &RespProtocol::keys, R}},
        {"DBSIZE", {1, 1, &RespProtocol::dbsize, R}},
        {"FLUSHDB", {1, 2, &RespProtocol::flushdb, W}},
        {"RENAME", {3, 3, &RespProtocol::rename, R | W}},
        {"RENAMENX", {3, 3, &RespProtocol::rename, R | W}},
        {"MSETNX", {3, 0, &RespProtocol::msetnx, R | W}},
    };
    const std::string name = upper(a[0]);
    auto it = commands.find(name);
    if (it == commands.end())
      return reply_error(b, "ERR unknown command '" + a[0].substr(0, 64) + "'");
    const Command& c = it->second;
    if (a.size() < c.min || (c.max && a.size() > c.max))
      return reply_error(b, "ERR wrong number of arguments for '" + a[0] + "' command");
    if (!allowed(name, c, b)) return;
    (this->*c.run)(name, a, b);
  }

  /// Whether the connection may run the command (else its refusal is b's reply): before a
  /// login only AUTH, HELLO and QUIT; then what the user's grants on the namespace allow.
  bool allowed(const std::string& name, const Command& c, Pending& b) {
    if (!(c.need & ~perms_) && (user_ || perms_ == 0xff)) return true;
    auto* auth = ctx_->auth.get();
    if (!user_) {
      if (name == "AUTH" || name == "HELLO" || name == "QUIT") return true;
      auth->refused(RequestMetrics::resp, RequestMetrics::auth_no_login, peer_,
                    name + " before a login");
      reply_error(b, "NOAUTH Authentication required.");
      return false;
    }
    auth->refused(RequestMetrics::resp, RequestMetrics::auth_no_permission, peer_,
                  name + " by " + user_->name + " in namespace " + ns_);
    reply_error(b, "NOPERM User " + user_->name + " has no permissions to run the '" + lower(name) +
                       "' command in namespace '" + ns_ + "'");
    return false;
  }

  /// A login (AUTH, HELLO ... AUTH); false with the refusal as b's reply.
  bool log_in(const std::string& name, const std::string& password, Pending& b) {
    if (!ctx_->auth || !ctx_->auth->required()) {
      reply_error(b,
                  "ERR AUTH <password> called without any password configured for the default "
                  "user. Are you sure your configuration is correct?");
      return false;
    }
    const config::User* u = nullptr;
    switch (ctx_->auth->login(RequestMetrics::resp, peer_, name, password, &u)) {
      case frontend::Authenticator::Outcome::ok:
        user_ = u;
        perms_ = u->on(ns_);
        return true;
      case frontend::Authenticator::Outcome::throttled:
        reply_error(b, "ERR too many failed logins from this address: wait and try again");
        return false;
      default:
        reply_error(b, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    }
  }

  /// AUTH password (the user "default") or AUTH user password.
  void auth(const std::string&, Args& a, Pending& b) {
    if (log_in(a.size() == 3 ? a[1] : "default", a.back(), b)) reply_ok(b);
  }

  /// An operation on a key of the connection's namespace, its id not yet computed: keyed()
  /// notes it, and hash_ids() computes the ids of all a read's commands at once.
  /// The key is taken by value: a handler that is done with its argument moves it in.
  kv_op key_op(op_kind kind, std::string key) {
    kv_op o;
    o.kind = kind;
    o.key = std::move(key);
    return o;
  }
  /// key_op() with its id, for a job's rounds (they do not pass through keyed()).
  kv_op hashed_op(op_kind kind, const std::string& key) {
    kv_op o = key_op(kind, key);
    o.id = storage::make_id(ns_, o.key);
    return o;
  }
  /// The ids of the operations keyed() took since the last call, in one make_ids(): eight
  /// SHA-512s side by side where the CPU can, a GET's largest cost otherwise (a third).
  void hash_ids(Pending& b) {
    id_jobs_.clear();
    for (size_t i : unhashed_) id_jobs_.push_back({b.ops[i].key, &b.ops[i].id});
    storage::make_ids(ns_, id_jobs_.data(), id_jobs_.size());
    unhashed_.clear();
    if (id_jobs_.capacity() > 4096) id_jobs_ = {}, unhashed_ = {};  // after a huge MSET
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
  void reply_ok(Pending& b) {
    std::string s;
    resp::simple(s, "OK");
    reply(b, std::move(s));
  }
  void keyed(Pending& b, Cmd cmd, std::vector<kv_op> ops) {
    plan_of(b, cmd, ops.size());
    for (auto& o : ops) add(b, std::move(o));
  }
  /// A command of one or two operations, moved in (a braced list would copy each, value too).
  template <class... More>
  void keyed(Pending& b, Cmd cmd, kv_op&& first, More&&... more) {
    plan_of(b, cmd, 1 + sizeof...(more));
    add(b, std::move(first));
    (add(b, std::move(more)), ...);
  }
  /// Every operation keyed() takes comes from key_op(): its id is for hash_ids().
  void add(Pending& b, kv_op&& o) {
    unhashed_.push_back(b.ops.size());
    b.ops.push_back(std::move(o));
  }
  void plan_of(Pending& b, Cmd cmd, size_t count) {
    Plan& p = b.plans.emplace_back();
    p.cmd = cmd;
    p.resp3 = resp3_;
    p.first = b.ops.size();
    p.count = count;
  }

  void get(const std::string&, Args& a, Pending& b) {
    keyed(b, Cmd::get, key_op(op_kind::get, std::move(a[1])));
  }

  /// SET key value [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL] [NX | XX]
  /// An expiry option's absolute time; false if its number is not a positive integer.
  static bool expiry_of(const std::string& opt, const std::string& arg, uint64_t* at) {
    int64_t n = 0;
    if (!parse_int(arg, &n) || n <= 0) return false;
    const uint64_t now = storage::now_ms();
    *at = opt == "EX"     ? now + uint64_t(n) * 1000
          : opt == "PX"   ? now + uint64_t(n)
          : opt == "EXAT" ? uint64_t(n) * 1000
          : opt == "PXAT" ? uint64_t(n)
                          : 0;
    return true;
  }

  void set(const std::string&, Args& a, Pending& b) {
    kv_op o = key_op(op_kind::put, std::move(a[1]));
    o.data = std::move(a[2]);
    bool get = false;
    for (size_t i = 3; i < a.size(); ++i) {
      std::string opt = upper(a[i]);
      bool has_arg = i + 1 < a.size();
      if ((opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && has_arg &&
          !o.expiry_ms && !o.keep_expiry) {
        if (!expiry_of(opt, a[++i], &o.expiry_ms))
          return reply_error(b, "ERR invalid expire time in 'set' command");
      } else if (opt == "NX" && o.cond == op_cond::none) {
        o.cond = op_cond::if_absent;
      } else if (opt == "XX" && o.cond == op_cond::none) {
        o.cond = op_cond::if_present;
      } else if (opt == "KEEPTTL" && !o.expiry_ms) {
        o.keep_expiry = true;
      } else if (opt == "GET" && !get) {
        get = true;
      } else {
        return reply_error(b, "ERR syntax error");
      }
    }
    if (get && !(perms_ & config::perm_read))  // SET ... GET reads too
      return reply_error(b, "NOPERM User " + user_->name +
                                " has no permissions to run the 'set' command with GET in "
                                "namespace '" +
                                ns_ + "'");
    if (get) return keyed(b, Cmd::get_then, key_op(op_kind::get, o.key), std::move(o));
    keyed(b, Cmd::set, std::move(o));
  }

  void setnx(const std::string&, Args& a, Pending& b) {
    kv_op o = key_op(op_kind::put, a[1]);
    o.data = std::move(a[2]);
    o.cond = op_cond::if_absent;
    keyed(b, Cmd::setnx, std::move(o));
  }

  void getset(const std::string&, Args& a, Pending& b) {
    kv_op o = key_op(op_kind::put, a[1]);
    o.data = std::move(a[2]);
    keyed(b, Cmd::get_then, key_op(op_kind::get, a[1]), std::move(o));
  }

  void getdel(const std::string&, Args& a, Pending& b) {
    keyed(b, Cmd::get_then, key_op(op_kind::get, a[1]), key_op(op_kind::remove, a[1]));
  }

  /// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]
  void getex(const std::string&, Args& a, Pending& b) {
    if (a.size() == 2) return keyed(b, Cmd::get_then, key_op(op_kind::get, a[1]));
    const std::string opt = upper(a[2]);
    kv_op o = key_op(op_kind::expire, a[1]);
    if (opt == "PERSIST" && a.size() == 3) {
      o.expiry_ms = 0;
    } else if (a.size() == 4 && !expiry_of(opt, a[3], &o.expiry_ms)) {
      return reply_error(b, "ERR invalid expire time in 'getex' command");
    } else if (a.size() != 4 || o.expiry_ms == 0) {
      return reply_error(b, "ERR syntax error");
    }
    keyed(b, Cmd::get_then, key_op(op_kind::get, a[1]), std::move(o));
  }

  void persist(const std::string&, Args& a, Pending& b) {
    keyed(b, Cmd::persist, key_op(op_kind::expire, a[1]));  // expiry 0: removes it
  }

  /// TYPE, STRLEN, EXPIRETIME, PEXPIRETIME: what a lookup says.
  void lookup(const std::string& name, Args& a, Pending& b) {
    const Cmd cmd = name == "TYPE"         ? Cmd::type
                    : name == "STRLEN"     ? Cmd::strlen
                    : name == "EXPIRETIME" ? Cmd::expiretime
                                           : Cmd::pexpiretime;
    keyed(b, cmd, key_op(op_kind::lookup, a[1]));
  }

  void getrange(const std::string&, Args& a, Pending& b) {
    int64_t from = 0, to = 0;
    if (!parse_int(a[2], &from) || !parse_int(a[3], &to))
      return reply_error(b, "ERR value is not an integer or out of range");
    keyed(b, Cmd::getrange, key_op(op_kind::get, a[1]));
    b.plans.back().from = from;
    b.plans.back().to = to;
  }

  /// HELLO [protover [AUTH user pass] [SETNAME name]]: the server's description, and the
  /// protocol from here on: RESP2, or RESP3 (its null, and this reply as a map). SETNAME is
  /// taken and ignored, as CLIENT SETNAME is; AUTH logs in first.
  void hello(const std::string&, Args& a, Pending& b) {
    int64_t version = resp3_ ? 3 : 2;
    if (a.size() > 1 && (!parse_int(a[1], &version) || (version != 2 && version != 3)))
      return reply_error(b, "NOPROTO unsupported protocol version");
    for (size_t i = 2; i < a.size(); ++i) {
      const std::string opt = upper(a[i]);
      if (opt == "SETNAME" && i + 1 < a.size()) {
        ++i;
      } else if (opt == "AUTH" && i + 2 < a.size()) {
        if (!log_in(a[i + 1], a[i + 2], b)) return;
        i += 2;
      } else {
        return reply_error(b, "ERR syntax error in HELLO option '" + a[i].substr(0, 64) + "'");
      }
    }
    if (!user_ && perms_ != 0xff)
      return reply_error(b,
                         "NOAUTH HELLO must be called with the client already authenticated, "
                         "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                         "authenticate the client and select the RESP protocol version at the "
                         "same time");
    resp3_ = version == 3;
    std::string s = resp3_ ? "%7\r\n" : "*14\r\n";
    for (const char* kv : {"server", "apsis", "version", "0.1.0", "proto"}) resp::bulk(s, kv);
    resp::integer(s, version);
    resp::bulk(s, "id");
    resp::integer(s, 0);
    for (const char* kv : {"mode", "standalone", "role", "master", "modules"}) resp::bulk(s, kv);
    resp::array(s, 0);
    reply(b, std::move(s));
  }

  /// DEL and UNLINK, EXISTS and TOUCH, MGET: one operation per key.
  void multi(const std::string& name, Args& a, Pending& b) {
    const bool del = name == "DEL" || name == "UNLINK",
               exists = name == "EXISTS" || name == "TOUCH";
    const op_kind kind = del ? op_kind::remove : exists ? op_kind::lookup : op_kind::get;
    std::vector<kv_op> ops;
    for (size_t i = 1; i < a.size(); ++i) ops.push_back(key_op(kind, std::move(a[i])));
    keyed(b, del ? Cmd::del : exists ? Cmd::exists : Cmd::mget, std::move(ops));
  }

  void mset(const std::string&, Args& a, Pending& b) {
    if (a.size() % 2 == 0)
      return reply_error(b, "ERR wrong number of arguments for '" + a[0] + "' command");
    std::vector<kv_op> ops;
    for (size_t i = 1; i + 1 < a.size(); i += 2) {
      ops.push_back(key_op(op_kind::put, std::move(a[i])));
      ops.back().data = std::move(a[i + 1]);
    }
    keyed(b, Cmd::mset, std::move(ops));
  }

  void expire(const std::string& name, Args& a, Pending& b) {
    int64_t n = 0;
    if (!parse_int(a[2], &n)) return reply_error(b, "ERR value is not an integer or out of range");
    kv_op o = key_op(op_kind::expire, a[1]);
    int64_t ms = name == "EXPIRE" ? n * 1000 : n;
    uint64_t now = storage::now_ms();
    o.expiry_ms = ms > 0 ? now + uint64_t(ms) : 1;  // <= 0: expired at once, as in Redis
    keyed(b, Cmd::expire, std::move(o));
  }

  void ttl(const std::string& name, Args& a, Pending& b) {
    keyed(b, name == "TTL" ? Cmd::ttl : Cmd::pttl, key_op(op_kind::lookup, a[1]));
  }

  void ping(const std::string&, Args& a, Pending& b) {
    std::string s;
    a.size() == 2 ? resp::bulk(s, a[1]) : resp::simple(s, "PONG");
    reply(b, std::move(s));
  }

  void echo(const std::string&, Args& a, Pending& b) {
    std::string s;
    resp::bulk(s, a[1]);
    reply(b, std::move(s));
  }

  /// SELECT n (0: "default", n: "db<n>") or SELECT name: the connection's namespace.
  void select(const std::string&, Args& a, Pending& b) {
    hash_ids(b);  // the commands before it are in the namespace they named
    int64_t n = -1;
    if (parse_int(a[1], &n) && n >= 0)
      ns_ = n == 0 ? "default" : "db" + std::to_string(n);
    else if (!a[1].empty() && a[1].size() <= 64 &&
             a[1].find_first_not_of(
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
                 std::string::npos)
      ns_ = a[1];
    else
      return reply_error(b,
                         "ERR invalid namespace: use a number or a name of letters, digits, _ - .");
    if (user_) perms_ = user_->on(ns_);
    reply_ok(b);
  }

  void quit(const std::string&, Args&, Pending& b) {
    reply_ok(b);
    b.quit = true;
  }

  void command(const std::string&, Args&, Pending& b) {
    std::string s;
    resp::array(s, 0);  // enough for redis-cli and redis-benchmark
    reply(b, std::move(s));
  }

  void client(const std::string&, Args&, Pending& b) { reply_ok(b); }

  /// INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, APPEND, SETRANGE: one change, computed by the
  /// key's owner in one group under its shard's lock, then written to the other groups.
  void plan_change(const std::string& name, Args& a, Pending& b) {
    kv_op o = key_op(op_kind::change, a[1]);
    value_change& c = o.change;
    c.max_size = ctx_->limits.max_bulk;
    int64_t n = 1;
    if ((name == "INCRBY" || name == "DECRBY" || name == "SETRANGE") && !parse_integer(a[2], &n))
      return reply_error(b, "ERR value is not an integer or out of range");
    if (name == "INCRBYFLOAT" || name == "APPEND" || name == "SETRANGE")
      o.data = std::move(a.back());
    c.kind = name == "INCRBYFLOAT" ? value_change::incr_float
             : name == "APPEND"    ? value_change::append
             : name == "SETRANGE"  ? value_change::setrange
                                   : value_change::incr;
    if ((name == "DECR" || name == "DECRBY") && n == std::numeric_limits<int64_t>::min())
      return reply_error(b, "ERR decrement would overflow");
    c.by = name == "DECR" || name == "DECRBY" ? -n : n;
    const uint8_t kind = c.kind;
    keyed(b, Cmd::change, std::move(o));
    b.plans.back().from = kind;
  }

  // ---- Commands of several rounds: they run as jobs (frontends/rounds.hpp). ----

  void job(Pending& b, Job j) {
    Plan p;
    p.job = std::move(j);
    b.plans.push_back(std::move(p));
    b.barrier = true;
  }

  /// A listing of the connection's namespace; `answer` makes the reply from it once done.
  void listing(Pending& b, std::shared_ptr<frontend::Lister> l,
               std::function<std::string(const frontend::Lister&)> answer) {
    l->ns = ns_;
    job(b, [l, answer](const Coordinator& c, frontend::asio::any_io_executor ex, auto reply) {
      frontend::list(c, ex, l, [l, answer, reply] {
        if (l->failed == op_status::ok) return reply(answer(*l));
        std::string s;
        resp::error(s, "ERR " + std::string(to_string(l->failed)) + ": " + l->message);
        reply(s);
      });
    });
  }

  static std::string key_array(const frontend::Lister& l) {
    std::string s;
    resp::array(s, l.records.size());
    for (const auto& e : l.records) resp::bulk(s, e.meta.key);
    return s;
  }

  /// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: a page or a few (about COUNT keys
  /// examined each), and the cursor to go on from. Every key is a string: another TYPE
  /// matches none.
  void scan(const std::string&, Args& a, Pending& b) {
    auto l = std::make_shared<frontend::Lister>();
    std::string why;
    if (!parse_cursor(a[1], &l->at, &why)) return reply_error(b, "ERR " + why);
    bool other_type = false;
    for (size_t i = 2; i < a.size(); i += 2) {
      const std::string opt = upper(a[i]);
      if (i + 1 >= a.size()) return reply_error(b, "ERR syntax error");
      int64_t n = 0;
      if (opt == "MATCH") {
        l->q.match = a[i + 1];
      } else if (opt == "COUNT") {
        if (!parse_int(a[i + 1], &n))
          return reply_error(b, "ERR value is not an integer or out of range");
        if (n < 1) return reply_error(b, "ERR syntax error");
        l->q.count = uint32_t(std::min<int64_t>(n, list_count_max));
      } else if (opt == "TYPE") {
        other_type = upper(a[i + 1]) != "STRING";
      } else {
        return reply_error(b, "ERR syntax error");
      }
    }
    if (l->q.match == "*") l->q.match.clear();
    if (other_type) {
      std::string s;
      resp::array(s, 2);
      resp::bulk(s, "0");
      resp::array(s, 0);
      return reply(b, std::move(s));
    }
    l->want = l->q.count;
    // Pages of a crowded keyspace when this namespace's keys are sparse, and of the ring's
    // short stretches when a group has several backends (each page ends at its owner's).
    l->pages = 64;
    listing(b, l, [](const frontend::Lister& l) {
      std::string s;
      resp::array(s, 2);
      resp::bulk(s, l.cursor());
      return s + key_array(l);
    });
  }

  /// KEYS pattern: every matching key, gathered page by page (as in Redis, the reply holds
  /// them all: SCAN is the bounded way).
  void keys(const std::string&, Args& a, Pending& b) {
    auto l = std::make_shared<frontend::Lister>();
    l->q.count = 1000;
    l->q.match = a[1] == "*" ? std::string() : a[1];
    listing(b, l, key_array);
  }

  /// DBSIZE: the namespace's live keys, counted page by page.
  void dbsize(const std::string&, Args&, Pending& b) {
    auto l = std::make_shared<frontend::Lister>();
    l->q.count = 1000;
    l->keep = false;
    listing(b, l, [](const frontend::Lister& l) {
      std::string s;
      resp::integer(s, int64_t(l.counted));
      return s;
    });
  }

  /// FLUSHDB [ASYNC | SYNC]: deletes the namespace's keys page by page (each delete a
  /// tombstone that replicates as any other); answers once every page is done.
  void flushdb(const std::string&, Args& a, Pending& b) {
    if (a.size() == 2 && upper(a[1]) != "ASYNC" && upper(a[1]) != "SYNC")
      return reply_error(b, "ERR syntax error");
    auto l = std::make_shared<frontend::Lister>();
    l->ns = ns_;
    l->q.count = 1000;
    job(b, [l](const Coordinator& c, frontend::asio::any_io_executor ex, auto reply) {
      struct State {
        bool asked = false;  ///< the last round ended with a page
        std::string failed;  ///< the first error
      };
      auto st = std::make_shared<State>();
      frontend::rounds(c, ex, [l, st, reply](result_batch* got, op_batch* ops) {
        // A round: the deletes of the page before, then the next page.
        for (size_t k = 0; got && k < got->size(); ++k) {
          op_result& r = (*got)[k];
          if (st->asked && k + 1 == got->size()) {
            l->take(r);
          } else if (r.status != op_status::ok && r.status != op_status::not_found &&
                     st->failed.empty()) {
            st->failed = failure(r);
          }
        }
        if (l->failed != op_status::ok && st->failed.empty())
          st->failed = "ERR " + std::string(to_string(l->failed)) + ": " + l->message;
        if (st->failed.empty()) {
          for (auto& e : l->records) {
            kv_op& o = ops->emplace_back();
            o.kind = op_kind::remove;
            o.id = e.meta.id;
            o.key = std::move(e.meta.key);
          }
          l->records.clear();
          const size_t before = ops->size();
          l->ask(ops);
          st->asked = ops->size() > before;
        }
        if (!ops->empty()) return;
        std::string s;
        st->failed.empty() ? resp::simple(s, "OK") : resp::error(s, st->failed);
        reply(s);
      });
    });
  }

  /// RENAME and RENAMENX: read the source, write its record under the new name (NX: only
  /// where that name is free), then delete the source if it is still the version read. Three
  /// rounds, not one atomic step: a write to the source meanwhile keeps the source (and the
  /// copy stays); docs/resp.md says what a cluster guarantees.
  void rename(const std::string& name, Args& a, Pending& b) {
    const bool nx = name == "RENAMENX";
    kv_op read = hashed_op(op_kind::get, a[1]);
    kv_op put = hashed_op(op_kind::put, a[2]);
    kv_op del = hashed_op(op_kind::remove, a[1]);
    if (nx) put.cond = op_cond::if_absent;
    const bool same = a[1] == a[2];
    job(b, [=](const Coordinator& c, frontend::asio::any_io_executor ex, auto reply) {
      auto step = std::make_shared<int>(0);
      frontend::rounds(c, ex, [=](result_batch* got, op_batch* ops) mutable {
        std::string s;
        const int at = (*step)++;
        op_result* r = got && !got->empty() ? &got->front() : nullptr;
        if (at == 0) return ops->push_back(read);
        // The source's delete (at 3) fails its condition when the source changed meanwhile:
        // the newer source stays, and the copy was made all the same.
        const bool fine = r->status == op_status::ok ||
                          (at == 2 && nx && r->status == op_status::condition_failed) ||
                          (at == 3 && (r->status == op_status::condition_failed ||
                                       r->status == op_status::not_found));
        if (!fine) {
          at == 1 && r->status == op_status::not_found ? resp::error(s, "ERR no such key")
                                                       : resp::error(s, failure(*r));
          return reply(s);
        }
        if (at == 1 && same) {
          nx ? resp::integer(s, 0) : resp::simple(s, "OK");
          return reply(s);
        }
        if (at == 1) {
          put.json = r->record.json, put.data = r->record.data;
          put.user_flags = r->record.user_flags, put.expiry_ms = r->record.expiry_ms;
          del.cond = op_cond::if_version, del.expected = r->record.version;
          return ops->push_back(std::move(put));
        }
        if (at == 2 && r->status == op_status::condition_failed) {
          resp::integer(s, 0);  // RENAMENX: the new name is taken
          return reply(s);
        }
        if (at == 2) return ops->push_back(std::move(del));
        nx ? resp::integer(s, 1) : resp::simple(s, "OK");
        reply(s);
      });
    });
  }

  /// MSETNX key value [key value ...]: 1 when every key was free and is now set, else 0.
  /// Two rounds: the lookups, then puts that each require their key to be free. Not atomic
  /// across keys: a writer between the rounds can take one key (the answer is then 0, and
  /// the keys that were still free are set); docs/resp.md says so.
  void msetnx(const std::string&, Args& a, Pending& b) {
    if (a.size() % 2 == 0)
      return reply_error(b, "ERR wrong number of arguments for '" + a[0] + "' command");
    std::map<std::string, std::string> last;  // a key named twice takes its last value
    for (size_t i = 1; i + 1 < a.size(); i += 2) last[a[i]] = std::move(a[i + 1]);
    op_batch lookups, puts;
    for (auto& [key, value] : last) {
      lookups.push_back(hashed_op(op_kind::lookup, key));
      puts.push_back(hashed_op(op_kind::put, key));
      puts.back().data = std::move(value);
      puts.back().cond = op_cond::if_absent;
    }
    job(b, [lookups, puts](const Coordinator& c, frontend::asio::any_io_executor ex, auto reply) {
      auto step = std::make_shared<int>(0);
      frontend::rounds(c, ex, [=](result_batch* got, op_batch* ops) mutable {
        const int at = (*step)++;
        if (at == 0) return void(*ops = std::move(lookups));
        std::string s;
        bool all = true;
        for (const auto& r : *got) {
          if (r.status != op_status::ok && r.status != op_status::not_found &&
              r.status != op_status::condition_failed)
            return resp::error(s, failure(r)), reply(s);
          all = all && r.status == (at == 1 ? op_status::not_found : op_status::ok);
        }
        if (at == 1 && all) return void(*ops = std::move(puts));
        resp::integer(s, all);
        reply(s);
      });
    });
  }

  void info(const std::string&, Args& a, Pending& b) {
    std::string s;
    resp::bulk(s, ctx_->info ? ctx_->info(a.size() > 1 ? a[1] : "") : "");
    reply(b, std::move(s));
  }

  const Context* ctx_;
  std::string peer_;                    ///< the client's address, for refusals' log lines
  const config::User* user_ = nullptr;  ///< logged in as (with users configured)
  uint8_t perms_ = 0;                   ///< what it may do in ns_ (all of it with no users)
  std::string ns_ = "default";
  bool resp3_ = false;            ///< HELLO 3 was the last HELLO
  resp::Skip skip_;               ///< what is left of a command with an argument over the limit
  std::string skipped_;           ///< that command's error reply
  std::vector<size_t> unhashed_;  ///< the batch's operations whose ids hash_ids() computes
  std::vector<storage::IdJob> id_jobs_;
};

}  // namespace

std::shared_ptr<WireServer> make_resp_server(IoPool& io, Coordinator coordinator,
                                             RespOptions opts) {
  using Server = frontend::Server<RespProtocol>;
  return std::make_shared<Server>(
      io, std::move(coordinator),
      RespProtocol::Context{opts.limits, std::move(opts.info), std::move(opts.auth)},
      Server::Options{opts.bind, opts.port, "RESP", opts.idle_timeout, opts.metrics,
                      RequestMetrics::resp, std::move(opts.tls)});
}

}  // namespace apsis
