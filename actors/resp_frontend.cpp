#include "actors/resp_frontend.hpp"

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <set>

namespace apsis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

enum class Cmd { reply, get, set, del, exists, mget, mset, expire, ttl, pttl };

/// How to answer one command: a ready reply, or a format over ops [first, first+count).
struct Plan {
  Cmd cmd = Cmd::reply;
  size_t first = 0, count = 0;
  std::string reply;
  bool quit = false;  ///< close the connection once this reply is written
};

/// The commands of one socket read, and their results once the coordinator answers.
struct Pending {
  std::vector<Plan> plans;
  op_batch ops;
  result_batch results;
  bool done = false;
};

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
      case Cmd::reply: out += plan.reply; break;
      case Cmd::get: {
        const op_result& r = at(0);
        if (r.status == op_status::ok) resp::bulk(out, r.record.data);
        else if (r.status == op_status::not_found) resp::null_bulk(out);
        else resp::error(out, failure(r));
        break;
      }
      case Cmd::set: {
        const op_result& r = at(0);
        if (r.status == op_status::ok) resp::simple(out, "OK");
        else if (r.status == op_status::condition_failed) resp::null_bulk(out);
        else resp::error(out, failure(r));
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
          if (r.status == op_status::ok) n += plan.cmd == Cmd::exists || r.existed;
          else if (r.status != op_status::not_found) bad = &r;
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
        if (r.status == op_status::not_found) { resp::integer(out, -2); break; }
        if (r.status != op_status::ok) { resp::error(out, failure(r)); break; }
        if (r.record.expiry_ms == 0) { resp::integer(out, -1); break; }
        uint64_t now = storage::now_ms();
        int64_t ms = r.record.expiry_ms > now ? int64_t(r.record.expiry_ms - now) : 0;
        resp::integer(out, plan.cmd == Cmd::pttl ? ms : (ms + 500) / 1000);
        break;
      }
    }
  }
}

}  // namespace

struct RespServer::Impl : std::enable_shared_from_this<RespServer::Impl> {
  class Connection;

  asio::io_context& io;
  replica_group_actor coordinator;
  RespOptions opts;
  tcp::acceptor acceptor;
  std::set<std::shared_ptr<Connection>> connections;
  bool stopped = false;

  Impl(asio::io_context& io, replica_group_actor c, RespOptions o)
      : io(io), coordinator(std::move(c)), opts(std::move(o)), acceptor(io) {}

  void accept();
};

class RespServer::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Impl> server, tcp::socket sock)
      : server_(std::move(server)), sock_(std::move(sock)) {}

  void start() {
    sock_.set_option(tcp::no_delay(true));
    read();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    sock_.close(ec);
    server_->connections.erase(shared_from_this());
  }

 private:
  // Bounds on what one client may have outstanding before it stops being read.
  static constexpr size_t max_pending = 64;
  static constexpr size_t max_out = 64u << 20;

  struct Sink : batch_sink {
    std::weak_ptr<Connection> conn;
    std::shared_ptr<Pending> batch;
    asio::io_context* io;
    void done(result_batch results) override {
      asio::post(*io, [conn = conn, batch = batch, r = std::move(results)]() mutable {
        batch->results = std::move(r);
        batch->done = true;
        if (auto c = conn.lock()) c->flush();
      });
    }
  };

  void read() {
    if (reading_ || closed_ || stop_reading_) return;
    if (pending_.size() >= max_pending || out_.size() >= max_out) return;  // resumed by flush()
    reading_ = true;
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](auto ec, size_t n) {
      self->reading_ = false;
      if (ec) return self->pending_.empty() ? self->close() : void(self->stop_reading_ = true);
      self->on_read(n);
    });
  }

  void on_read(size_t n) {
    in_.append(buf_.data(), n);
    auto batch = std::make_shared<Pending>();
    size_t pos = 0;
    std::vector<std::string> args;
    std::string err;
    while (!stop_reading_) {
      resp::Parse r = resp::parse_command(in_, &pos, &args, &err, server_->opts.limits);
      if (r == resp::Parse::incomplete) break;
      if (r == resp::Parse::error) {  // answer, then close: the stream cannot be trusted
        Plan p;
        resp::error(p.reply, "ERR " + err);
        p.quit = true;
        batch->plans.push_back(std::move(p));
        stop_reading_ = true;
        break;
      }
      if (!args.empty()) plan(args, *batch);
    }
    in_.erase(0, pos);
    if (!batch->plans.empty()) submit(batch);
    read();
  }

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
    p.quit = quit;
    if (quit) stop_reading_ = true;
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
        if ((opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && has_arg && !o.expiry_ms) {
          if (!parse_int(a[++i], &n) || n <= 0)
            return reply_error(b, "ERR invalid expire time in 'set' command");
          uint64_t now = storage::now_ms();
          o.expiry_ms = opt == "EX" ? now + uint64_t(n) * 1000 : opt == "PX" ? now + uint64_t(n)
                      : opt == "EXAT" ? uint64_t(n) * 1000 : uint64_t(n);
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
      op_kind kind = name == "DEL" ? op_kind::remove : name == "EXISTS" ? op_kind::lookup : op_kind::get;
      for (size_t i = 1; i < argc; ++i) ops.push_back(key_op(kind, a[i]));
      keyed(b, name == "DEL" ? Cmd::del : name == "EXISTS" ? Cmd::exists : Cmd::mget, std::move(ops));
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
      if (!parse_int(a[2], &n)) return reply_error(b, "ERR value is not an integer or out of range");
      kv_op o = key_op(op_kind::expire, a[1]);
      int64_t ms = name == "EXPIRE" ? n * 1000 : n;
      uint64_t now = storage::now_ms();
      o.expiry_ms = ms > 0 ? now + uint64_t(ms) : 1;  // <= 0: expired at once, as in Redis
      keyed(b, Cmd::expire, {std::move(o)});
    } else if (name == "TTL" || name == "PTTL") {
      if (arity(argc == 2)) keyed(b, name == "TTL" ? Cmd::ttl : Cmd::pttl, {key_op(op_kind::lookup, a[1])});
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
      if (parse_int(a[1], &n) && n >= 0) ns_ = n == 0 ? "default" : "db" + std::to_string(n);
      else if (!a[1].empty() && a[1].size() <= 64 &&
               a[1].find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == std::string::npos)
        ns_ = a[1];
      else
        return reply_error(b, "ERR invalid namespace: use a number or a name of letters, digits, _ - .");
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
      resp::bulk(s, server_->opts.info ? server_->opts.info(argc > 1 ? a[1] : "") : "");
      reply(b, std::move(s));
    } else {
      std::string msg = "ERR unknown command '" + a[0].substr(0, 64) + "'";
      reply_error(b, msg);
    }
  }

  void submit(const std::shared_ptr<Pending>& batch) {
    pending_.push_back(batch);
    if (batch->ops.empty()) {
      batch->done = true;
      flush();
      return;
    }
    auto sink = std::make_shared<Sink>();
    sink->conn = weak_from_this();
    sink->batch = batch;
    sink->io = &server_->io;
    caf::anon_send(server_->coordinator, atom::exec_v, std::move(batch->ops),
                   batch_sink_ptr(std::move(sink)));
  }

  void flush() {
    while (!pending_.empty() && pending_.front()->done) {
      format(*pending_.front(), out_);
      for (const auto& p : pending_.front()->plans) quit_ = quit_ || p.quit;
      pending_.pop_front();
    }
    write();
    read();
  }

  void write() {
    if (writing_ || closed_) return;
    if (out_.empty()) {
      if ((quit_ || stop_reading_) && pending_.empty()) close();
      return;
    }
    writing_ = true;
    wbuf_.swap(out_);
    out_.clear();
    asio::async_write(sock_, asio::buffer(wbuf_), [self = shared_from_this()](auto ec, size_t) {
      self->writing_ = false;
      self->wbuf_.clear();
      if (ec) return self->close();
      self->write();
      self->read();
    });
  }

  std::shared_ptr<Impl> server_;
  tcp::socket sock_;
  std::array<char, 64 << 10> buf_;
  std::string in_, out_, wbuf_;
  std::deque<std::shared_ptr<Pending>> pending_;
  std::string ns_ = "default";
  bool reading_ = false, writing_ = false, closed_ = false, stop_reading_ = false, quit_ = false;
};

void RespServer::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](auto ec, tcp::socket sock) {
    if (self->stopped) return;
    if (!ec) {
      auto c = std::make_shared<Connection>(self, std::move(sock));
      self->connections.insert(c);
      c->start();
    }
    self->accept();
  });
}

RespServer::RespServer(asio::io_context& io, replica_group_actor coordinator, RespOptions opts)
    : impl_(std::make_shared<Impl>(io, std::move(coordinator), std::move(opts))) {}

RespServer::~RespServer() = default;

bool RespServer::start(std::string* error) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl_->opts.bind, ec);
  if (ec) return *error = "bad bind address '" + impl_->opts.bind + "'", false;
  tcp::endpoint ep(addr, impl_->opts.port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "RESP port " + impl_->opts.bind + ":" + std::to_string(impl_->opts.port) + ": " + ec.message();
    return false;
  }
  impl_->accept();
  return true;
}

void RespServer::set_info(std::function<std::string(const std::string&)> info) {
  impl_->opts.info = std::move(info);
}

uint16_t RespServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void RespServer::stop() {
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  auto all = impl_->connections;
  for (auto& c : all) c->close();
}

}  // namespace apsis
