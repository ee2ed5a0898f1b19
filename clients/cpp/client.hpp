// apsis::Client: a blocking client of the binary protocol (docs/protocol.md), a wrapper
// around the CLIENT actor (client_actor.hpp) on an actor system of its own. One connection
// (with `route`, one more per key owner it talks to); every call sends one request and
// waits for its response, with a timeout. A lease taken
// with lock() belongs to this connection: closing it releases the lease.
// Thread safety: none; use one Client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "messages/frame.hpp"

namespace apsis {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7380;
  std::string ns = "default";
  std::chrono::milliseconds timeout{10000};  // above a node's default replication timeout
  std::optional<success_policy> policy;      ///< for writes; unset: the node's default
  std::optional<success_policy> read;        ///< for gets and lookups; unset: the node's default
  bool latest = false;                       ///< reads ask every group; the newest wins (read all)
  std::vector<uint32_t> groups;              ///< key requests ask only these groups; empty: all
  /// Fetch the cluster's route table at connect and send each key's request straight to its
  /// owner in the first group (which coordinates it), instead of through the node connected
  /// to. A node of its own, or an owner that cannot be reached, gets it as before.
  bool route = false;
  /// Coordinate writes here (implies route): version each put and del with the client's own
  /// clock, send it to the key's owner in every group at once (the binary protocol's replica
  /// opcode), collect one entry per replica and apply `policy` (quorum when unset), as a
  /// node's coordinator would. Reads go as with route.
  bool coordinate = false;
  /// A login after the hello, when user is set (a node with users needs one): a proof of the
  /// password, which itself never crosses the wire (docs/protocol.md, login).
  std::string user, password;
  /// TLS, for a node whose binary port speaks it (tls.binary): the CA that signed the node's
  /// certificate (which must name `host`); with cert and key, the client certificate that a
  /// node with tls.client_ca asks for. Empty tls_ca: plain TCP.
  std::string tls_ca, tls_cert, tls_key;
};

struct PutOptions {
  op_cond cond = op_cond::none;
  storage::Version expected;  ///< for op_cond::if_version
  uint64_t expiry_ms = 0;     ///< absolute Unix ms; 0 = none
  uint32_t user_flags = 0;
  uint64_t fence = 0;  ///< a lease's token, or 0
};

class Client {
 public:
  Client();
  ~Client();
  /// Connects and negotiates the protocol version; false with *error set.
  bool connect(const ClientOptions& opts, std::string* error);

  /// Each returns false only when the exchange itself failed (connection, timeout,
  /// protocol); the operation's own outcome is in out->status.
  bool get(const std::string& key, wire::Response* out, std::string* error);
  bool lookup(const std::string& key, wire::Response* out, std::string* error);
  bool put(const std::string& key, const std::string& data, const std::string& json,
           const PutOptions& opts, wire::Response* out, std::string* error);
  bool del(const std::string& key, const PutOptions& opts, wire::Response* out, std::string* error);
  bool lock(const std::string& key, uint32_t lease_ms, wire::Response* out, std::string* error);
  bool unlock(const std::string& key, uint64_t token, wire::Response* out, std::string* error);
  bool stat(wire::Response* out, std::string* error);
  /// A value computed from the stored one by the key's owner in one group (value_change:
  /// incr by `by`, incr_float by `arg`, append `arg`, setrange `arg` at `by`, merge_patch the
  /// JSON part with `arg`); out holds the record after it (data, or json for a patch).
  bool change(const std::string& key, value_change::kind_t kind, int64_t by, const std::string& arg,
              wire::Response* out, std::string* error);
  /// Uploads a large value from `in` in chunks of 1 MiB (eight in flight), then commits it:
  /// the value becomes visible only then. progress(bytes sent) after each window. out: the
  /// commit's response.
  bool upload(const std::string& key, std::istream& in,
              const std::function<void(uint64_t)>& progress, wire::Response* out,
              std::string* error);
  /// Reads bytes [offset, offset + length) of a value, plain or large (at most 16 MiB a call);
  /// out->total is the value's size.
  bool read(const std::string& key, uint64_t offset, uint64_t length, wire::Response* out,
            std::string* error);
  /// Writes a whole value, plain or large, to `out` in reads of 16 MiB; progress(bytes so
  /// far, total) after each. False with *error when a read failed (out->status says how).
  bool download(const std::string& key, std::ostream& to,
                const std::function<void(uint64_t, uint64_t)>& progress, wire::Response* out,
                std::string* error);
  /// Lists the namespace's keys (q: cursor, match, limit per page, payload, tombstones,
  /// version as since), page after page, each record through `each` until it returns false.
  /// False when a page failed; memory is one page's.
  bool list(wire::Request q, const std::function<bool(const listed_record&)>& each,
            std::string* error);
  /// Any request (ns filled in from the options when empty).
  bool call(wire::Request q, wire::Response* out, std::string* error);
  /// Many requests in flight at once (a bulk load): every response, in request order.
  bool call_all(std::vector<wire::Request> qs, std::vector<wire::Response>* out,
                std::string* error);
  /// With `route`: the node the last keyed request went to (empty: the one connected to).
  const std::string& last_node() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace apsis
