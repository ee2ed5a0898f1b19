#include "actors/lock_manager.hpp"

#include <algorithm>

namespace apsis {

namespace {

using self_ptr = lock_manager_actor::stateful_pointer<lock_manager_state>;

lease grant(self_ptr self, const std::string& key, const caf::actor_addr& who, uint32_t lease_ms) {
  auto& st = self->state;
  uint64_t token = ++st.last_token;
  st.held[key] = {token, who};
  self->delayed_send(self, std::chrono::milliseconds(lease_ms), atom::expire_v, key, token);
  return lease{token, storage::now_ms() + lease_ms};
}

/// Ends the lease on key and hands it to the first waiter, if any.
void release(self_ptr self, const std::string& key) {
  auto& st = self->state;
  st.held.erase(key);
  auto it = st.waiting.find(key);
  if (it == st.waiting.end()) return;
  auto w = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) st.waiting.erase(it);
  w.promise.deliver(grant(self, key, w.who, w.lease_ms));
}

/// The LOCK_MANAGER that owns a key's lease: this one, or another node's: the key's owner in
/// the first group, or, while that node is down, in the next group whose owner is up (the
/// lease is taken over; tokens grow with the clock, so the new manager's fence out the old
/// one's holders). An error when every owner is down.
caf::expected<lock_manager_actor> owner_of(self_ptr self, const std::string& key) {
  auto& st = self->state;
  if (st.rings.empty()) return lock_manager_actor{};
  size_t zero = key.find('\0');  // leases are named ns ‖ 0 ‖ key
  storage::Id id = zero == std::string::npos
                       ? storage::make_id("default", key)
                       : storage::make_id(key.substr(0, zero), key.substr(zero + 1));
  std::string down;
  for (const auto& [group, r] : st.rings) {
    const ring::owner* o = r.size() ? r.owner_of(id) : nullptr;
    if (!o) continue;
    if (o->node == st.node) return lock_manager_actor{};
    auto n = st.table.nodes.find(o->node);
    if (!st.down.count(o->node) && n != st.table.nodes.end() && n->second.locks)
      return locks_of(n->second);
    down += (down.empty() ? "" : ", ") + o->node;
  }
  if (down.empty()) return lock_manager_actor{};  // no ring owns it: here
  return caf::make_error(caf::sec::runtime_error,
                         "every owner of the lease is down (" + down + ")");
}

}  // namespace

lock_manager_actor::behavior_type lock_manager(self_ptr self, std::string node) {
  self->state.last_token = storage::now_ms() << 20;
  self->state.node = std::move(node);
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    st.monitored.erase(dm.source);
    for (auto it = st.waiting.begin(); it != st.waiting.end();) {
      auto& q = it->second;
      q.erase(std::remove_if(q.begin(), q.end(), [&](auto& w) { return w.who == dm.source; }),
              q.end());
      it = q.empty() ? st.waiting.erase(it) : std::next(it);
    }
    std::vector<std::string> keys;
    for (const auto& [key, h] : st.held)
      if (h.who == dm.source) keys.push_back(key);
    for (const auto& key : keys) release(self, key);
  });
  return {
      [=](atom::lock, std::string& key, uint32_t lease_ms) -> caf::result<lease> {
        auto owner = owner_of(self, key);
        if (!owner) return owner.error();
        if (*owner) return self->delegate(*owner, atom::lock_v, std::move(key), lease_ms);
        auto sender = self->current_sender();  // before the promise takes the request over
        auto who = caf::actor_cast<caf::actor_addr>(sender);
        auto rp = self->make_response_promise<lease>();
        if (lease_ms == 0 || !sender) {
          rp.deliver(
              caf::make_error(caf::sec::invalid_argument, "a lease needs a duration and a holder"));
          return rp;
        }
        if (self->state.monitored.insert(who).second) self->monitor(sender);  // death releases
        if (!self->state.held.count(key))
          rp.deliver(grant(self, key, who, lease_ms));
        else
          self->state.waiting[key].push_back({rp, who, lease_ms});
        return rp;
      },
      [=](atom::unlock, std::string& key, uint64_t token) -> caf::result<bool> {
        auto owner = owner_of(self, key);
        if (!owner) return owner.error();
        if (*owner) return self->delegate(*owner, atom::unlock_v, std::move(key), token);
        auto it = self->state.held.find(key);
        if (it == self->state.held.end() || it->second.token != token) return false;
        release(self, key);
        return true;
      },
      [=](atom::expire, std::string& key, uint64_t token) {
        auto it = self->state.held.find(key);
        if (it != self->state.held.end() && it->second.token == token) release(self, key);
      },
      [=](atom::routes, route_table& table, std::vector<std::string>& down) {
        auto& st = self->state;
        st.rings.clear();
        for (auto& [group, r] : ring::build(table)) st.rings.emplace_back(group, std::move(r));
        st.table = std::move(table);
        st.down = std::set<std::string>(down.begin(), down.end());
      },
  };
}

}  // namespace apsis
