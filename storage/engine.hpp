// Engine: the storage boundary. One engine instance owns one directory. Plain C++: no CAF
// type crosses this interface, and every error is a Status value.
//
// Contract shared by every engine (tests/storage/engine_model_test.cpp checks it):
// - put() stores a record if its version is newer than the stored one; an older version is
//   refused with `stale`; the same version again is accepted and changes nothing.
// - A put is acknowledged when put() returns ok, and is then durable as the fsync policy says.
// - remove() is a put of a tombstone.
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/env.hpp"
#include "storage/record.hpp"

namespace apsis::storage {

/// When acknowledged writes reach stable storage.
struct SyncPolicy {
  enum class Mode {
    always,    ///< put() returns after fdatasync; concurrent writers share one (group commit).
    interval,  ///< a background fsync every interval_ms; an OS crash loses at most that window.
    never,     ///< no fsync: the OS writes back when it likes.
  };
  Mode mode = Mode::always;
  uint32_t interval_ms = 1000;

  /// Parses "always", "never" or "interval:<ms>" (1..3600000); false with *error set otherwise.
  static bool parse(const std::string& text, SyncPolicy* out, std::string* error);
  std::string to_string() const;
};

enum class LogLevel { debug, info, warn, error };
using LogFn = std::function<void(LogLevel, const std::string&)>;

struct EngineOptions {
  std::string kind = "blob";  ///< blob, block, fs, sorted or memory
  std::string dir;            ///< The engine's directory; created if missing.
  SyncPolicy sync;
  Limits limits;
  uint64_t blob_file_size = 256ull << 20;      ///< blob: rotate data files at this size.
  double compact_dead_fraction = 0.5;          ///< blob: compact a sealed file this dead.
  uint64_t snapshot_every_bytes = 1ull << 30;  ///< blob: index snapshot after this many new bytes.
  Env* env = nullptr;                          ///< nullptr = Env::posix()
  LogFn log;                                   ///< nullptr = spdlog's default logger
};

struct IterateOptions {
  Id begin = Id::min();                  ///< inclusive
  Id end = Id::max();                    ///< inclusive
  Version min_version;                   ///< inclusive
  Version max_version = Version::max();  ///< inclusive
  bool with_payload = true;              ///< fill json and data
  bool include_tombstones = true;
  /// Called with the id of each stored record in range that fails its checksum (skipped
  /// otherwise), where the engine can still tell the id; for scrub().
  std::function<void(const Id&)> on_corrupt;
};
/// Whether a record passes an iteration's id, version and tombstone filters.
inline bool matches(const IterateOptions& opts, const Id& id, const Version& v, bool tombstone) {
  return opts.begin <= id && id <= opts.end && opts.min_version <= v && v <= opts.max_version &&
         (opts.include_tombstones || !tombstone);
}

/// Called once per matching record (blob: at least once); return false to stop early.
using IterateFn = std::function<bool(const Record&)>;

/// One page of a listing (Engine::page).
struct Page {
  std::vector<RecordMeta> records;  ///< in id order; tombstones and expired records too
  bool more = false;                ///< records may follow the last one in the range
  Id next;                          ///< with more: where the next page starts (inclusive)
};

struct EngineStats {
  uint64_t keys = 0;         ///< ids held, tombstones included
  uint64_t disk_bytes = 0;   ///< bytes in the engine's files
  uint64_t dead_bytes = 0;   ///< bytes of superseded records not yet compacted
  uint64_t index_bytes = 0;  ///< RAM held by the in-memory index
  uint64_t files = 0;
  uint64_t compactions = 0;
  uint64_t syncs = 0;
  uint64_t synced_writes = 0;  ///< writes made durable by those fsyncs (with policy `never`: 0)
};

/// What one scrub() step found.
struct ScrubStep {
  uint64_t checked = 0;     ///< records read whole and verified
  std::vector<Id> corrupt;  ///< ids whose stored record fails its checksum
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// ok, stale (older version), invalid_argument (see validate()), io_error.
  virtual Status put(const Record& r) = 0;
  /// put() for n records, results[i] for records[i]; engines with group commit write them
  /// under one lock and wait for one fsync. Not atomic: each record stands alone.
  virtual void put_batch(const Record* records, size_t n, Status* results) {
    for (size_t i = 0; i < n; ++i) results[i] = put(records[i]);
  }
  /// put_batch() that leaves fsync `always`'s wait to the caller, so that one fsync covers the
  /// batches of many clients (a frontend's round, as Redis's appendfsync always): *owed is then
  /// what settle() must be given before any of these writes is acknowledged (0: nothing).
  virtual void put_batch_unsynced(const Record* records, size_t n, Status* results,
                                  uint64_t* owed) {
    put_batch(records, n, results);
    *owed = 0;
  }
  /// Waits until the writes `owed` names are durable (waiters share one fsync); the error of a
  /// failed fsync otherwise.
  virtual Status settle(uint64_t owed) {
    (void)owed;
    return Status::ok();
  }
  /// settle() without blocking the caller: done gets its outcome, from another thread or at
  /// once.
  virtual void when_settled(uint64_t owed, std::function<void(Status)> done) { done(settle(owed)); }
  /// ok with the whole record; not_found if absent, a tombstone, or expired.
  virtual Status get(const Id& id, Record* out) = 0;
  /// A hint that these ids are about to be read or written (`whole`: their records read
  /// whole, as gets do): an engine may start loading what it will touch into the CPU cache,
  /// so that the misses of a batch overlap.
  virtual void prefetch(const std::vector<const Id*>& ids, bool whole) { (void)ids, (void)whole; }
  /// ok with metadata of what is stored, tombstones and expired records included.
  virtual Status lookup(const Id& id, RecordMeta* out) = 0;
  /// Stores a tombstone at version v; same rules as put().
  Status remove(const Id& id, const Version& v, std::string key = {}) {
    return put(Record::make_tombstone(id, v, std::move(key)));
  }
  /// Forgets records for good, leaving no tombstone: each (id, version) whose stored version
  /// is exactly that one (a newer write stays). For tombstones past their grace period and
  /// for copies that merge moved to their new owner; a zero version names whatever is stored
  /// (a record that fails its checksum, whose version cannot be trusted). *erased counts what
  /// went. Durable when it returns, whatever the policy (a crash before that may bring a
  /// record back: harmless, as it is a tombstone past its grace, a copy already held by its
  /// owner, or a corrupt record).
  virtual Status erase(const std::vector<std::pair<Id, Version>>& which, size_t* erased) = 0;
  /// Streams matching records with bounded memory; records written meanwhile may or may not
  /// be seen.
  virtual Status iterate(const IterateOptions& opts, const IterateFn& fn) = 0;
  /// A listing's page (begin and end by value: out->next may be the caller's begin): the metadata
  /// of the about `max` (>= 1) records with the smallest ids in [begin, end], in id order, with
  /// memory bounded by max. Paging on from out->next visits every record stored throughout exactly
  /// once; records written meanwhile may or may not be seen. The default selects with iterate() and
  /// reads each one's metadata.
  virtual Status page(Id begin, Id end, size_t max, Page* out);
  /// Scrub: reads about `max` stored records (tombstones too) from *cursor on, in the
  /// engine's own order, and verifies each one's checksum. *cursor moves on and is 0 again
  /// once every record was visited (start at 0); records written meanwhile may or may not be
  /// checked. The default walks 256 slices of the id space with iterate().
  virtual Status scrub(uint64_t* cursor, size_t max, ScrubStep* out);
  /// Makes every acknowledged write durable now, whatever the policy.
  virtual Status sync() = 0;
  /// Reclaims space now; a no-op for engines that need none.
  virtual Status compact() { return Status::ok(); }
  virtual EngineStats stats() = 0;

 protected:
  /// Whether iterate() visits ids in increasing order (page() then stops early).
  virtual bool iterates_in_order() const { return false; }
};

/// Opens (creating if missing) the engine named by opts.kind in opts.dir. A directory that
/// holds another engine's files or garbage fails with a clear error and is left untouched.
Status open_engine(const EngineOptions& opts, std::unique_ptr<Engine>* out);

/// The engine kinds open_engine() knows.
const std::vector<std::string>& engine_kinds();

}  // namespace apsis::storage
