#include "actors/peer.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <caf/io/middleman.hpp>

namespace apsis {

namespace {

using self_ptr = peer_actor::stateful_pointer<peer_state>;
using namespace std::chrono_literals;

const char* const wrong_cookie = "wrong cluster cookie";

/// The cluster as this node sees it: every node, its state, its backends.
void refresh_view(peer_state& st) {
  if (!st.cfg.view) return;
  nlohmann::json nodes = nlohmann::json::array(), routes = nlohmann::json::array();
  for (const auto& [name, e] : st.table.nodes) {
    nlohmann::json backends = nlohmann::json::array(), rings = nlohmann::json::array();
    for (const auto& b : e.backends) {
      backends.push_back({{"id", b.backend}, {"group", b.group}, {"points", b.points.size()}});
      nlohmann::json points = nlohmann::json::array();
      for (const auto& p : b.points) points.push_back(p.hex());
      rings.push_back({{"id", b.backend}, {"group", b.group}, {"points", points}});
    }
    const char* state = name == st.cfg.self.name ? "self" : st.down.count(name) ? "down" : "up";
    nodes.push_back({{"name", name}, {"address", e.host + ":" + std::to_string(e.port)},
                     {"incarnation", e.incarnation}, {"state", state}, {"backends", backends}});
    routes.push_back({{"name", name}, {"host", e.host}, {"binary_port", e.binary_port},
                      {"state", state}, {"backends", rings}});
  }
  std::string text = nlohmann::json{{"nodes", nodes}}.dump();
  std::string route_text = nlohmann::json{{"nodes", routes}}.dump();
  std::lock_guard<std::mutex> lock(st.cfg.view->mu);
  st.cfg.view->json = std::move(text);
  st.cfg.view->routes = std::move(route_text);
}

void publish_routes(self_ptr self) {
  auto& st = self->state;
  refresh_view(st);
  std::vector<std::string> down(st.down.begin(), st.down.end());
  self->send(st.cfg.coordinator, atom::routes_v, st.table, down);
  if (st.cfg.recovery) self->send(st.cfg.recovery, atom::routes_v, st.table, down);
  if (st.cfg.locks) self->send(st.cfg.locks, atom::routes_v, st.table, down);
}

/// Sends the whole table to every node watched.
void gossip(self_ptr self) {
  auto& st = self->state;
  for (const auto& [name, p] : st.watched) self->send(caf::actor_cast<peer_actor>(p), atom::gossip_v, st.table);
}

/// Monitors a node's PEER if it is new or changed; true if the node was down and is back.
/// A node heard of through another is dialed once, so that every pair of nodes has a
/// connection of its own (and its heartbeats) rather than a route through a third; of two
/// nodes that hear of each other, the one with the smaller name dials (one connection).
bool watch(self_ptr self, const node_entry& e) {
  auto& st = self->state;
  if (e.name == st.cfg.self.name || !e.peer) return false;
  if (e.name > st.cfg.self.name && st.dialed.insert(e.name).second)
    self->send(self, atom::connect_v, e.host, e.port);
  auto dead = st.dead.find(e.name);
  if (dead != st.dead.end() && dead->second == e.peer) return false;  // gossip of a dead handle
  caf::actor& w = st.watched[e.name];
  if (w == e.peer) return false;
  w = e.peer;
  self->monitor(e.peer);
  return st.down.erase(e.name) > 0;
}

/// Merges what another node says, never letting it rewrite this node's own entry.
void take(self_ptr self, route_table t) {
  auto& st = self->state;
  t.nodes.erase(st.cfg.self.name);
  bool changed = st.table.merge(t);
  for (const auto& [name, e] : st.table.nodes) changed = watch(self, e) || changed;
  if (changed) publish_routes(self);
}

void retry_later(self_ptr self, const std::string& host, uint16_t port) {
  if (self->state.cfg.gossip_every.count() == 0) return;  // no timers: the test drives
  auto& wait = self->state.backoff[host + ":" + std::to_string(port)];
  wait = wait.count() == 0 ? 250ms : std::min<std::chrono::milliseconds>(wait * 2, 5s);
  self->delayed_send(self, wait, atom::connect_v, host, port);
}

/// Connects to a node's cluster port and joins through its PEER with the cookie.
void connect(self_ptr self, const std::string& host, uint16_t port) {
  auto& st = self->state;
  auto mm = self->home_system().middleman().actor_handle();
  auto fail = [=](const caf::error& err) {
    std::string why = self->home_system().render(err);
    if (why.find(wrong_cookie) != std::string::npos)
      spdlog::error("cluster: the node at {}:{} refused to let us join: {}", host, port, wrong_cookie);
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
                      for (const auto& [name, e] : t.nodes)  // reachable again, if it was not
                        if (e.peer && e.peer.node() == other.node()) st.dead.erase(name), st.dialed.insert(name);
                      // The nodes it knows may not know of us yet (gossip takes a round), so
                      // the name rule in watch() could leave a pair talking only through this
                      // node, and cut off when it dies: dial each of them now.
                      for (const auto& [name, e] : t.nodes)
                        if (name != st.cfg.self.name && e.peer && e.peer.node() != other.node() &&
                            !st.down.count(name) && st.dialed.insert(name).second)
                          self->send(self, atom::connect_v, e.host, e.port);
                      take(self, std::move(t));
                      // What changed here since the join was asked (the binary port, once
                      // it listens) reaches the node now rather than at the next gossip.
                      self->send(other, atom::gossip_v, self->state.table);
                    },
                    fail);
          },
          fail);
}

/// Whether a message comes from this node or from a node that joined with the cookie.
bool member(self_ptr self) {
  const auto& sender = self->current_sender();
  return sender && (sender->node() == self->node() || self->state.joined.count(sender->node()));
}

}  // namespace

peer_actor::behavior_type peer(self_ptr self, peer_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.cfg.self.peer = caf::actor_cast<caf::actor>(self);
  st.table.nodes[st.cfg.self.name] = st.cfg.self;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto it = st.watched.begin(); it != st.watched.end(); ++it) {
      if (it->second.address() != dm.source) continue;
      std::string name = it->first;
      st.dead[name] = it->second;
      st.watched.erase(it);
      st.down.insert(name);
      spdlog::warn("cluster: node '{}' is down ({})", name, self->home_system().render(dm.reason));
      publish_routes(self);
      const node_entry& e = st.table.nodes.at(name);
      retry_later(self, e.host, e.port);
      return;
    }
  });
  publish_routes(self);
  for (const auto& [host, port] : st.cfg.seeds)
    if (!(host == st.cfg.self.host && port == st.cfg.self.port)) self->send(self, atom::connect_v, host, port);
  if (st.cfg.gossip_every.count() > 0) self->delayed_send(self, st.cfg.gossip_every, atom::tick_v);
  return {
      [=](atom::join, std::string& cookie, node_entry& e) -> caf::result<route_table> {
        auto& st = self->state;
        if (cookie != st.cfg.cookie) {
          spdlog::error("cluster: refused node '{}' ({}:{}): {}", e.name, e.host, e.port, wrong_cookie);
          return caf::make_error(caf::sec::runtime_error, wrong_cookie);
        }
        if (e.name == st.cfg.self.name)
          return caf::make_error(caf::sec::runtime_error, "node name '" + e.name + "' is taken");
        if (const auto& sender = self->current_sender()) st.joined.insert(sender->node());
        st.dialed.insert(e.name);  // it connected to us: no need to dial it
        auto known = st.table.nodes.find(e.name);
        if (known == st.table.nodes.end() || e.newer_than(known->second))
          spdlog::info("cluster: node '{}' ({}:{}, incarnation {}) joined", e.name, e.host, e.port,
                       e.incarnation);
        route_table t;
        t.merge(e);
        take(self, std::move(t));
        return st.table;
      },
      [=](atom::gossip, route_table& t) {
        if (member(self)) take(self, std::move(t));
      },
      [=](atom::apply, uint32_t backend, op_batch& ops) -> caf::result<result_batch> {
        if (auto& g = self->state.cfg.mailbox) g->sample_of(self);
        if (!member(self)) return caf::make_error(caf::sec::runtime_error, "not a member of this cluster");
        if (auto d = self->state.cfg.direct.find(backend); d != self->state.cfg.direct.end())
          return d->second->run(ops);
        auto it = self->state.cfg.backends.find(backend);
        if (it == self->state.cfg.backends.end())
          return caf::make_error(caf::sec::runtime_error, "no backend " + std::to_string(backend));
        return self->delegate(it->second, atom::exec_v, std::move(ops));
      },
      [=](atom::connect, std::string& host, uint16_t port) { connect(self, host, port); },
      [=](atom::advertise, uint16_t binary_port) {
        auto& st = self->state;
        node_entry& me = st.table.nodes.at(st.cfg.self.name);
        me.binary_port = binary_port;
        me.version++;
        publish_routes(self);
        gossip(self);
      },
      [=](atom::purge, std::string& ns) {
        auto& st = self->state;
        uint32_t told = 0;
        for (const auto& [name, e] : st.table.nodes)
          if (name != st.cfg.self.name && e.recovery && !st.down.count(name))
            caf::anon_send(caf::actor_cast<anti_entropy_actor>(e.recovery), atom::purge_v, ns), ++told;
        return told;
      },
      [=](atom::tick) {
        auto& st = self->state;
        gossip(self);
        if (st.cfg.gossip_every.count() > 0) self->delayed_send(self, st.cfg.gossip_every, atom::tick_v);
      },
  };
}

}  // namespace apsis
