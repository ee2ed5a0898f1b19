// Commands of several rounds of operations, run from a connection's thread: a listing's
// pages (SCAN, KEYS, DBSIZE, FLUSHDB, REST's key listing, the binary protocol's list), and
// commands that read before they write (RENAME, MSETNX).
#pragma once

#include <functional>
#include <memory>

#include "frontends/rmw.hpp"
#include "messages/listing.hpp"

namespace apsis::frontend {

/// next(results of the last round, or null at first, and the ops to fill) fills the next
/// round's operations, or leaves them empty when the command is done. On the direct path
/// the rounds loop here rather than nesting a call per round (a listing may take thousands);
/// under fsync `always` a round that wrote is answered once the engine's flusher has synced
/// it, with the writes of every other connection meanwhile (as frontend::exec).
using NextRound = std::function<void(result_batch* last, op_batch* ops)>;

inline void rounds(Coordinator c, asio::any_io_executor ex, NextRound next) {
  struct Loop : std::enable_shared_from_this<Loop> {
    Coordinator c;
    asio::any_io_executor ex;
    NextRound next;
    result_batch last;
    void run(result_batch* got) {
      for (;;) {
        op_batch ops;
        next(got, &ops);
        if (ops.empty()) return;
        storage::Unsynced owed;  // a round that wrote goes on once its fsync is done
        auto now = c.exec(
            ops,
            [&] {
              return std::make_shared<PostingSink>(
                  ex, [self = shared_from_this()](result_batch r) { self->run(&r); });
            },
            &owed);
        if (!now) return;
        if (!owed.empty())
          return after_fsync(owed, ex, std::move(*now),
                             [self = shared_from_this()](result_batch r) { self->run(&r); });
        last = std::move(*now);
        got = &last;
      }
    }
  };
  auto loop = std::make_shared<Loop>();
  loop->c = std::move(c);
  loop->ex = std::move(ex);
  loop->next = std::move(next);
  loop->run(nullptr);
}

/// A namespace's listing, page after page from `at`: gathers what the pages hold until it has
/// `want` records, the listing ends, a page fails, or `pages` pages were read.
struct Lister {
  std::string ns;
  list_request q;
  storage::Id at = storage::Id::min();
  size_t want = SIZE_MAX;
  size_t pages = SIZE_MAX;
  bool keep = true;              ///< false: count the records only (DBSIZE)
  std::vector<uint32_t> groups;  ///< the groups to list from; empty: any (failover)
  std::vector<listed_record> records;
  size_t counted = 0;
  bool more = true;
  op_status failed = op_status::ok;
  std::string message;

  bool done() const { return !more || failed != op_status::ok || counted >= want || pages == 0; }
  /// The next page's operation (none once done).
  void ask(op_batch* ops) const {
    if (done()) return;
    kv_op& o = ops->emplace_back();
    o.kind = op_kind::list;
    o.id = at;
    o.key = ns;
    o.data = q.encode();
    o.groups = groups;
  }
  /// A page's result.
  void take(op_result& r) {
    --pages;
    if (r.status != op_status::ok) {
      failed = r.status;
      message = r.message;
      return;
    }
    counted += r.listed.size();
    if (keep)
      for (auto& e : r.listed) records.push_back(std::move(e));
    more = r.existed;
    at = r.record.id;
    if (keep && records.size() > want) {  // the rest of the page: the next call's first keys
      more = true;
      at = records[want].meta.id;
      records.resize(want);
      counted = want;
    }
  }
  /// The cursor to go on from.
  std::string cursor() const { return cursor_text(more, at); }
};

/// Runs a listing to its end (as the Lister bounds it), then done() on the connection's
/// thread.
inline void list(Coordinator c, asio::any_io_executor ex, std::shared_ptr<Lister> l,
                 std::function<void()> done) {
  rounds(std::move(c), std::move(ex), [l, done](result_batch* got, op_batch* ops) {
    if (got && !got->empty()) l->take(got->front());
    l->ask(ops);
    if (ops->empty()) done();
  });
}

}  // namespace apsis::frontend
