#include "tools/bench/storage_bench.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "storage/sha512_x8.hpp"

namespace apsis::bench {

using namespace apsis::storage;
using Clock = std::chrono::steady_clock;

namespace {

/// Latencies of one phase, in nanoseconds.
struct Phase {
  std::string name;
  std::vector<uint32_t> ns;
  double seconds = 0;
  uint64_t errors = 0;
  std::string note;
  uint64_t records_per_op = 1;  ///< > 1 when each timed operation is a batch

  void print() {
    std::sort(ns.begin(), ns.end());
    auto pct = [&](double p) {
      return ns.empty() ? 0.0 : ns[std::min(ns.size() - 1, size_t(p * double(ns.size())))] / 1000.0;
    };
    std::printf("%-22s %10zu ops %12.0f ops/s   p50 %8.2f us   p99 %8.2f us   p99.9 %9.2f us%s%s\n",
                name.c_str(), ns.size() * records_per_op,
                double(ns.size() * records_per_op) / seconds, pct(0.50), pct(0.99), pct(0.999),
                note.c_str(), errors ? ("   ERRORS " + std::to_string(errors)).c_str() : "");
    std::fflush(stdout);
  }
};

/// Writes into *out the 16-byte-or-longer key for index i: distinct for distinct i, in a
/// random-looking order (16 hex digits, then 'k's). In place and without snprintf: the timed
/// loops make a key per operation, and this is the bench's cost, not the engine's (snprintf
/// and a new string were a quarter of a blob put's instructions).
void key_into(uint64_t i, size_t size, std::string* out) {
  static const char digits[] = "0123456789abcdef";
  uint64_t x = i * 0x9e3779b97f4a7c15ull;  // odd multiplier: a bijection on 64 bits
  out->resize(size);
  for (int d = 15; d >= 0; --d, x >>= 4) (*out)[size_t(d)] = digits[x & 15];
  std::fill(out->begin() + 16, out->end(), 'k');
}

std::string key_of(uint64_t i, size_t size) {
  std::string k;
  key_into(i, size, &k);
  return k;
}

/// Ids are computed before the timed phases: routing computes them, not the engine. Both
/// ways a node does, timed: one by one (make_id) and 16 at a time as a RESP read's (make_ids).
struct Keys {
  std::vector<Id> ids;
  Keys(uint64_t n, size_t key_size) : ids(n) {
    // Sixteen keys at a time, made in place: no copy of every key stays in memory beside
    // the engine whose RAM a key the bench measures.
    std::string keys[16];
    std::vector<IdJob> jobs;
    Clock::duration one{}, lanes{};
    for (uint64_t i = 0; i < n; i += 16) {
      jobs.clear();
      for (uint64_t j = i; j < std::min(n, i + 16); ++j) {
        key_into(j, key_size, &keys[j - i]);
        jobs.push_back({keys[j - i], &ids[j]});
      }
      const auto t0 = Clock::now();
      for (const IdJob& job : jobs) *job.out = make_id("default", job.key);
      const auto t1 = Clock::now();
      make_ids("default", jobs.data(), jobs.size());
      one += t1 - t0, lanes += Clock::now() - t1;
    }
    auto each = [n](Clock::duration d) {
      return std::chrono::duration<double, std::nano>(d).count() / double(n);
    };
    std::printf(
        "ids: make_id %.0f ns each, make_ids 16 at a time %.0f ns each (AVX-512 lanes: %s)\n",
        each(one), each(lanes), sha512_x8_supported() ? "yes" : "no");
  }
};

Record record_of(uint64_t i, const StorageBenchOptions& o, uint64_t stamp,
                 const std::string& value) {
  Record r;
  r.key = key_of(i, o.key_size);
  r.id = make_id("default", r.key);
  r.data = value;
  r.version = {stamp, 1};
  return r;
}

uint64_t rss_anon_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8)) * 1024;
  return 0;
}

std::unique_ptr<Engine> open_or_exit(const EngineOptions& eo) {
  std::unique_ptr<Engine> e;
  Status s = open_engine(eo, &e);
  if (!s) {
    std::fprintf(stderr, "apsis-bench: cannot open %s engine in %s: %s\n", eo.kind.c_str(),
                 eo.dir.c_str(), s.to_string().c_str());
    std::exit(1);
  }
  return e;
}

template <class F>
Phase timed(const std::string& name, uint64_t n, F&& op) {
  Phase p{name, {}, 0, 0, {}, 1};
  p.ns.reserve(n);
  auto start = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (!op(i)) ++p.errors;
    p.ns.push_back(uint32_t(std::min<int64_t>(
        UINT32_MAX,
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count())));
  }
  p.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return p;
}

/// Puts with fsync `always` from `threads` writers at once, each op its own new key;
/// with batch > 1, one writer hands the engine `batch` records at a time (one fsync wait).
Phase sync_phase(const StorageBenchOptions& o, const std::string& dir, uint64_t threads,
                 const std::string& value, uint64_t batch = 1) {
  EngineOptions eo;
  eo.kind = o.engine;
  eo.dir = dir;
  eo.sync.mode = SyncPolicy::Mode::always;
  auto e = open_or_exit(eo);
  std::vector<Phase> parts(threads);
  uint64_t each = std::max<uint64_t>(1, o.sync_ops / threads);
  auto start = Clock::now();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::vector<Record> recs(batch);
      std::vector<Status> results(batch);
      parts[t] = timed("", each / batch, [&](uint64_t i) {
        for (uint64_t j = 0; j < batch; ++j)
          recs[j] = record_of((t + 1) << 40 | (i * batch + j), o, 1, value);
        e->put_batch(recs.data(), batch, results.data());
        return std::all_of(results.begin(), results.end(),
                           [](const Status& s) { return s.is_ok(); });
      });
    });
  for (auto& t : ts) t.join();
  std::string name =
      batch > 1 ? "fillsync batch of " + std::to_string(batch)
                : "fillsync " + std::to_string(threads) + (threads == 1 ? " writer" : " writers");
  Phase p{name, {}, 0, 0, {}, 1};
  p.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& part : parts) {
    p.ns.insert(p.ns.end(), part.ns.begin(), part.ns.end());
    p.errors += part.errors;
  }
  uint64_t syncs = e->stats().syncs;
  if (syncs) p.note = "   (" + std::to_string(syncs) + " fsyncs)";
  if (batch > 1) {
    p.records_per_op = batch;
    p.note += "   (latency per batch)";
  }
  return p;
}

}  // namespace

void add_storage_command(CLI::App& app, StorageBenchOptions& o) {
  auto* cmd = app.add_subcommand("storage", "fill/read/overwrite/fsync phases against one engine");
  cmd->add_option("--engine", o.engine, "blob, block, fs, sorted or memory")
      ->check(CLI::IsMember(engine_kinds()));
  cmd->add_option("--dir", o.dir,
                  "engine directory (default: a fresh one under /tmp, removed after)");
  cmd->add_option("--num", o.num, "operations per phase")->check(CLI::Range(1ull, 1ull << 32));
  cmd->add_option("--key-size", o.key_size, "key bytes (>= 16)")->check(CLI::Range(16, 4096));
  cmd->add_option("--value-size", o.value_size, "value bytes")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--sync-ops", o.sync_ops, "operations in each fsync phase (0 = skip)");
  cmd->add_option("--sync-threads", o.sync_threads, "concurrent writers in the second fsync phase")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--seed", o.seed, "seed of the random read and overwrite order");
  cmd->callback([&o] { std::exit(run_storage_bench(o)); });
}

int run_storage_bench(const StorageBenchOptions& o) {
  namespace fs = std::filesystem;
  bool own_dir = o.dir.empty();
  std::string root =
      own_dir ? (fs::temp_directory_path() / ("apsis-bench-" + std::to_string(::getpid()))).string()
              : o.dir;
  if (fs::exists(root) && !fs::is_empty(root)) {
    std::fprintf(stderr, "apsis-bench: %s exists and is not empty\n", root.c_str());
    return 1;
  }
  std::string value(o.value_size, 'v');
  std::mt19937_64 rng(o.seed);
  for (auto& c : value) c = char('a' + rng() % 26);

  EngineOptions eo;
  eo.kind = o.engine;
  eo.dir = root + "/main";
  eo.sync.mode = SyncPolicy::Mode::never;
  std::printf("apsis-bench storage: engine %s, %" PRIu64 " ops/phase, %" PRIu64
              "-byte keys, %" PRIu64 "-byte values, fsync never unless named, ids precomputed\n",
              o.engine.c_str(), o.num, o.key_size, o.value_size);
  Keys keys(o.num, o.key_size);
  uint64_t rss_before = rss_anon_bytes();
  auto e = open_or_exit(eo);

  Record rec = record_of(0, o, 1, value);
  timed("fillrandom", o.num, [&](uint64_t i) {
    key_into(i, o.key_size, &rec.key);
    rec.id = keys.ids[i];
    return e->put(rec).is_ok();
  }).print();
  EngineStats st = e->stats();
  uint64_t rss_after = rss_anon_bytes();

  std::vector<uint64_t> order(o.num);
  for (auto& x : order) x = rng() % o.num;
  // The ids in read order, read in sequence: picking ids[order[i]] cost a cache and TLB miss
  // of the bench's own per get (640 MB of ids at 10M keys); a node's id is fresh in cache.
  std::vector<Id> ordered(o.num);
  for (uint64_t i = 0; i < o.num; ++i) ordered[i] = keys.ids[order[i]];
  Record got;
  timed("readrandom", o.num, [&](uint64_t i) {
    return e->get(ordered[i], &got).is_ok() && got.data.size() == o.value_size;
  }).print();
  timed("overwrite", o.num, [&](uint64_t i) {
    key_into(order[i], o.key_size, &rec.key);
    rec.id = ordered[i];
    rec.version = {2 + i, 1};
    return e->put(rec).is_ok();
  }).print();

  if (o.sync_ops > 0 && o.engine != "memory") {
    sync_phase(o, root + "/sync1", 1, value).print();
    sync_phase(o, root + "/sync" + std::to_string(o.sync_threads), o.sync_threads, value).print();
    sync_phase(o, root + "/syncbatch", 1, value, o.sync_threads).print();
  }

  std::printf("index RAM: %.1f bytes/key (engine's own count: %" PRIu64 " bytes for %" PRIu64
              " keys); process anonymous RSS grew %.1f bytes/key during fill\n",
              st.keys ? double(st.index_bytes) / double(st.keys) : 0.0, st.index_bytes, st.keys,
              st.keys ? (double(rss_after) - double(rss_before)) / double(st.keys) : 0.0);
  if (o.engine != "memory") {
    auto t0 = Clock::now();
    e.reset();  // clean close: snapshot, flush
    double close_s = std::chrono::duration<double>(Clock::now() - t0).count();
    t0 = Clock::now();
    e = open_or_exit(eo);
    double open_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("close %.3f s; reopen %.3f s with %" PRIu64 " keys\n", close_s, open_s,
                e->stats().keys);
    bool ok = e->get(keys.ids[order[0]], &got).is_ok();
    if (!ok) std::printf("ERROR: a key is missing after reopen\n");
  }
  e.reset();
  if (own_dir) fs::remove_all(root);
  return 0;
}

}  // namespace apsis::bench
