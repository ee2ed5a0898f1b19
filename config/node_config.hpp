// NodeConfig: everything a node reads from its TOML config (docs/config.md lists every
// key). Loading validates all of it: an unknown key, a wrong type or a value out of range is
// an error naming the file, line, key and reason; nothing falls back silently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/users.hpp"
#include "messages/types.hpp"
#include "storage/engine.hpp"

namespace apsis::config {

struct BackendConfig {
  uint32_t id = 1;
  uint32_t group = 1;
  std::string engine = "blob";
  std::string dir;  ///< absolute, or relative to NodeConfig::data_dir
  uint32_t shards = 4;
  storage::SyncPolicy fsync;
};

/// [tls]: which ports speak TLS, with which certificate, and whom they trust
/// (docs/security.md). Paths are PEM files, relative to the working directory.
struct TlsConfig {
  std::string cert;       ///< this node's certificate chain, shown on every TLS port
  std::string key;        ///< its private key
  std::string ca;         ///< the cluster's CA: other nodes' certificates must be signed by it
  std::string client_ca;  ///< when set, clients of a TLS port need a certificate signed by it
  bool resp = false, binary = false, http = false, cluster = false;
  bool any_client_port() const { return resp || binary || http; }
};

struct NodeConfig {
  std::string name;
  uint64_t node_id = 1;
  std::string data_dir;
  std::string bind;
  uint16_t resp_port = 0;     ///< 0 = an ephemeral port, printed at start
  uint16_t binary_port = 0;   ///< the binary protocol (docs/protocol.md); 0 = ephemeral
  uint16_t http_port = 8380;  ///< REST, health, readiness, stats and metrics; 0 = ephemeral
  /// HTTP: how long a client has to send a request (an idle keep-alive connection, to send
  /// the next) and to take its answer.
  uint64_t request_timeout_ms = 10000;
  /// RESP and binary: a connection with nothing in flight that sends nothing for this long
  /// is closed; 0 = never (as Redis's `timeout 0`).
  uint64_t idle_timeout_ms = 0;
  storage::Limits limits;
  success_policy policy = success_policy::quorum;       ///< writes
  success_policy read_policy = success_policy::quorum;  ///< reads (quorum + quorum overlap)
  read_order_kind read_order = read_order_kind::session;
  uint32_t timeout_ms = 5000;
  uint32_t scheduler_threads = 2;
  uint32_t io_threads = 2;
  /// CAF's scheduler: "sharing" (one queue, idle threads sleep) or "stealing" (per-thread
  /// queues, idle threads poll).
  std::string scheduler = "sharing";
  uint16_t cluster_port = 0;  ///< 0: a node of its own, no cluster
  std::vector<std::pair<std::string, uint16_t>> seeds;
  std::string cookie;
  uint32_t points = 1024;  ///< ring points a new backend derives from its seed
  uint32_t heartbeat_ms = 500;
  uint32_t anti_entropy_ms = 10000;   ///< between anti-entropy rounds
  uint32_t recovery_rate = 20000;     ///< records/s that anti-entropy and merge push at most
  uint32_t merge_every_ms = 60000;    ///< between merge passes (keys to new owners, purge)
  uint32_t scrub_rate = 1000;         ///< records/s the scrub reads and verifies (0: no scrub)
  uint32_t scrub_pause_ms = 3600000;  ///< before each scrub round
  /// A tombstone older than this is forgotten: longer than any replica stays away.
  uint64_t tombstone_grace_ms = 604800000;
  /// Large values: between sweeps of the chunk collector (0: none), and how long an upload
  /// may stay quiet before its uncommitted chunks are collected.
  uint64_t collect_every_ms = 600000;
  uint64_t upload_idle_ms = 86400000;
  std::string log_level;
  std::vector<BackendConfig> backends;
  /// Who may connect ([[user]]); none: anyone who reaches a port (only on a loopback bind,
  /// unless allow_unprotected).
  std::vector<User> users;
  bool allow_unprotected = false;
  TlsConfig tls;

  /// The backend's directory, resolved against data_dir.
  std::string backend_dir(const BackendConfig& b) const;
};

/// Whether a bind address reaches only this machine (127.0.0.0/8, ::1, localhost).
bool loopback(const std::string& bind);
/// Why a node must not start as configured (bound past loopback with no users, and the risk
/// not accepted), naming the keys to set; empty when it may.
std::string unprotected(const NodeConfig& c);

/// The embedded default: one node on 127.0.0.1, one group, one blob backend under ./data.
const std::string& default_config_text();

/// Parses and validates TOML text, then applies overrides ("section.key=value", the value in
/// TOML syntax or a bare string). file names the source in errors.
bool load_config(const std::string& text, const std::string& file,
                 const std::vector<std::string>& overrides, NodeConfig* out, std::string* error);

/// Reads a file (or the embedded default when path is empty) and loads it.
bool load_config_file(const std::string& path, const std::vector<std::string>& overrides,
                      NodeConfig* out, std::string* error);

}  // namespace apsis::config
