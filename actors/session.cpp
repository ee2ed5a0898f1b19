#include "actors/session.hpp"

namespace apsis {

using wire::reply_fn;

namespace {

/// An answer that is only a status (and why).
wire::Response status_only(op_status s, std::string message = {}) {
  wire::Response r;
  r.status = s;
  r.message = std::move(message);
  return r;
}

/// An answer that carries a JSON text (stat, admin).
wire::Response json_answer(std::string& json) {
  wire::Response r;
  r.data = std::move(json);
  return r;
}

}  // namespace

wire::Response from_result(const op_result& r) {
  wire::Response w;
  w.status = r.status;
  w.message = r.message;
  w.version = r.version;
  w.existed = r.existed;
  w.expiry_ms = r.record.expiry_ms;
  w.user_flags = r.record.user_flags;
  w.json = r.record.json;
  w.data = r.record.data;
  w.json_size = r.json_size;
  w.data_size = r.data_size;
  w.replicas = r.replicas;
  return w;
}

session_actor::behavior_type session(session_actor::pointer self, lock_manager_actor locks,
                                     node_actor node) {
  return {
      [=](atom::lock, std::string& key, uint32_t lease_ms, reply_fn& reply) {
        self->request(locks, caf::infinite, atom::lock_v, std::move(key), lease_ms)
            .then(
                [reply](lease& l) {
                  wire::Response r;
                  r.token = l.token;
                  r.expiry_ms = l.expires_ms;
                  (*reply)(std::move(r));
                },
                [reply, self](caf::error& e) {
                  (*reply)(status_only(op_status::invalid, self->system().render(e)));
                });
      },
      [=](atom::unlock, std::string& key, uint64_t token, reply_fn& reply) {
        self->request(locks, caf::infinite, atom::unlock_v, std::move(key), token)
            .then(
                [reply](bool released) {
                  (*reply)(released
                               ? status_only(op_status::ok)
                               : status_only(op_status::not_found, "no lease with that token"));
                },
                [reply](caf::error&) { (*reply)(status_only(op_status::unavailable)); });
      },
      [=](atom::apply, uint32_t backend, kv_op& op, reply_fn& reply) {
        self->request(node, caf::infinite, atom::apply_v, backend, op_batch{std::move(op)})
            .then(
                [reply](result_batch& r) {
                  (*reply)(r.empty() ? wire::Response{} : from_result(r[0]));
                },
                [reply, self](caf::error& e) {
                  (*reply)(status_only(op_status::unavailable, self->system().render(e)));
                });
      },
      [=](atom::admin, std::string& cmd, reply_fn& reply) {
        self->request(node, caf::infinite, atom::admin_v, std::move(cmd))
            .then([reply](std::string& json) { (*reply)(json_answer(json)); },
                  [reply, self](caf::error& e) {
                    (*reply)(status_only(op_status::unavailable, self->system().render(e)));
                  });
      },
      [=](atom::stats, reply_fn& reply) {
        self->request(node, caf::infinite, atom::stats_v)
            .then([reply](std::string& json) { (*reply)(json_answer(json)); },
                  [reply](caf::error&) { (*reply)(status_only(op_status::unavailable)); });
      },
  };
}

}  // namespace apsis
