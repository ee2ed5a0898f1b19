// Seeded fault schedules on three simulated nodes (tests/actors/sim_cluster.hpp), checked by
// a history checker. Each seed runs random client operations through random nodes while
// links are cut (all of them, one node's, or one direction), healed (what crossed a cut link
// is dropped, or delivered late as after a pause), nodes die and start again (a new process
// on the disk it had), clocks jump and time passes; after the last heal and restart,
// anti-entropy must converge every replica within a bound of rounds, and then:
//   - every acknowledged write is on every replica, or a newer write of its key is;
//   - a read that succeeded never answered missing, or older than a write acknowledged
//     before it began, when the read's and the write's policies overlap (R + W > N).
// A failing seed prints the line that replays it. APSIS_SIM_SEEDS (default 500) seeds run
// from APSIS_SIM_FIRST (default 1), with -r 0 past CAF's 30 s watchdog; APSIS_SIM_SEED runs
// one and prints its schedule.
#define CAF_SUITE partition_sim

#include "tests/actors/sim_cluster.hpp"

#include <caf/test/unit_test_impl.hpp>

#include <cstdlib>
#include <random>
#include <sstream>

#include <spdlog/spdlog.h>

using namespace apsis;
using namespace apsis::sim;

namespace {

constexpr size_t nodes = 3;
constexpr int steps = 40;
constexpr int convergence_rounds = 20;
const char* const keys[] = {"k0", "k1", "k2", "k3"};

/// One client operation and what it was answered. Times are the history's logical clock.
struct event {
  op_kind kind = op_kind::get;
  std::string key, value;                          ///< a put's value: unique per write
  success_policy policy = success_policy::quorum;  ///< the write's, or the read's
  uint64_t invoked = 0, completed = 0;             ///< completed 0: no answer yet
  op_status status = op_status::unavailable;
  storage::Version version;  ///< a write's stored version; a read's answer's (a tombstone's too)
  std::string replicas;      ///< what each replica said, for the log
};

struct history {
  std::vector<event> events;
  uint64_t clock = 0;
};

/// A client on one node: sends each operation to the node's coordinator and writes its answer
/// into the history.
caf::behavior client(caf::event_based_actor* self, replica_group_actor coordinator,
                     std::shared_ptr<history> h) {
  return {[=](uint64_t seq, kv_op& op) {
    // A node killed mid-operation never answers: the client gives up, as over a reset
    // connection (an operation it gave up on counts as not acknowledged).
    self->request(coordinator, 5s, atom::exec_v, op_batch{std::move(op)})
        .then(
            [=](result_batch& r) {
              event& e = h->events[seq];
              e.completed = ++h->clock;
              e.status = r.at(0).status;
              e.version = r.at(0).version;
              for (const auto& x : r.at(0).replicas)
                e.replicas += " " + x.node + ":" + to_string(x.status) + ":" +
                              std::to_string(x.version.stamp & 0xffff) + "@" +
                              std::to_string(x.version.node);
            },
            [=](caf::error&) { h->events[seq].completed = ++h->clock; });
  }};
}

size_t needed(success_policy p) {
  return p == success_policy::one ? 1 : p == success_policy::all ? nodes : nodes / 2 + 1;
}
bool is_write(op_kind k) { return k == op_kind::put || k == op_kind::remove; }

/// Every acknowledged write must be on the replica `node`, or a newer write of its key.
void check_writes(const std::vector<event>& ev, const std::map<std::string, storage::Version>& held,
                  const std::string& node, std::vector<std::string>& wrong) {
  for (size_t s = 0; s < ev.size(); ++s) {
    const event& w = ev[s];
    if (!is_write(w.kind) || w.status != op_status::ok) continue;
    auto has = held.count(w.key) ? held.at(w.key) : storage::Version{};
    if (has < w.version)
      wrong.push_back(node + " lost acknowledged write " + std::to_string(s) + " of " + w.key);
  }
}

/// A read that succeeded must answer at least the newest write acknowledged before it began
/// whose policy overlaps its own (missing, if that write was a delete). Answers how many reads
/// had such a write to check against.
size_t check_reads(const std::vector<event>& ev, std::vector<std::string>& wrong) {
  size_t checked = 0;
  for (size_t r = 0; r < ev.size(); ++r) {
    const event& read = ev[r];
    if (read.kind != op_kind::get ||
        (read.status != op_status::ok && read.status != op_status::not_found))
      continue;
    const event* newest = nullptr;
    size_t at = 0;
    for (size_t s = 0; s < ev.size(); ++s) {
      const event& w = ev[s];
      if (!is_write(w.kind) || w.key != read.key || w.status != op_status::ok) continue;
      if (w.completed >= read.invoked || needed(read.policy) + needed(w.policy) <= nodes) continue;
      if (!newest || newest->version < w.version) newest = &w, at = s;
    }
    if (!newest) continue;
    ++checked;
    if (read.version < newest->version &&
        !(newest->kind == op_kind::remove && read.status == op_status::not_found))
      wrong.push_back("read " + std::to_string(r) + " of " + read.key + " answered " +
                      (read.status == op_status::ok ? "an older version" : "missing") +
                      " after write " + std::to_string(at) + " was acknowledged");
  }
  return checked;
}

class schedule {
 public:
  explicit schedule(uint64_t seed) : seed_(seed), rng_(seed), h_(std::make_shared<history>()) {
    for (size_t i = 0; i < nodes; ++i)
      clients_.push_back(net_.planet_of(i).sys.spawn(client, net_.node(i).coordinator, h_));
  }

  ~schedule() {
    for (auto& c : clients_) caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
  }

  /// Runs the seed's schedule and answers what the checker found wrong (empty: nothing).
  std::vector<std::string> run() {
    for (int step = 0; step < steps; ++step) {
      unsigned pick = unsigned(rng_() % 100);
      if (pick < 50)
        operations();
      else if (pick < 62)
        partition();
      else if (pick < 74)
        heal(rng_() % 2 == 0);
      else if (pick < 79)
        jump();
      else if (pick < 85)
        kill_or_restart();
      else
        pass();
    }
    heal(true);
    for (size_t i = 0; i < nodes; ++i)
      if (net_.dead(i)) restart(i);
    net_.pass(6s);  // every operation still in flight times out or completes
    std::vector<std::string> wrong;
    for (size_t i = 0; i < h_->events.size(); ++i)
      if (h_->events[i].completed == 0)
        wrong.push_back("operation " + std::to_string(i) + " never answered");
    int rounds = converge();
    if (rounds > convergence_rounds)
      wrong.push_back("replicas differ after " + std::to_string(convergence_rounds) +
                      " anti-entropy rounds");
    for (size_t i = 0; i < nodes; ++i) check_writes(h_->events, held(i), net_.node(i).name, wrong);
    reads_checked = check_reads(h_->events, wrong);
    for (const auto& e : h_->events)
      acknowledged_writes += is_write(e.kind) && e.status == op_status::ok;
    for (size_t s : while_dead) acknowledged_while_dead += h_->events[s].status == op_status::ok;
    return wrong;
  }

  size_t reads_checked = 0, acknowledged_writes = 0;  ///< how much the checker had to check
  size_t restarts = 0, acknowledged_while_dead = 0;  ///< writes a restarted node had to catch up on

  /// The schedule, a line per step, then every operation's answer.
  std::string log() const {
    std::ostringstream out;
    out << log_.str();
    for (size_t i = 0; i < h_->events.size(); ++i) {
      const event& e = h_->events[i];
      out << "answer " << i << " (" << e.invoked << ".." << e.completed
          << "): " << to_string(e.status) << " " << (e.version.stamp & 0xffff) << "@"
          << e.version.node << " [" << e.replicas << " ]\n";
    }
    return out.str();
  }

 private:
  /// One to four operations at once, each through a random node.
  void operations() {
    int n = 1 + int(rng_() % 4);
    for (int k = 0; k < n; ++k) {
      event e;
      unsigned what = unsigned(rng_() % 100);
      e.kind = what < 45 ? op_kind::put : what < 85 ? op_kind::get : op_kind::remove;
      e.key = keys[rng_() % std::size(keys)];
      unsigned p = unsigned(rng_() % 100);  // mostly the nodes' quorum; some one, some all
      e.policy = p < 70   ? success_policy::quorum
                 : p < 85 ? success_policy::one
                          : success_policy::all;
      kv_op op;
      op.kind = e.kind;
      op.key = e.key;
      op.id = storage::make_id("default", e.key);
      if (is_write(e.kind))
        op.policy = uint8_t(e.policy) + 1;
      else
        op.read = uint8_t(e.policy) + 1;
      if (e.kind == op_kind::put)
        op.data = e.value = "s" + std::to_string(seed_) + "w" + std::to_string(h_->events.size());
      size_t via = rng_() % nodes;
      e.invoked = ++h_->clock;
      uint64_t seq = h_->events.size();
      for (size_t i = 0; i < nodes; ++i)
        if (net_.dead(i) && is_write(e.kind)) while_dead.push_back(seq);
      h_->events.push_back(e);
      log_ << "op " << seq << ": "
           << (e.kind == op_kind::put   ? "put"
               : e.kind == op_kind::get ? "get"
                                        : "del")
           << " " << e.key << " " << to_string(e.policy) << " via n" << via + 1 << "\n";
      caf::anon_send(clients_[via], seq, std::move(op));
    }
    net_.exec_all();
  }

  /// Cuts every link, one node's links, or one direction between two nodes.
  void partition() {
    size_t a = rng_() % nodes, b = (a + 1 + rng_() % (nodes - 1)) % nodes;
    switch (rng_() % 3) {
      case 0:
        log_ << "cut every link\n";
        for (size_t i = 0; i < nodes; ++i)
          for (size_t j = 0; j < nodes; ++j)
            if (i != j) net_.cut(i, j);
        break;
      case 1:
        log_ << "isolate n" << a + 1 << "\n";
        for (size_t j = 0; j < nodes; ++j)
          if (j != a) net_.cut(a, j), net_.cut(j, a);
        break;
      default:
        log_ << "cut n" << a + 1 << " -> n" << b + 1 << "\n";
        net_.cut(a, b);
    }
  }

  /// A node dies (one at a time), or the dead one starts again once no link of it is cut.
  void kill_or_restart() {
    for (size_t i = 0; i < nodes; ++i)
      if (net_.dead(i)) {
        if (!net_.is_cut(i)) restart(i);
        return;
      }
    size_t node = rng_() % nodes;
    log_ << "kill n" << node + 1 << "\n";
    net_.kill(node);
  }

  void restart(size_t i) {
    log_ << "restart n" << i + 1 << "\n";
    net_.restart(i);
    ++restarts;
    clients_[i] = net_.planet_of(i).sys.spawn(client, net_.node(i).coordinator, h_);
  }

  void heal(bool drop) {
    if (!net_.is_cut()) return;
    log_ << (drop ? "heal, dropping what was cut off\n"
                  : "heal, delivering what waited (a pause)\n");
    net_.heal(drop);
  }

  /// A node's wall clock jumps up to 5 s either way (its HLC never goes back).
  void jump() {
    size_t node = rng_() % nodes;
    int64_t ms = int64_t(rng_() % 10001) - 5000;
    log_ << "clock of n" << node + 1 << " jumps to " << ms << " ms off\n";
    net_.skew(node, ms);
  }

  /// Lets 0.1 to 2.5 s pass (request timeouts fire); sometimes an anti-entropy round.
  void pass() {
    auto t = std::chrono::milliseconds(100 + rng_() % 2400);
    size_t node = rng_() % nodes;
    bool round = rng_() % 2 == 0;
    log_ << "pass " << t.count() << " ms"
         << (round ? ", anti-entropy on n" + std::to_string(node + 1) : "") << "\n";
    if (round) caf::anon_send(net_.node(node).anti_entropy, atom::round_v);
    net_.pass(t);
  }

  /// What a replica holds of each key: its version (a tombstone's too; stamp 0: nothing).
  std::map<std::string, storage::Version> held(size_t i) {
    std::map<std::string, storage::Version> out;
    for (const char* k : keys) {
      storage::RecordMeta m;
      if (net_.node(i).engine->lookup(storage::make_id("default", k), &m).is_ok())
        out[k] = m.version;
      else
        out[k] = {};
    }
    return out;
  }

  /// Anti-entropy rounds on every node until the replicas agree; how many it took.
  int converge() {
    for (int round = 0; round <= convergence_rounds; ++round) {
      bool same = true;
      for (size_t i = 1; i < nodes; ++i) same = same && held(i) == held(0);
      if (same) return round;
      for (size_t i = 0; i < nodes; ++i) caf::anon_send(net_.node(i).anti_entropy, atom::round_v);
      net_.pass(2s);
    }
    return convergence_rounds + 1;
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  sim_cluster net_{nodes};
  std::shared_ptr<history> h_;
  std::vector<caf::actor> clients_;
  std::ostringstream log_;         ///< the schedule, a line per step
  std::vector<size_t> while_dead;  ///< writes sent while a node was dead
};

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace

CAF_TEST(every_seed_keeps_acknowledged_writes_and_reads_them_back) {
  const char* one = std::getenv("APSIS_SIM_SEED");
  const uint64_t first = one && *one ? env_or("APSIS_SIM_SEED", 1) : env_or("APSIS_SIM_FIRST", 1);
  const uint64_t count = one && *one ? 1 : env_or("APSIS_SIM_SEEDS", 500);
  spdlog::set_level(spdlog::level::warn);
  size_t reads = 0, writes = 0, restarts = 0, while_dead = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    schedule s(seed);
    auto wrong = s.run();
    reads += s.reads_checked;
    writes += s.acknowledged_writes;
    restarts += s.restarts;
    while_dead += s.acknowledged_while_dead;
    if (one && *one) CAF_MESSAGE("schedule of seed " << seed << ":\n" << s.log());
    std::string why;
    for (const auto& w : wrong) why += "\n  " + w;
    if (!wrong.empty())
      CAF_FAIL("seed " << seed << " failed:" << why << "\n"
                       << s.log() << "replay: APSIS_SIM_SEED=" << seed
                       << " build/tests/actors/actors_partition_sim_test");
  }
  CAF_MESSAGE(count << " seeds from " << first << " passed: " << writes
                    << " acknowledged writes on every replica, " << reads
                    << " reads checked against an earlier acknowledged write, " << restarts
                    << " restarts, " << while_dead << " writes acknowledged while a node was dead");
  CAF_CHECK(writes > count);  // the schedules did acknowledge writes, and reads came after them
  CAF_CHECK(reads > count);
  if (count >= 100)
    CAF_CHECK(while_dead > count / 10);  // restarted nodes had writes to catch up on
}

// The checker itself: a read that answers missing, or an older version, after an overlapping
// acknowledged write is found; one that began before the write finished is not, nor a miss
// after a delete; a replica without an acknowledged write is found.
CAF_TEST(the_checker_finds_stale_reads_and_lost_writes) {
  auto at = [](op_kind k, success_policy p, uint64_t invoked, uint64_t completed, op_status s,
               uint64_t stamp) {
    event e;
    e.kind = k;
    e.key = "k";
    e.policy = p;
    e.invoked = invoked;
    e.completed = completed;
    e.status = s;
    e.version = {stamp, 1};
    return e;
  };
  std::vector<event> ev{
      at(op_kind::put, success_policy::quorum, 1, 2, op_status::ok, 10),
      at(op_kind::get, success_policy::quorum, 3, 4, op_status::not_found, 0),  // missing
      at(op_kind::get, success_policy::quorum, 5, 6, op_status::ok, 9),         // older
      at(op_kind::get, success_policy::one, 7, 8, op_status::ok, 9),            // no overlap
      at(op_kind::get, success_policy::quorum, 2, 9, op_status::ok, 9),         // concurrent
      at(op_kind::get, success_policy::all, 10, 11, op_status::ok, 10),
      at(op_kind::remove, success_policy::quorum, 12, 13, op_status::ok, 12),
      at(op_kind::get, success_policy::quorum, 14, 15, op_status::not_found, 0)};  // right
  std::vector<std::string> wrong;
  CAF_CHECK_EQUAL(check_reads(ev, wrong), 4u);
  CAF_REQUIRE_EQUAL(wrong.size(), 2u);
  CAF_CHECK_EQUAL(wrong[0], "read 1 of k answered missing after write 0 was acknowledged");
  CAF_CHECK_EQUAL(wrong[1], "read 2 of k answered an older version after write 0 was acknowledged");
  wrong.clear();
  check_writes(ev, {{"k", {9, 1}}}, "n1", wrong);
  CAF_CHECK_EQUAL(wrong, (std::vector<std::string>{"n1 lost acknowledged write 0 of k",
                                                   "n1 lost acknowledged write 6 of k"}));
  check_writes(ev, {{"k", {13, 2}}}, "n2", wrong);  // a newer write of the key is there
  CAF_CHECK_EQUAL(wrong.size(), 2u);
}
