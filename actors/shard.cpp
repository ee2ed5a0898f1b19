#include "actors/shard.hpp"

#include <algorithm>

#include "messages/large.hpp"
#include "messages/listing.hpp"

namespace apsis {

namespace {

/// What a key holds at this point of the batch: the engine's record, or a write queued
/// earlier in the same batch.
struct current {
  bool live = false;
  storage::Record record;  // json/data only when asked for
  uint32_t json_size = 0, data_size = 0;
  storage::Status failed;  // the engine could not read it (corruption, io_error): not a miss
};

/// Forgets a stored record that fails its checksum, so that a repair can put the healthy copy
/// (of the same version, too: the engine keeps the first of two equal versions).
void drop_if_corrupt(storage::Engine& engine, const storage::Id& id) {
  storage::Record r;
  size_t erased = 0;
  if (engine.get(id, &r).is_corruption()) engine.erase({{id, storage::Version{}}}, &erased);
}

/// One batch applied to the engine in order: reads answer from what the key holds at their
/// point of the batch, writes pass fencing, the version check and their condition and are
/// queued; commit() then stores every queued write with one put_batch, leaving the wait for an
/// fsync under `always` to the caller (*owed), who waits outside the shard's lock.
class BatchApply {
 public:
  using Fences = std::unordered_map<storage::Id, uint64_t, storage::IdHash>;

  BatchApply(storage::Engine& engine, Hlc& clock, Fences& fences, op_batch& ops, uint64_t* owed)
      : engine_(engine),
        clock_(clock),
        fences_(fences),
        ops_(ops),
        owed_(owed),
        results_(ops.size()) {
    if (ops.size() > 1) {
      std::vector<const storage::Id*> ids(ops.size());
      bool gets = false;
      for (size_t i = 0; i < ops.size(); ++i) {
        ids[i] = &ops[i].id;
        gets = gets || ops[i].kind == op_kind::get;
      }
      engine.prefetch(ids, gets);
    }
    // Ids that more than one operation of the batch names: only there can a later operation
    // see an earlier write before the engine has judged it. Counted only for batches with
    // writes versioned elsewhere (a node's own writes are stamped here, newer than what is
    // stored).
    bool foreign = false;
    for (const auto& op : ops) foreign = foreign || op.version.stamp != 0;
    if (foreign && ops.size() > 1)
      for (const auto& op : ops) ++named_[op.id];
    const bool writes = std::any_of(ops.begin(), ops.end(), [](const kv_op& o) {
      return o.kind != op_kind::get && o.kind != op_kind::lookup;
    });
    if (!writes) return;
    repeats_ = ops.size() > 1 && names_an_id_twice(ops);
    writes_.reserve(ops.size());
    write_op_.reserve(ops.size());
  }

  result_batch run() {
    for (size_t i = 0; i < ops_.size(); ++i) {
      results_[i].status = op_status::ok;
      const op_kind k = ops_[i].kind;
      k == op_kind::get || k == op_kind::lookup ? read(ops_[i], results_[i])
                                                : write(i, ops_[i], results_[i]);
    }
    commit();
    return std::move(results_);
  }

 private:
  bool live(const storage::Record& r) const {
    return !r.tombstone && !(r.expiry_ms && r.expiry_ms <= now_);
  }

  /// Whether two operations may name one id (equal prefixes; ids that only share theirs
  /// count too): only then can one see another's write through the overlay.
  static bool names_an_id_twice(const op_batch& ops) {
    std::vector<uint64_t> prefixes(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) prefixes[i] = ops[i].id.prefix();
    std::sort(prefixes.begin(), prefixes.end());
    return std::adjacent_find(prefixes.begin(), prefixes.end()) != prefixes.end();
  }

  /// What the key holds at this point of the batch; payload only when asked for.
  void state_of(const kv_op& op, bool payload, current* c) {
    if (auto it = repeats_ ? overlay_.find(op.id) : overlay_.end(); it != overlay_.end()) {
      c->record = writes_[it->second];
      c->live = live(c->record);
      c->json_size = uint32_t(c->record.json.size());
      c->data_size = uint32_t(c->record.data.size());
      return;
    }
    if (payload) {
      storage::Status s = engine_.get(op.id, &c->record);
      c->live = s.is_ok();
      if (!s && !s.is_not_found()) c->failed = std::move(s);
      return;
    }
    storage::RecordMeta m;
    c->live = engine_.lookup(op.id, &m).is_ok() && !m.tombstone && !m.expired(now_);
    c->record.version = m.version;
    c->record.expiry_ms = m.expiry_ms;
    c->record.user_flags = m.user_flags;
    c->json_size = m.json_size;
    c->data_size = m.data_size;
    // A large value's manifest comes along (a few dozen bytes): its size is the value's.
    if (c->live && (m.user_flags & large::manifest_flag)) engine_.get(op.id, &c->record);
  }

  void read(const kv_op& op, op_result& r) {
    current c;
    state_of(op, op.kind == op_kind::get, &c);
    r.existed = c.live;
    if (!c.failed) {  // the coordinator reads another replica and repairs this one
      r.status = from_storage(c.failed);
      r.message = c.failed.to_string();
      return;
    }
    if (!c.live) {
      r.status = op_status::not_found;
      // The coordinator compares replicas: a tombstone's version says the key was deleted then.
      storage::RecordMeta m;
      r.version = c.record.version.stamp              ? c.record.version
                  : engine_.lookup(op.id, &m).is_ok() ? m.version
                                                      : storage::Version{};
      return;
    }
    r.version = c.record.version;
    r.json_size = op.kind == op_kind::get ? uint32_t(c.record.json.size()) : c.json_size;
    r.data_size = op.kind == op_kind::get ? uint32_t(c.record.data.size()) : c.data_size;
    r.record = std::move(c.record);
  }

  /// False (with r filled in) when an older fencing token refuses the write.
  bool fenced(const kv_op& op, op_result& r) {
    if (op.fence == 0) return false;
    uint64_t& seen = fences_[op.id];
    if (op.fence < seen) {
      r.status = op_status::fenced;
      r.message =
          "fencing token " + std::to_string(op.fence) + " is older than " + std::to_string(seen);
      return true;
    }
    seen = op.fence;
    return false;
  }

  static bool condition_holds(const kv_op& op, const current& c) {
    bool ok = true;
    switch (op.cond) {
      case op_cond::none:
        break;
      case op_cond::if_absent:
        ok = !c.live;
        break;
      case op_cond::if_present:
        ok = c.live;
        break;
      case op_cond::if_version:
        ok = c.live && c.record.version == op.expected;
        break;
    }
    return op.kind == op_kind::expire ? ok && c.live : ok;
  }

  /// Writes: fencing, then the version check, then conditions, then queue.
  void write(size_t i, kv_op& op, op_result& r) {
    if (fenced(op, r)) return;
    if (op.kind == op_kind::change) return change(i, op, r);
    if (op.repair) drop_if_corrupt(engine_, op.id);
    // A plain put needs nothing of what is stored, unless its version was stamped elsewhere
    // and a later operation of the batch names its id: it may be older than what is stored
    // (the engine would refuse it), and must then not be shown to that operation.
    const bool plain = op.kind == op_kind::put && op.cond == op_cond::none && !op.keep_expiry &&
                       !op.report_existed;
    const bool versioned = op.version.stamp != 0;
    const bool judge = versioned && (!plain || (named_.count(op.id) && named_[op.id] > 1));
    current c;
    if (!plain || judge) state_of(op, op.kind == op_kind::expire, &c);
    r.existed = c.live;
    bool newer = true;
    if (auto s = judge ? storage::version_check(c.record.version, op.version, &newer)
                       : storage::Status::ok();
        !s) {
      r.status = from_storage(s);  // stale: the engine would refuse it too
      r.message = s.to_string();
      r.version = op.version;
      return;
    }
    if (!condition_holds(op, c)) {
      r.status = op.kind == op_kind::expire ? op_status::not_found : op_status::condition_failed;
      r.version = c.record.version;
      return;
    }
    if (op.kind == op_kind::expire && op.expiry_ms == 0 && c.record.expiry_ms == 0) {
      r.status = op_status::condition_failed;  // no expiry to remove: nothing is written
      r.version = c.record.version;
      return;
    }
    queue(i, op, r, std::move(c));
  }

  /// A new value from the stored one (INCR, APPEND...), computed here under the lock. The
  /// result carries the record written (the coordinator sends it to the other groups); a
  /// change that cannot apply is `invalid`, with Redis's reason, and writes nothing.
  void change(size_t i, kv_op& op, op_result& r) {
    current c;
    state_of(op, true, &c);
    if (!c.failed) {
      r.status = from_storage(c.failed);
      r.message = c.failed.to_string();
      return;
    }
    r.existed = c.live;
    if (!condition_holds(op, c)) {  // REST's If-Match / If-None-Match on a patch
      r.status = op_status::condition_failed;
      r.version = c.record.version;
      return;
    }
    if (c.live && (c.record.user_flags & large::manifest_flag)) {
      r.status = op_status::invalid;
      r.message = "the key holds a large value: write it whole (an upload), not in place";
      return;
    }
    const bool on_json = op.change.kind == value_change::merge_patch;
    if (on_json && c.live && c.record.json.empty() && !c.record.data.empty()) {
      r.status = op_status::invalid;
      r.message = "the record has a binary data part and no JSON part to patch";
      return;
    }
    std::string value;
    bool needed = true;
    const std::string& old = on_json ? c.record.json : c.record.data;
    if (!apply_change(op.change, op.data, c.live, c.live ? old : std::string(), &value, &needed,
                      &r.message)) {
      r.status = op_status::invalid;
      return;
    }
    if (!needed) {  // the value as it is; no version: nothing to send the other groups
      r.record.data = std::move(value);
      return;
    }
    storage::Record w = c.live ? std::move(c.record) : storage::Record{};
    w.tombstone = false;
    w.key = op.key;
    (on_json ? w.json : w.data) = std::move(value);
    if (op.expiry_ms) w.expiry_ms = op.expiry_ms;
    stage(i, op, r, std::move(w));
    r.record = writes_.back();  // what the other groups store, version included
  }

  /// The record a write stores, at its version: the one decision of a version on this node.
  void queue(size_t i, kv_op& op, op_result& r, current c) {
    storage::Record w;
    if (op.kind == op_kind::expire) {
      w = std::move(c.record);
      w.expiry_ms = op.expiry_ms;
    } else if (op.kind == op_kind::remove) {
      w = storage::Record::make_tombstone(op.id, op.version, std::move(op.key));
      // A manifest's tombstone says so: the chunk collector sees a value moved (RENAME) or
      // deleted while it swept.
      if (c.live) w.user_flags = c.record.user_flags & large::manifest_flag;
    } else {
      w.key = std::move(op.key);  // op.key is not read again: results carry no key
      w.json = std::move(op.json);
      w.data = std::move(op.data);
      w.user_flags = op.user_flags;
      w.expiry_ms = op.keep_expiry && c.live ? c.record.expiry_ms : op.expiry_ms;
    }
    stage(i, op, r, std::move(w));
  }

  void stage(size_t i, kv_op& op, op_result& r, storage::Record w) {
    // A write the coordinator did not stamp (one copy) gets its version here, under the
    // shard's lock, so versions follow the order writes reach the engine. One stamped
    // elsewhere moves this node's clock past it (HLC receive), so that a later write
    // coordinated here is ordered after every write this node has stored.
    if (op.version.stamp == 0)
      op.version = clock_.next();
    else
      clock_.observe(op.version);
    w.id = op.id;
    w.version = op.version;
    r.version = op.version;
    if (repeats_) overlay_[op.id] = writes_.size();
    writes_.push_back(std::move(w));
    write_op_.push_back(i);
  }

  void commit() {
    if (writes_.empty()) return;
    std::vector<storage::Status> statuses(writes_.size());
    engine_.put_batch_unsynced(writes_.data(), writes_.size(), statuses.data(), owed_);
    for (size_t w = 0; w < writes_.size(); ++w) {
      op_result& r = results_[write_op_[w]];
      r.status = from_storage(statuses[w]);
      if (!statuses[w]) r.message = statuses[w].to_string();
    }
  }

  storage::Engine& engine_;
  Hlc& clock_;
  Fences& fences_;
  op_batch& ops_;
  uint64_t* owed_;
  result_batch results_;
  const uint64_t now_ = storage::now_ms();
  std::vector<storage::Record> writes_;
  std::vector<size_t> write_op_;  ///< which op each queued write answers
  /// Ids written earlier in this batch -> their index in writes_, so later ops see them
  /// (kept only when an id may come twice: a node per write otherwise, for nothing).
  std::unordered_map<storage::Id, size_t, storage::IdHash> overlay_;
  bool repeats_ = false;
  std::unordered_map<storage::Id, int, storage::IdHash> named_;
};

/// A listing's page (op_kind::list): the keys of the operation's namespace among the records
/// the engine pages from op.id to the request's end, filtered as it asks. The result says
/// where the next page starts (record.id) and whether there is one (existed).
op_result list_page(storage::Engine& engine, const kv_op& op) {
  op_result r;
  list_request q;
  if (!list_request::decode(op.data, &q)) {
    r.status = op_status::invalid;
    r.message = "malformed listing request";
    return r;
  }
  storage::Page page;
  const uint32_t count = std::clamp<uint32_t>(q.count, 1, list_count_max);
  if (auto s = engine.page(op.id, q.end, count, &page); !s) {
    r.status = from_storage(s);
    r.message = s.to_string();
    return r;
  }
  r.status = op_status::ok;
  r.existed = page.more;
  r.record.id = page.next;
  const uint64_t now = storage::now_ms();
  size_t bytes = 0;
  const bool payload = q.payload || q.manifests;
  for (auto& m : page.records) {
    if (q.manifests && !(m.user_flags & large::manifest_flag)) continue;
    const size_t size = payload ? size_t(m.json_size) + m.data_size : 0;
    if (bytes > 0 && bytes + size > list_payload_budget) {  // the rest waits for the next page
      r.existed = true;
      r.record.id = m.id;
      return r;
    }
    if (!q.tombstones && (m.tombstone || m.expired(now))) continue;
    if (m.version < q.since || storage::make_id(op.key, m.key) != m.id) continue;
    if (!q.match.empty() && !glob_match(q.match, m.key)) continue;
    listed_record& e = r.listed.emplace_back();
    // A manifest's data part (a few dozen bytes) comes with every listing: it holds the size.
    if ((payload || (m.user_flags & large::manifest_flag)) && !m.tombstone) {
      storage::Record rec;
      if (!engine.get(m.id, &rec)) {  // removed or expired since the page was read
        r.listed.pop_back();
        continue;
      }
      e.json = std::move(rec.json);
      e.data = std::move(rec.data);
      bytes += e.json.size() + e.data.size();
    }
    e.meta = std::move(m);
  }
  // The page reached its end: the next one starts after it, unless that was the last id.
  if (!page.more) r.existed = next_id(q.end, &r.record.id);
  return r;
}

}  // namespace

result_batch ShardCore::apply(op_batch& ops, storage::Unsynced* owed) {
  uint64_t ticket = 0;
  result_batch out = apply_unsynced(ops, &ticket);
  if (owed) {
    owed->owe(engine_, ticket);
  } else if (storage::Status s = ticket ? engine_->settle(ticket) : storage::Status::ok(); !s) {
    for (size_t i = 0; i < out.size(); ++i) {  // written, but not durable: not acknowledged
      op_kind k = ops[i].kind;
      if (out[i].status != op_status::ok || k == op_kind::get || k == op_kind::lookup ||
          k == op_kind::list)
        continue;
      out[i].status = from_storage(s);
      out[i].message = s.to_string();
    }
  }
  return out;
}

result_batch ShardCore::apply_unsynced(op_batch& ops, uint64_t* owed) {
  const bool lists =
      std::any_of(ops.begin(), ops.end(), [](const kv_op& o) { return o.kind == op_kind::list; });
  if (!lists) {
    // Reads alone change nothing of the shard's (fences, clock) and the engine is safe to
    // read from any thread: no lock, so that I/O threads reading one shard do not queue.
    const bool reads = std::all_of(ops.begin(), ops.end(), [](const kv_op& o) {
      return o.kind == op_kind::get || o.kind == op_kind::lookup;
    });
    std::unique_lock<decltype(mu_)> lock(mu_, std::defer_lock);
    if (!reads) lock.lock();
    return BatchApply(*engine_, *clock_, fences_, ops, owed).run();
  }
  // Pages change nothing: they read the engine without the lock, the rest runs as usual.
  result_batch out(ops.size());
  op_batch rest;
  std::vector<size_t> at;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == op_kind::list)
      out[i] = list_page(*engine_, ops[i]);
    else
      rest.push_back(std::move(ops[i])), at.push_back(i);
  }
  if (rest.empty()) return out;
  std::lock_guard<decltype(mu_)> lock(mu_);
  result_batch got = BatchApply(*engine_, *clock_, fences_, rest, owed).run();
  for (size_t k = 0; k < at.size(); ++k) out[at[k]] = std::move(got[k]);
  return out;
}

shard_actor::behavior_type shard(shard_actor::stateful_pointer<shard_state> self,
                                 std::shared_ptr<ShardCore> core) {
  self->state.core = std::move(core);
  return {
      [=](atom::apply, op_batch& ops) -> result_batch {
        if (auto& g = self->state.core->mailbox) g->sample_of(self);
        return self->state.core->apply(ops);
      },
  };
}

}  // namespace apsis
