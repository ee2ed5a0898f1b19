#include "tools/bench/net_bench.hpp"

#include <boost/asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "messages/frame.hpp"

namespace apsis::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

/// Zipfian ranks 0..n-1 (Gray et al., as in YCSB); theta 0 gives uniform.
class Zipf {
 public:
  Zipf(uint64_t n, double theta) : n_(n), theta_(theta) {
    if (theta_ <= 0) return;
    for (uint64_t i = 1; i <= n_; ++i) zeta_n_ += 1.0 / std::pow(double(i), theta_);
    double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta_);
    alpha_ = 1.0 / (1.0 - theta_);
    eta_ = (1.0 - std::pow(2.0 / double(n_), 1.0 - theta_)) / (1.0 - zeta2 / zeta_n_);
  }
  uint64_t next(std::mt19937_64& rng) {
    if (theta_ <= 0) return rng() % n_;
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    double uz = u * zeta_n_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + std::pow(0.5, theta_)) return 1;
    return std::min<uint64_t>(n_ - 1,
                              uint64_t(double(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_)));
  }

 private:
  uint64_t n_;
  double theta_, zeta_n_ = 0, alpha_ = 0, eta_ = 0;
};

struct Result {
  std::vector<uint32_t> read_ns, write_ns, rmw_ns;
  uint64_t errors = 0;
  std::string failure;
};

void send_frame(tcp::socket& s, wire::kind k, wire::opcode op, uint64_t id, std::string body) {
  std::string out;
  wire::encode_frame({k, op, 0, id, std::move(body)}, out);
  asio::write(s, asio::buffer(out));
}

bool read_frame(tcp::socket& s, std::string& in, wire::Frame* f) {
  for (;;) {
    size_t pos = 0;
    wire::error_code code;
    std::string err;
    wire::Decode d = wire::decode_frame(in, &pos, f, wire::default_max_frame, &code, &err);
    if (d == wire::Decode::complete) {
      in.erase(0, pos);
      return f->k != wire::kind::error;
    }
    if (d == wire::Decode::error) return false;
    char buf[65536];
    size_t n = s.read_some(asio::buffer(buf));
    in.append(buf, n);
  }
}

/// What one request is: a read, an update or insert, or either half of a read-modify-write.
enum class Kind { read, write, rmw_read, rmw_write };

/// The operation mix: a YCSB core workload (a, b, c, d, f), or the options' read ratio.
/// Workload D reads the latest inserts (zipfian back from the newest key) and inserts new
/// keys, numbered on from `keys` across every connection.
struct Mix {
  const NetBenchOptions& o;
  std::atomic<uint64_t>& inserted;  ///< keys 0..inserted-1 exist (workload d)

  std::pair<Kind, uint64_t> next(std::mt19937_64& rng, Zipf& zipf) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    const std::string& w = o.workload;
    if (w == "d") {
      if (u < 0.05) return {Kind::write, inserted.fetch_add(1)};
      uint64_t newest = inserted.load() - 1, back = zipf.next(rng);
      return {Kind::read, back > newest ? 0 : newest - back};
    }
    double reads = w == "a"   ? 0.5
                   : w == "b" ? 0.95
                   : w == "c" ? 1.0
                   : w == "f" ? 0.5
                              : o.read_ratio;
    if (u < reads) return {Kind::read, zipf.next(rng)};
    return {w == "f" ? Kind::rmw_read : Kind::write, zipf.next(rng)};
  }
};

/// One connection: `ops` operations, at most o.pipeline in flight. With `load`, it writes
/// keys first..last-1 (every `step`-th) instead, to fill the store before a workload.
void worker(const NetBenchOptions& o, const Mix& mix, uint64_t ops, uint64_t seed, Result* res,
            bool load = false, uint64_t first = 0, uint64_t step = 1) {
  try {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address(o.host), o.port));
    s.set_option(tcp::no_delay(true));
    std::string in;
    send_frame(s, wire::kind::hello, wire::opcode::none, 0, wire::encode_hello({}));
    wire::Frame f;
    if (!read_frame(s, in, &f)) throw std::runtime_error("no hello from the node");
    std::mt19937_64 rng(seed);
    Zipf zipf(o.keys, o.zipf);
    std::string value(o.value_size, 'v');
    struct InFlight {
      Kind kind;
      uint64_t key;
      Clock::time_point start;
    };
    std::deque<InFlight> inflight;
    uint64_t sent = 0, done = 0, id = 0, next_load = first;
    std::string batch;
    auto request = [&](Kind kind, uint64_t key, Clock::time_point start) {
      wire::Request q;
      bool read = kind == Kind::read || kind == Kind::rmw_read;
      q.op = read ? wire::opcode::get : wire::opcode::put;
      q.ns = "bench";
      q.key = "key:" + std::to_string(key);
      if (!read) q.data = value;
      if (success_policy p; read && parse_policy(o.read, &p)) q.read = uint8_t(p) + 1;
      wire::encode_frame(
          {wire::kind::request, q.op, wire::request_flags(q), ++id, wire::encode_request(q)},
          batch);
      inflight.push_back({kind, key, start});
    };
    auto enqueue = [&] {
      ++sent;
      if (load) {
        request(Kind::write, next_load, Clock::now());
        next_load += step;
        return;
      }
      auto [kind, key] = mix.next(rng, zipf);
      request(kind, key, Clock::now());
    };
    while (done < ops) {
      while (sent < ops && inflight.size() < o.pipeline) enqueue();
      if (!batch.empty()) {
        asio::write(s, asio::buffer(batch));
        batch.clear();
      }
      if (!read_frame(s, in, &f)) throw std::runtime_error("the node answered with an error frame");
      wire::Response r;
      std::string err;
      InFlight x = inflight.front();
      inflight.pop_front();
      if (!wire::decode_response(f.op, f.body, &r, &err) ||
          (r.status != op_status::ok && r.status != op_status::not_found))
        ++res->errors;
      if (x.kind == Kind::rmw_read) {  // the write half, timed from the read's start
        request(Kind::rmw_write, x.key, x.start);
        continue;
      }
      ++done;
      uint32_t ns = uint32_t(std::min<int64_t>(
          UINT32_MAX,
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - x.start).count()));
      (x.kind == Kind::read    ? res->read_ns
       : x.kind == Kind::write ? res->write_ns
                               : res->rmw_ns)
          .push_back(ns);
    }
  } catch (const std::exception& e) {
    res->failure = e.what();
  }
}

void print(const char* name, std::vector<uint32_t>& ns, double seconds) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  auto pct = [&](double p) {
    return ns[std::min(ns.size() - 1, size_t(p * double(ns.size())))] / 1000.0;
  };
  std::printf("%-8s %10zu ops %12.0f ops/s   p50 %8.1f us   p99 %8.1f us   p99.9 %9.1f us\n", name,
              ns.size(), double(ns.size()) / seconds, pct(0.5), pct(0.99), pct(0.999));
}

}  // namespace

void add_net_command(CLI::App& app, NetBenchOptions& o) {
  auto* cmd = app.add_subcommand("net", "load a running node over the binary protocol");
  cmd->add_option("--host", o.host)->capture_default_str();
  cmd->add_option("--port", o.port, "the node's binary port")->capture_default_str();
  cmd->add_option("-c,--connections", o.connections)
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("-P,--pipeline", o.pipeline, "requests in flight per connection")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("-n,--ops", o.ops, "operations in all")
      ->check(CLI::Range(1ull, 1ull << 40))
      ->capture_default_str();
  cmd->add_option("--keys", o.keys, "distinct keys")
      ->check(CLI::Range(1ull, 1ull << 32))
      ->capture_default_str();
  cmd->add_option("-d,--value-size", o.value_size)
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--read-ratio", o.read_ratio, "share of gets, 0..1")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--zipf", o.zipf, "zipfian constant (0 = uniform keys)")
      ->check(CLI::Range(0.0, 0.9999))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed)->capture_default_str();
  cmd->add_option("--read", o.read, "gets' read policy; default: the node's")
      ->check(CLI::IsMember({"one", "quorum", "all"}));
  auto* size = cmd->get_option("--value-size");
  cmd->add_option("--workload", o.workload,
                  "a YCSB core workload, after loading --keys records: a (50% reads, 50% updates), "
                  "b (95/5), c (reads), d (95% reads of the latest, 5% inserts), f (50% reads, 50% "
                  "read-modify-writes); records of 1000 bytes unless -d says otherwise")
      ->check(CLI::IsMember({"a", "b", "c", "d", "f"}));
  cmd->callback([&o, size] {
    if (!o.workload.empty() && size->count() == 0) o.value_size = 1000;
    std::exit(run_net_bench(o));
  });
}

/// Runs `ops` operations over o.connections connections; false (after saying why) if one failed.
bool run_all(const NetBenchOptions& o, const Mix& mix, uint64_t ops, bool load, Result* all,
             double* seconds) {
  std::vector<Result> results(o.connections);
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (uint32_t c = 0; c < o.connections; ++c) {
    uint64_t share = ops / o.connections + (c < ops % o.connections ? 1 : 0);
    threads.emplace_back([&, c, share] {
      worker(o, mix, share, o.seed * 1000 + c, &results[c], load, c, o.connections);
    });
  }
  for (auto& t : threads) t.join();
  *seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& r : results) {
    if (!r.failure.empty()) {
      std::fprintf(stderr, "apsis-bench net: %s\n", r.failure.c_str());
      return false;
    }
    for (std::vector<uint32_t> Result::*v : {&Result::read_ns, &Result::write_ns, &Result::rmw_ns})
      (all->*v).insert((all->*v).end(), (r.*v).begin(), (r.*v).end());
    all->errors += r.errors;
  }
  return true;
}

int run_net_bench(const NetBenchOptions& o) {
  std::printf(
      "apsis-bench net: %s:%u, %u connections x %u in flight, %llu ops, %llu keys (zipf %.2f), "
      "%u-byte values, %s%s\n",
      o.host.c_str(), unsigned(o.port), o.connections, o.pipeline, (unsigned long long)o.ops,
      (unsigned long long)o.keys, o.zipf, o.value_size,
      o.workload.empty() ? (std::to_string(int(o.read_ratio * 100)) + "% reads").c_str()
                         : ("YCSB workload " + o.workload).c_str(),
      o.read.empty() ? "" : (" (read " + o.read + ")").c_str());
  std::atomic<uint64_t> inserted{o.keys};
  Mix mix{o, inserted};
  Result all;
  double seconds = 0;
  if (!o.workload.empty()) {  // YCSB's load phase: every key, once, before the run
    Result loaded;
    if (!run_all(o, mix, o.keys, true, &loaded, &seconds)) return 1;
    std::printf("load     %10zu keys in %.1f s\n", loaded.write_ns.size(), seconds);
    if (loaded.errors)
      return std::printf("ERRORS: %llu loads failed\n", (unsigned long long)loaded.errors), 1;
  }
  if (!run_all(o, mix, o.ops, false, &all, &seconds)) return 1;
  std::vector<uint32_t> every = all.read_ns;
  every.insert(every.end(), all.write_ns.begin(), all.write_ns.end());
  every.insert(every.end(), all.rmw_ns.begin(), all.rmw_ns.end());
  print("all", every, seconds);
  print("get", all.read_ns, seconds);
  print("put", all.write_ns, seconds);
  print("rmw", all.rmw_ns, seconds);
  if (all.errors) std::printf("ERRORS: %llu operations failed\n", (unsigned long long)all.errors);
  return all.errors ? 1 : 0;
}

}  // namespace apsis::bench
