#include "actors/peer.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "storage/env.hpp"

namespace apsis {

namespace {

using self_ptr = peer_actor::stateful_pointer<peer_state>;
using namespace std::chrono_literals;

const char* const wrong_cookie = "wrong cluster cookie";

/// The time since the node was last heard from, in ms (-1: never).
int64_t silence_ms(self_ptr self, const peer_link& l) {
  if (l.last_heard == caf::actor_clock::time_point{}) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now() - l.last_heard)
      .count();
}

/// A node's state as this one sees it: up (connected), suspect (connected, but silent for
/// two gossip rounds: slow or about to be found dead), or down (no connection).
const char* state_of(self_ptr self, const std::string& name) {
  auto& st = self->state;
  if (name == st.cfg.self.name) return "self";
  const node_entry& e = st.table.nodes.at(name);
  if (e.forgotten) return e.leaving ? "left" : "forgotten";
  auto it = st.links.find(name);
  if (it == st.links.end() || !it->second.up()) return "down";
  auto quiet = st.cfg.gossip_every * 2;
  if (quiet.count() > 0 && silence_ms(self, it->second) > quiet.count()) return "suspect";
  return e.leaving ? "leaving" : "up";
}

/// The cluster as this node sees it: every node, its state, its backends.
void refresh_view(self_ptr self) {
  auto& st = self->state;
  if (!st.cfg.view) return;
  nlohmann::json nodes = nlohmann::json::array(), routes = nlohmann::json::array();
  for (const auto& [name, e] : st.table.nodes) {
    nlohmann::json backends = nlohmann::json::array(), rings = nlohmann::json::array();
    for (const auto& b : e.backends) {
      backends.push_back({{"id", b.backend}, {"group", b.group}, {"points", b.size()}});
      rings.push_back(b);
    }
    const char* state = state_of(self, name);
    nlohmann::json node{{"name", name},
                        {"address", e.host + ":" + std::to_string(e.port)},
                        {"incarnation", e.incarnation},
                        {"state", state},
                        {"backends", backends}};
    if (e.leaving) node["leaving"] = true;
    if (auto l = st.links.find(name); l != st.links.end()) {
      node["last_heard_ms"] = silence_ms(self, l->second);
      if (l->second.since != caf::actor_clock::time_point{})
        node["state_for_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   self->clock().now() - l->second.since)
                                   .count();
    }
    nodes.push_back(std::move(node));
    routes.push_back({{"name", name},
                      {"host", e.host},
                      {"binary_port", e.binary_port},
                      {"state", state},
                      {"backends", rings}});
  }
  std::string text = nlohmann::json{{"nodes", nodes}}.dump();
  std::string route_text = nlohmann::json{{"nodes", routes}}.dump();
  std::lock_guard<std::mutex> lock(st.cfg.view->mu);
  st.cfg.view->json = std::move(text);
  st.cfg.view->routes = std::move(route_text);
}

/// Tells the coordinator, anti-entropy and the lock manager the table, with the handles of
/// the nodes that are up, and which nodes are not.
void publish_routes(self_ptr self) {
  auto& st = self->state;
  refresh_view(self);
  if (!st.cfg.table_file.empty()) {
    route_table kept = st.table;
    kept.nodes.erase(st.cfg.self.name);  // a restart makes a new one
    if (std::string text = kept.to_json(); text != st.saved) {
      storage::Status s = storage::Env::posix()->write_atomic(st.cfg.table_file, text, false);
      if (s)
        st.saved = std::move(text);
      else
        spdlog::warn("cluster: cannot keep the route table in {}: {}", st.cfg.table_file,
                     s.to_string());
    }
  }
  route_table t = st.table;
  std::vector<std::string> down;
  for (auto it = t.nodes.begin(); it != t.nodes.end();)  // they own nothing and are asked nothing
    it = it->second.forgotten ? t.nodes.erase(it) : std::next(it);
  for (auto& [name, e] : t.nodes) {
    if (name == st.cfg.self.name) continue;
    auto l = st.links.find(name);
    if (l == st.links.end() || !l->second.up()) {
      down.push_back(name);
      continue;
    }
    e.peer = caf::actor_cast<caf::actor>(l->second.peer);
    e.anti_entropy = caf::actor_cast<caf::actor>(l->second.anti_entropy);
    e.locks = caf::actor_cast<caf::actor>(l->second.locks);
  }
  self->send(st.cfg.coordinator, atom::routes_v, t, down);
  if (st.cfg.anti_entropy) self->send(st.cfg.anti_entropy, atom::routes_v, t, down);
  if (st.cfg.locks) self->send(st.cfg.locks, atom::routes_v, t, down);
}

/// Rounds between two gossips of the whole table to each node: what a delta could have missed
/// is sent again within a minute (at the default one round a second).
constexpr uint64_t full_every = 60;

/// Sends every node connected what changed since it was last told (gossip_delta): this node's
/// own entry at least, which says it is alive.
void gossip(self_ptr self) {
  auto& st = self->state;
  for (auto& [name, l] : st.links)
    if (l.up())
      self->send(l.peer, atom::gossip_v, gossip_delta(st.table, st.cfg.self.name, &l.sent));
}

template <class Handle>
caf::actor_control_block* block_of(const Handle& a) {
  return caf::actor_cast<caf::actor_control_block*>(a);
}

/// Takes a node's handles from its own entry, which came over its own connection. A new proxy
/// of the same actor compares equal to the one that died with the old connection (caf::actor
/// == compares ids), so links compare control blocks. True if the node was down and is up.
bool adopt(self_ptr self, const node_entry& e) {
  auto& l = self->state.links[e.name];
  l.last_heard = self->clock().now();
  if (!e.peer || block_of(l.peer) == block_of(e.peer)) return false;
  const bool was_down = !l.up();
  l.peer = peer_of(e);
  l.anti_entropy = anti_entropy_of(e);
  l.locks = locks_of(e);
  self->monitor(l.peer);
  // A new connection: the join swaps whole tables (admit() answers with ours, connect() sends
  // it), so gossip goes on from there.
  l.sent.clear();
  gossip_delta(self->state.table, self->state.cfg.self.name, &l.sent);
  if (was_down) {
    l.since = l.last_heard;
    spdlog::info("cluster: node '{}' is up", e.name);
  }
  return true;
}

/// Dials a node heard of through another once, so that every pair of nodes has a connection
/// of its own (and its heartbeats) rather than a route through a third; of two nodes that
/// hear of each other, the one with the smaller name dials (one connection).
void dial_once(self_ptr self, const node_entry& e) {
  auto& st = self->state;
  if (!e.forgotten && e.name > st.cfg.self.name && st.dialed.insert(e.name).second)
    self->send(self, atom::connect_v, e.host, e.port);
}

/// Merges what another node says (never letting it rewrite this node's own entry). Handles
/// are taken only from the entry of the node `from` itself, and kept in its link, not the table.
void take(self_ptr self, route_table t, const caf::node_id& from) {
  auto& st = self->state;
  t.nodes.erase(st.cfg.self.name);
  bool changed = false;
  for (auto& [name, e] : t.nodes) {
    if (e.peer && e.peer.node() == from) changed = adopt(self, e) || changed;
    e.peer = e.anti_entropy = e.locks = nullptr;
  }
  changed = st.table.merge(t) || changed;
  for (const auto& [name, e] : st.table.nodes)
    if (name != st.cfg.self.name) dial_once(self, e);
  if (changed) publish_routes(self);
}

void retry_later(self_ptr self, const std::string& host, uint16_t port) {
  if (self->state.cfg.gossip_every.count() == 0) return;  // no timers: the test drives
  for (const auto& [name, e] : self->state.table.nodes)
    if (e.forgotten && e.host == host && e.port == port) return;  // until it joins again
  auto& wait = self->state.backoff[host + ":" + std::to_string(port)];
  // Capped low: a node back from a pause is taken back within a few heartbeats.
  wait = wait.count() == 0 ? 250ms : std::min<std::chrono::milliseconds>(wait * 2, 2s);
  self->delayed_send(self, wait, atom::connect_v, host, port);
}

/// Connects to a node's cluster port and joins through its PEER with the cookie.
void connect(self_ptr self, const std::string& host, uint16_t port) {
  auto& st = self->state;
  auto& sys = self->home_system();
  auto mm = st.cfg.tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  auto fail = [=](const caf::error& err) {
    std::string why = self->home_system().render(err);
    if (why.find(wrong_cookie) != std::string::npos)
      spdlog::error("cluster: the node at {}:{} refused to let us join: {}", host, port,
                    wrong_cookie);
    else if (self->state.cfg.tls && why.find("disconnect_during_handshake") != std::string::npos)
      spdlog::warn(
          "cluster: no TLS handshake with {}:{}: one of us does not trust the other's "
          "certificate (both must be signed by tls.ca), or it speaks no TLS",
          host, port);
    else
      spdlog::debug("cluster: cannot join through {}:{}: {}", host, port, why);
    retry_later(self, host, port);
  };
  self->request(mm, st.cfg.timeout, caf::connect_atom::value, host, port)
      .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
            if (!ptr) return retry_later(self, host, port);
            auto other = caf::actor_cast<peer_actor>(ptr);
            self->request(other, self->state.cfg.timeout, atom::join_v, self->state.cfg.cookie,
                          self->state.table.nodes.at(self->state.cfg.self.name))
                .then(
                    [=](route_table& t) {
                      auto& st = self->state;
                      st.backoff.erase(host + ":" + std::to_string(port));
                      st.joined.insert(other.node());  // it knew the cookie too
                      // The nodes it knows may not know of us yet (gossip takes a round), so
                      // the name rule in dial_once() could leave a pair talking only through
                      // this node, and cut off when it dies: dial each of them now.
                      for (const auto& [name, e] : t.nodes) {
                        if (name == st.cfg.self.name) continue;
                        bool linked = st.links.count(name) && st.links[name].up();
                        if (e.peer && e.peer.node() == other.node())
                          st.dialed.insert(name);
                        else if (!linked && st.dialed.insert(name).second)
                          self->send(self, atom::connect_v, e.host, e.port);
                      }
                      take(self, std::move(t), other.node());
                      // What changed here since the join was asked (the binary port, once
                      // it listens) reaches the node now rather than at the next gossip.
                      self->send(other, atom::gossip_v, self->state.table);
                    },
                    fail);
          },
          fail);
}

/// Whether a backend of a node other than `name` owns ring points in `group`.
bool group_has_other(const route_table& t, const std::string& name, uint32_t group) {
  for (const auto& [other, e] : t.nodes)
    for (const auto& b : e.backends)
      if (other != name && e.owns() && b.group == group) return true;
  return false;
}

std::string error_json(std::string why) { return nlohmann::json{{"error", std::move(why)}}.dump(); }

/// `apsis cluster forget`: a node that is down leaves the route table (its entry stays, marked,
/// so that gossip does not bring it back); its ranges pass to the other backends of its
/// groups, which anti-entropy fills from the other groups. Refused for this node, a node that
/// is up, and a node whose removal would leave a group with no backend.
std::string forget(self_ptr self, const std::string& name) {
  auto& st = self->state;
  auto& error = error_json;
  auto it = st.table.nodes.find(name);
  if (name == st.cfg.self.name) return error("a node cannot forget itself");
  if (it == st.table.nodes.end()) return error("no node named '" + name + "' in the cluster");
  if (it->second.forgotten) return error("node '" + name + "' is forgotten already");
  if (auto l = st.links.find(name); l != st.links.end() && l->second.up())
    return error("node '" + name + "' is up: only a node that is down can be forgotten");
  for (const auto& b : it->second.backends)
    if (!group_has_other(st.table, name, b.group))
      return error("forgetting '" + name + "' would leave group " + std::to_string(b.group) +
                   " with no backend");
  it->second.forgotten = true;
  ++it->second.version;  // newer than what anyone holds of it: gossip carries it
  st.links.erase(name);
  spdlog::warn(
      "cluster: node '{}' forgotten by an operator; its ranges pass to its groups' other backends",
      name);
  publish_routes(self);
  gossip(self);
  return nlohmann::json{{"forgotten", name}}.dump();
}

/// `apsis cluster leave`: this node's ring points stop owning anything (its entry says
/// `leaving`), so merge moves its keys to the backends that remain, at the recovery rate.
/// Once its backends are empty (tick() sees it) it marks itself forgotten, tells the others,
/// and stops. Asked again, it answers the progress. Refused when a group of its would be left
/// with no other backend. A restart before the end cancels the leave.
std::string leave(self_ptr self) {
  auto& st = self->state;
  node_entry& me = st.table.nodes.at(st.cfg.self.name);
  const auto* ae = st.cfg.anti_entropy_stats.get();
  if (!me.leaving) {
    for (const auto& b : me.backends)
      if (!group_has_other(st.table, me.name, b.group))
        return error_json("leaving would leave group " + std::to_string(b.group) +
                          " with no backend");
    me.leaving = true;
    ++me.version;
    st.moved_before_leave = ae ? ae->moved.load() : 0;
    spdlog::warn(
        "cluster: leaving: this node's keys move to the backends that remain, then it stops");
    publish_routes(self);
    gossip(self);
  }
  nlohmann::json out{{"leaving", me.name},
                     {"moved", ae ? ae->moved.load() - st.moved_before_leave : uint64_t(0)}};
  if (ae && ae->leave_left.load() >= 0)
    out["records_left"] = ae->leave_left.load();  // known once a merge pass has ended
  return out.dump();
}

/// At every tick of a leaving node: once its backends are empty it has left (forgotten by its
/// own word, gossiped to all); a tick later, when that gossip is out, it stops.
void finish_leave(self_ptr self) {
  auto& st = self->state;
  node_entry& me = st.table.nodes.at(st.cfg.self.name);
  if (!me.leaving) return;
  if (me.forgotten) {
    if (st.cfg.on_left && !std::exchange(st.stopping, true)) st.cfg.on_left();
    return;
  }
  if (!st.cfg.anti_entropy_stats || st.cfg.anti_entropy_stats->leave_left.load() != 0) return;
  me.forgotten = true;
  ++me.version;
  spdlog::warn("cluster: left: every record moved to the backends that remain; stopping");
  gossip(self);
  refresh_view(self);
}

/// The nodes this one knew before it stopped: down until reached, and dialed now.
void load_table(self_ptr self) {
  auto& st = self->state;
  std::string text, why;
  route_table kept;
  if (st.cfg.table_file.empty() || !storage::Env::posix()->exists(st.cfg.table_file)) return;
  if (storage::Status s = storage::Env::posix()->read_all(st.cfg.table_file, &text); !s)
    return spdlog::warn("cluster: cannot read {}: {}", st.cfg.table_file, s.to_string());
  if (!route_table::from_json(text, &kept, &why))
    return spdlog::warn("cluster: {} ignored: {}", st.cfg.table_file, why);
  st.saved = text;
  kept.nodes.erase(st.cfg.self.name);
  for (const auto& [name, e] : kept.nodes)
    if (!e.forgotten && st.dialed.insert(name).second)
      self->send(self, atom::connect_v, e.host, e.port);
  st.table.merge(kept);
  spdlog::info("cluster: {} nodes known from {}, down until reached", kept.nodes.size(),
               st.cfg.table_file);
}

/// Whether a message comes from this node or from a node that joined with the cookie.
bool member(self_ptr self) {
  const auto& sender = self->current_sender();
  return sender && (sender->node() == self->node() || self->state.joined.count(sender->node()));
}

/// Whether a message comes from an actor of this node.
bool local(self_ptr self) {
  const auto& sender = self->current_sender();
  return sender && sender->node() == self->node();
}

/// A linked node's PEER died (its connection with it): the node is down until redialed.
void link_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (auto& [name, l] : st.links) {
    // A proxy from an older connection may report its death late: only the current counts.
    if (!l.up() || block_of(l.peer) != caf::actor_cast<caf::actor_control_block*>(dm.source))
      continue;
    l.peer = nullptr, l.anti_entropy = nullptr, l.locks = nullptr;  // died with the connection
    l.since = self->clock().now();
    spdlog::warn("cluster: node '{}' is down ({})", name, self->home_system().render(dm.reason));
    publish_routes(self);
    const node_entry& e = st.table.nodes.at(name);
    retry_later(self, e.host, e.port);
    return;
  }
}

/// A node asks to join with the cookie: it is let in and told the table, or refused.
caf::result<route_table> admit(self_ptr self, const std::string& cookie, const node_entry& e) {
  auto& st = self->state;
  if (cookie != st.cfg.cookie) {
    spdlog::error("cluster: refused node '{}' ({}:{}): {}", e.name, e.host, e.port, wrong_cookie);
    return caf::make_error(caf::sec::runtime_error, wrong_cookie);
  }
  if (e.name == st.cfg.self.name)
    return caf::make_error(caf::sec::runtime_error, "node name '" + e.name + "' is taken");
  const auto& sender = self->current_sender();
  if (!sender) return caf::make_error(caf::sec::runtime_error, "a join must come from a node");
  st.joined.insert(sender->node());
  st.dialed.insert(e.name);  // it connected to us: no need to dial it
  auto known = st.table.nodes.find(e.name);
  if (known == st.table.nodes.end() || e.newer_than(known->second))
    spdlog::info("cluster: node '{}' ({}:{}, incarnation {}) joined", e.name, e.host, e.port,
                 e.incarnation);
  route_table t;
  t.merge(e);
  take(self, std::move(t), sender->node());
  return st.table;
}

/// This node's binary port, for clients that route by the table: gossiped with its entry.
void advertise(self_ptr self, uint16_t binary_port) {
  auto& st = self->state;
  node_entry& me = st.table.nodes.at(st.cfg.self.name);
  me.binary_port = binary_port;
  me.version++;
  publish_routes(self);
  gossip(self);
}

/// Tells every reachable node's ANTI_ENTROPY to delete a namespace's keys; how many were told.
uint32_t purge_everywhere(self_ptr self, const std::string& ns) {
  uint32_t told = 0;
  for (const auto& [name, l] : self->state.links)
    if (l.up() && l.anti_entropy) caf::anon_send(l.anti_entropy, atom::purge_v, ns), ++told;
  return told;
}

}  // namespace

peer_actor::behavior_type peer(self_ptr self, peer_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.cfg.self.peer = caf::actor_cast<caf::actor>(self);
  st.table.nodes[st.cfg.self.name] = st.cfg.self;
  self->set_down_handler([=](caf::down_msg& dm) { link_down(self, dm); });
  load_table(self);
  publish_routes(self);
  for (const auto& [host, port] : st.cfg.seeds)
    if (!(host == st.cfg.self.host && port == st.cfg.self.port))
      self->send(self, atom::connect_v, host, port);
  if (st.cfg.gossip_every.count() > 0) self->delayed_send(self, st.cfg.gossip_every, atom::tick_v);
  return {
      [=](atom::join, std::string& cookie, node_entry& e) -> caf::result<route_table> {
        return admit(self, cookie, e);
      },
      [=](atom::gossip, route_table& t) {
        if (member(self)) take(self, std::move(t), self->current_sender()->node());
      },
      [=](atom::apply, uint32_t backend, op_batch& ops) -> caf::result<result_batch> {
        if (auto& g = self->state.cfg.mailbox) g->sample_of(self);
        if (!member(self))
          return caf::make_error(caf::sec::runtime_error, "not a member of this cluster");
        auto it = self->state.cfg.backends.find(backend);
        if (it == self->state.cfg.backends.end())
          return caf::make_error(caf::sec::runtime_error, "no backend " + std::to_string(backend));
        return it->second.exec(self, ops);
      },
      [=](atom::connect, std::string& host, uint16_t port) { connect(self, host, port); },
      [=](atom::advertise, uint16_t binary_port) { advertise(self, binary_port); },
      // Asked by this node's NODE only: another node, even a member, may not make it
      // drop a namespace or leave.
      [=](atom::purge, std::string& ns) -> caf::result<uint32_t> {
        if (!local(self)) return caf::make_error(caf::sec::runtime_error, "not from this node");
        return purge_everywhere(self, ns);
      },
      [=](atom::admin, std::string& text) -> std::string {
        if (!local(self)) return error_json("cluster commands come from this node only");
        auto cmd = nlohmann::json::parse(text, nullptr, false);
        std::string what = cmd.is_object() ? cmd.value("cmd", "") : "";
        if (what == "forget") return forget(self, cmd.value("node", ""));
        if (what == "leave") return leave(self);
        return error_json("unknown cluster command '" + what + "' (known: forget, leave)");
      },
      [=](atom::tick) {
        auto& st = self->state;
        if (++st.ticks % full_every == 0)
          for (auto& [name, l] : st.links) l.sent.clear();
        gossip(self);
        finish_leave(self);
        refresh_view(self);  // states and silences move with time
        if (st.cfg.gossip_every.count() > 0)
          self->delayed_send(self, st.cfg.gossip_every, atom::tick_v);
      },
  };
}

}  // namespace apsis
