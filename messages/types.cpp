#include "messages/types.hpp"

namespace apsis {

const char* to_string(op_status s) {
  switch (s) {
    case op_status::ok:
      return "ok";
    case op_status::not_found:
      return "not_found";
    case op_status::condition_failed:
      return "condition_failed";
    case op_status::stale:
      return "stale";
    case op_status::invalid:
      return "invalid";
    case op_status::io_error:
      return "io_error";
    case op_status::corruption:
      return "corruption";
    case op_status::timeout:
      return "timeout";
    case op_status::unavailable:
      return "unavailable";
    case op_status::fenced:
      return "fenced";
    case op_status::denied:
      return "denied";
  }
  return "unknown";
}

const char* to_string(success_policy p) {
  switch (p) {
    case success_policy::one:
      return "one";
    case success_policy::quorum:
      return "quorum";
    case success_policy::all:
      return "all";
  }
  return "unknown";
}

const char* to_string(read_order_kind k) {
  switch (k) {
    case read_order_kind::session:
      return "session";
    case read_order_kind::random:
      return "random";
    case read_order_kind::latency:
      return "latency";
  }
  return "?";
}

bool parse_read_order(const std::string& text, read_order_kind* out) {
  for (auto k : {read_order_kind::session, read_order_kind::random, read_order_kind::latency})
    if (text == to_string(k)) return *out = k, true;
  return false;
}

bool parse_policy(const std::string& text, success_policy* out) {
  for (auto p : {success_policy::one, success_policy::quorum, success_policy::all})
    if (text == to_string(p)) return *out = p, true;
  return false;
}

op_status from_storage(const storage::Status& s) {
  using C = storage::Status::Code;
  switch (s.code()) {
    case C::ok:
      return op_status::ok;
    case C::not_found:
      return op_status::not_found;
    case C::stale:
      return op_status::stale;
    case C::corruption:
      return op_status::corruption;
    case C::invalid_argument:
      return op_status::invalid;
    case C::io_error:
      return op_status::io_error;
    case C::busy:
      return op_status::unavailable;
  }
  return op_status::io_error;
}

size_t needed(success_policy policy, size_t n) {
  return policy == success_policy::one ? 1 : policy == success_policy::all ? n : n / 2 + 1;
}

op_status decide(success_policy policy, const std::vector<replica_entry>& replicas) {
  size_t n = replicas.size(), ok = 0;
  for (const auto& r : replicas) ok += r.status == op_status::ok;
  if (n > 0 && ok >= needed(policy, n)) return op_status::ok;
  // Replicas that agree on why not (a failed condition, a stale version...) say it for all.
  for (const auto& r : replicas)
    if (r.status != replicas.front().status) return op_status::unavailable;
  return n ? replicas.front().status : op_status::unavailable;
}

kv_op replica_write(storage::Record&& rec) {
  kv_op o;
  o.kind = rec.tombstone ? op_kind::remove : op_kind::put;
  o.id = rec.id;
  o.key = std::move(rec.key);
  o.json = std::move(rec.json);
  o.data = std::move(rec.data);
  o.user_flags = rec.user_flags;
  o.expiry_ms = rec.expiry_ms;
  o.version = rec.version;
  return o;
}

}  // namespace apsis
