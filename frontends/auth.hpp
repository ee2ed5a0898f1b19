// Logins for every surface (docs/security.md): a user's name and password checked against the
// configured hashes, once per connection (RESP, the binary protocol) or request (REST).
// A password once verified is remembered as its SHA-256, so a client that reconnects does not
// pay the slow hash again; repeated failures from one address are refused for a while, and
// every refusal is counted in the metrics and logged (at most once a second).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "actors/metrics.hpp"
#include "config/users.hpp"

namespace apsis::frontend {

class Authenticator {
 public:
  Authenticator(std::vector<config::User> users, std::shared_ptr<RequestMetrics> metrics);

  /// Whether connections must log in (users are configured).
  bool required() const { return required_.load(std::memory_order_relaxed); }

  /// Takes a new list of users (SIGHUP): later logins and requests check it, and passwords
  /// verified before are checked again. A connection logged in before keeps the grants it
  /// logged in with (the old lists are kept for it) until it closes.
  void reload(std::vector<config::User> users);

  enum class Outcome { ok, wrong, throttled };
  /// Checks a login from `peer` (an address); *user is the user on ok.
  Outcome login(RequestMetrics::Surface surface, const std::string& peer, std::string_view name,
                std::string_view password, const config::User** user);

  /// A REST bearer token (docs/security.md): checked against every user's token hashes, and
  /// counted and throttled as a wrong password when it matches none.
  Outcome bearer(RequestMetrics::Surface surface, const std::string& peer, std::string_view token,
                 const config::User** user);

  /// A login by proof (the binary protocol's, docs/protocol.md), step 1: the user's salt and
  /// iterations; for an unknown user made up, the same each time, so names cannot be probed.
  void challenge(std::string_view name, std::string* salt, uint32_t* iterations) const;
  /// Step 2: whether proof answers auth_message for the user, as login() counts and throttles.
  Outcome prove(RequestMetrics::Surface surface, const std::string& peer, std::string_view name,
                std::string_view auth_message, std::string_view proof, const config::User** user);

  /// Counts (and logs) a refusal: no login, or an operation the user may not do.
  void refused(RequestMetrics::Surface surface, RequestMetrics::AuthReason reason,
               const std::string& peer, const std::string& what);

 private:
  struct Failures {
    uint32_t count = 0;
    std::chrono::steady_clock::time_point until;  ///< refused until then
    std::chrono::steady_clock::time_point last;   ///< the latest failure
  };
  using UserList = std::vector<config::User>;
  static const config::User* find(const UserList& users, std::string_view name);
  std::shared_ptr<const UserList> users() const {
    std::lock_guard<std::mutex> lock(mu_);
    return users_;
  }
  /// Under mu_: whether the address is refused for now (counted as such).
  bool throttled(RequestMetrics::Surface surface, const std::string& peer);
  /// Under mu_: a failed login, counted; the address's cooldown grows past free failures.
  void failed(RequestMetrics::Surface surface, const std::string& peer, std::string_view name);
  void log(const std::string& line);

  std::shared_ptr<RequestMetrics> metrics_;
  mutable std::mutex mu_;
  std::shared_ptr<const UserList> users_;              ///< the current list, under mu_
  std::vector<std::shared_ptr<const UserList>> kept_;  ///< every list: connections point in
  uint64_t generation_ = 0;                            ///< of users_, under mu_
  std::atomic<bool> required_{false};
  std::unordered_map<std::string, std::string> verified_;  ///< user -> SHA-256 of its password
  std::unordered_map<std::string, Failures> failures_;     ///< by peer address
  std::mutex log_mu_;
  std::chrono::steady_clock::time_point last_log_;
  std::string secret_;  ///< made-up salts for unknown users are keyed by it
  uint64_t unlogged_ = 0;
};

/// Counts (and, with an authenticator, logs) a client that failed the TLS handshake: it
/// spoke no TLS, or its certificate is not one the port trusts.
void refused_handshake(Authenticator* auth, RequestMetrics* metrics,
                       RequestMetrics::Surface surface, const boost::asio::ip::tcp::socket& sock,
                       const boost::system::error_code& ec);

}  // namespace apsis::frontend
