// How a frontend runs a batch from a connection's thread, and a read-modify-write of one key
// built on it: read the newest version, make the write conditional on that version (or on
// the key's absence), and start again from the read when another write came between: REST's
// namespace create and drop, which edit the catalog record (rare, and by operators). With
// several groups the condition is checked on each replica, not in one place; changes that
// users make all day (PATCH, INCR...) are computed in one group instead (op_kind::change).
#pragma once

#include <functional>
#include <memory>

#include "actors/replica_group.hpp"
#include "frontends/listener.hpp"

namespace apsis::frontend {

/// Runs a batch on the direct path (at once, on this thread) or through the coordinator actor
/// (its results posted to `ex`); `then` gets the results either way. Under fsync `always` the
/// direct path leaves the fsync owed and `then` waits, posted to `ex`, until the engine's
/// flusher has done it, so that the writes of every connection in the meantime share it; if
/// it failed, every result says so rather than acknowledge a write that is not durable.
/// Posts then(r) to `ex` once the fsyncs `owed` are done; if one failed, every result says
/// so rather than acknowledge a write that is not durable.
template <class Then>
void after_fsync(storage::Unsynced& owed, asio::any_io_executor ex, result_batch r, Then then) {
  owed.when_settled([ex, then = std::move(then), r = std::move(r)](storage::Status s) mutable {
    asio::post(ex, [then = std::move(then), r = std::move(r), s = std::move(s)]() mutable {
      if (!s)
        for (op_result& one : r)
          one.status = op_status::io_error, one.message = "fsync: " + s.to_string();
      then(std::move(r));
    });
  });
}

inline void exec(const Coordinator& c, asio::any_io_executor ex, op_batch ops,
                 std::function<void(result_batch)> then) {
  storage::Unsynced owed;
  auto now = c.exec(
      ops, [&] { return std::make_shared<PostingSink>(ex, then); },  // made only if not now
      &owed);
  if (!now) return;
  if (owed.empty()) return then(std::move(*now));
  after_fsync(owed, ex, std::move(*now), std::move(then));
}

/// One read-modify-write. modify(read, &write) makes the write from what was read (false:
/// none, and done is called with written == nullptr); done(read, written, tries_left) gets the
/// outcome and returns true to start again from the read (when tries are left).
struct Rmw {
  std::function<bool(const op_result& read, kv_op* write)> modify;
  std::function<bool(const op_result& read, const op_result* written, int tries_left)> done;
};

inline void read_modify_write(Coordinator c, asio::any_io_executor ex, kv_op read,
                              std::shared_ptr<Rmw> rmw, int tries) {
  exec(c, ex, op_batch{read}, [=](result_batch r) {
    kv_op write;
    if (!rmw->modify(r[0], &write)) return void(rmw->done(r[0], nullptr, tries - 1));
    exec(c, ex, op_batch{std::move(write)}, [=](result_batch w) {
      if (rmw->done(r[0], &w[0], tries - 1) && tries > 1)
        read_modify_write(c, ex, read, rmw, tries - 1);
    });
  });
}

}  // namespace apsis::frontend
