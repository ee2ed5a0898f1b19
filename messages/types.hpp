// Message types exchanged by apsis actors, with their `inspect` functions, and the type-ID
// block that registers them (plus the atoms) with CAF. One result type per request:
// `op_result`, with one `replica_entry` per replica that was asked.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "messages/value_change.hpp"
#include "storage/record.hpp"

namespace apsis {

/// What an operation does.
enum class op_kind : uint8_t {
  get,     ///< the whole record
  lookup,  ///< metadata only (also answers EXISTS and TTL)
  put,     ///< store json/data (conditions below)
  remove,  ///< store a tombstone; result says whether a live record was there
  expire,  ///< change only the expiry of a live record
  /// a new value from the stored one (`change`, its bytes in data): computed by one group's
  /// owner, whose record the coordinator then writes to the other groups
  change,
  /// a page of a namespace's keys: from the id on, parameters in data (messages/listing.hpp),
  /// the namespace in key; asks one replica, as a read under `one`
  list,
};

/// When a put or remove may happen.
enum class op_cond : uint8_t {
  none,
  if_absent,   ///< no live record (SET NX)
  if_present,  ///< a live record (SET XX)
  if_version,  ///< the live record's version equals `expected` (compare-and-swap)
};

/// How many replicas must succeed for a write to succeed.
enum class success_policy : uint8_t { one, quorum, all };
const char* to_string(success_policy p);
bool parse_policy(const std::string& text, success_policy* out);

/// The order in which a read tries the session's groups: session order, a random rotation
/// (spreads the load), or the owners' measured reply latency (fastest first).
enum class read_order_kind : uint8_t { session, random, latency };
const char* to_string(read_order_kind k);
bool parse_read_order(const std::string& text, read_order_kind* out);

/// Status codes carried in results and on the wire (docs/protocol.md keeps them stable).
enum class op_status : uint8_t {
  ok = 0,
  not_found = 1,
  condition_failed = 2,  ///< NX/XX/CAS condition false: nothing written
  stale = 3,             ///< an older version than the stored one
  invalid = 4,           ///< bad argument (size, JSON, ...)
  io_error = 5,
  corruption = 6,
  timeout = 7,
  unavailable = 8,  ///< no replica could be asked
  fenced = 9,       ///< the write's fencing token is older than one already seen
  denied = 10,      ///< no login, a failed one, or a user without the permission
};
const char* to_string(op_status s);
op_status from_storage(const storage::Status& s);

/// One key operation. The id is SHA-512(ns ‖ 0 ‖ key), computed once by whoever routes it.
struct kv_op {
  op_kind kind = op_kind::get;
  op_cond cond = op_cond::none;
  storage::Id id;
  std::string key;
  std::string json;
  std::string data;
  uint64_t expiry_ms = 0;    ///< absolute Unix ms; 0 = none (expire: removes the expiry)
  bool keep_expiry = false;  ///< put: keep the stored record's expiry
  uint32_t user_flags = 0;
  storage::Version expected;  ///< for op_cond::if_version
  storage::Version version;   ///< set by the coordinator before replicas see it
  uint64_t fence = 0;         ///< fencing token of a lock on this key; 0 = none
  /// The success policy for this write; 0: the session's (else success_policy + 1).
  uint8_t policy = 0;
  /// The policy for this read; 0: the node's (else success_policy + 1). `one` asks one group
  /// and passes a miss or a failure to the next; `quorum` and `all` ask every group, need that
  /// many answers, and answer the newest version (older replicas are repaired in the
  /// background). A miss carries the tombstone's version, if there is one.
  uint8_t read = 0;
  /// put: say whether a live record was there (`existed`); a plain put skips that lookup.
  bool report_existed = false;
  /// A read repair: a stored record of this id that fails its checksum is dropped first, so
  /// that the healthy copy (of the same version, too) takes its place.
  bool repair = false;
  /// The groups to ask, a subset of the session's; empty: all of them.
  std::vector<uint32_t> groups;
  value_change change;  ///< op_kind::change: what it does
};

/// What one replica did with one operation.
struct replica_entry {
  uint32_t group = 0;
  std::string node;
  uint32_t backend = 0;
  op_status status = op_status::unavailable;
  storage::Version version;  ///< the version stored (or found) there
};

/// op_kind::list: one record of a page (json and data only when the request asked for them).
struct listed_record {
  storage::RecordMeta meta;
  std::string json, data;
};

/// The outcome of one operation: overall status after the success policy, the record (or
/// its metadata) for reads, and one entry per replica asked.
struct op_result {
  op_status status = op_status::unavailable;
  std::string message;
  storage::Version version;
  bool existed = false;                   ///< remove/put: a live record was there before
  storage::Record record;                 ///< get: the record; lookup: version, expiry, flags
  uint32_t json_size = 0, data_size = 0;  ///< lookup: sizes of the stored parts
  std::vector<replica_entry> replicas;
  /// list: the page; record.id is where the next one starts, if `existed` says there is one.
  std::vector<listed_record> listed;
};

/// How many of n replicas a policy needs.
size_t needed(success_policy policy, size_t n);

/// Combines the replicas' entries of one write into its overall status under a policy (the
/// coordinator's, and a client's that coordinates itself).
op_status decide(success_policy policy, const std::vector<replica_entry>& replicas);

/// A stored record as a replica write: its version travels, so the newer one wins there
/// (anti-entropy, merge and read repair).
kv_op replica_write(storage::Record&& rec);

using op_batch = std::vector<kv_op>;
using result_batch = std::vector<op_result>;

/// Where a frontend that is not an actor (Asio) receives the results of a batch. Called
/// once, from an actor's thread.
struct batch_sink {
  virtual ~batch_sink() = default;
  virtual void done(result_batch results) = 0;
};
using batch_sink_ptr = std::shared_ptr<batch_sink>;

/// A lease on a key: the fencing token writes carry, and when the lease ends.
struct lease {
  uint64_t token = 0;
  uint64_t expires_ms = 0;  ///< Unix ms
};

// -- inspect ----------------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_op& x) {
  return f(caf::meta::type_name("kv_op"), x.kind, x.cond, x.id, x.key, x.json, x.data, x.expiry_ms,
           x.keep_expiry, x.user_flags, x.expected, x.version, x.fence, x.policy, x.read,
           x.report_existed, x.repair, x.groups, x.change);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replica_entry& x) {
  return f(caf::meta::type_name("replica_entry"), x.group, x.node, x.backend, x.status, x.version);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_result& x) {
  return f(caf::meta::type_name("op_result"), x.status, x.message, x.version, x.existed, x.record,
           x.json_size, x.data_size, x.replicas, x.listed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, listed_record& x) {
  return f(caf::meta::type_name("listed_record"), x.meta, x.json, x.data);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(caf::meta::type_name("lease"), x.token, x.expires_ms);
}

}  // namespace apsis

// The storage types travel in messages too; their inspect lives here so that storage/
// stays free of CAF.
namespace apsis::storage {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Version& x) {
  return f(caf::meta::type_name("version"), x.stamp, x.node);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Id& x) {
  return f(caf::meta::type_name("id"), x.bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RecordMeta& x) {
  return f(caf::meta::type_name("record_meta"), x.id, x.key, x.version, x.expiry_ms, x.user_flags,
           x.tombstone, x.json_size, x.data_size);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Record& x) {
  return f(caf::meta::type_name("record"), x.id, x.key, x.json, x.data, x.version, x.expiry_ms,
           x.user_flags, x.tombstone);
}

}  // namespace apsis::storage

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(apsis::batch_sink_ptr)
