#include "actors/session.hpp"

namespace apsis {

session_actor::behavior_type session(session_actor::pointer self, lock_manager_actor locks) {
  // Requests of its own, not delegates: the lock manager sees this actor as the holder.
  return {
      [=](atom::lock, std::string& key, uint32_t lease_ms) -> caf::result<lease> {
        auto rp = self->make_response_promise<lease>();
        self->request(locks, caf::infinite, atom::lock_v, std::move(key), lease_ms)
            .then([rp](lease& l) mutable { rp.deliver(l); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [=](atom::unlock, std::string& key, uint64_t token) -> caf::result<bool> {
        auto rp = self->make_response_promise<bool>();
        self->request(locks, caf::infinite, atom::unlock_v, std::move(key), token)
            .then([rp](bool released) mutable { rp.deliver(released); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
  };
}

}  // namespace apsis
