#include "frontends/auth.hpp"

#include "messages/stream.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace apsis::frontend {

namespace {

constexpr uint32_t free_failures = 5;  ///< from one address, before it is refused for a while
constexpr auto max_cooldown = std::chrono::seconds(60);
/// An address's failures are forgotten after this long without one; a login that succeeds
/// does not forget them, so one valid password cannot reset the count of guesses at another.
constexpr auto forget_after = std::chrono::minutes(15);
constexpr size_t max_tracked = 100000;  ///< addresses remembered (a flood cannot grow it past)

using config::sha256;

}  // namespace

Authenticator::Authenticator(std::vector<config::User> users,
                             std::shared_ptr<RequestMetrics> metrics)
    : metrics_(std::move(metrics)), secret_(32, '\0') {
  RAND_bytes(reinterpret_cast<unsigned char*>(secret_.data()), int(secret_.size()));
  reload(std::move(users));
}

void Authenticator::reload(std::vector<config::User> users) {
  auto list = std::make_shared<const UserList>(std::move(users));
  std::lock_guard<std::mutex> lock(mu_);
  required_ = !list->empty();
  users_ = list;
  kept_.push_back(std::move(list));
  ++generation_;
  verified_.clear();  // a password may have changed
}

const config::User* Authenticator::find(const UserList& users, std::string_view name) {
  for (const auto& u : users)
    if (u.name == name) return &u;
  return nullptr;
}

namespace {

std::string address_of(const std::string& peer) {
  return peer.substr(0, peer.rfind(':'));  // throttled by host, not port
}

}  // namespace

bool Authenticator::throttled(RequestMetrics::Surface surface, const std::string& peer) {
  auto f = failures_.find(address_of(peer));
  if (f == failures_.end() || f->second.until <= std::chrono::steady_clock::now()) return false;
  refused(surface, RequestMetrics::auth_throttled, peer, "a login while throttled");
  return true;
}

void Authenticator::failed(RequestMetrics::Surface surface, const std::string& peer,
                           std::string_view name) {
  if (failures_.size() >= max_tracked) failures_.clear();
  Failures& f = failures_[address_of(peer)];
  const auto now = std::chrono::steady_clock::now();
  if (now - f.last > forget_after) f.count = 0;
  f.last = now;
  if (++f.count > free_failures)
    f.until =
        std::chrono::steady_clock::now() +
        std::min<std::chrono::steady_clock::duration>(
            std::chrono::seconds(1) * (1u << std::min(f.count - free_failures, 6u)), max_cooldown);
  refused(surface, RequestMetrics::auth_wrong_password, peer,
          name.empty() ? std::string("an unknown bearer token")
                       : "a wrong password for user '" + std::string(name.substr(0, 64)) + "'");
}

Authenticator::Outcome Authenticator::login(RequestMetrics::Surface surface,
                                            const std::string& peer, std::string_view name,
                                            std::string_view password, const config::User** user) {
  const std::string digest = sha256(password);
  std::shared_ptr<const UserList> list;
  const config::User* u = nullptr;
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (throttled(surface, peer)) return Outcome::throttled;
    list = users_;
    generation = generation_;
    u = find(*list, name);
    if (u) {
      auto v = verified_.find(u->name);
      if (v != verified_.end() && v->second == digest) return *user = u, Outcome::ok;
    }
  }
  // The slow hash runs outside the lock; an unknown user costs as much as a known one.
  const bool ok = !list->empty() &&
                  config::verify_password(password, u ? u->password : list->front().password) && u;
  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) return failed(surface, peer, name), Outcome::wrong;
  if (generation == generation_) verified_[u->name] = digest;  // not for a list since replaced
  return *user = u, Outcome::ok;
}

Authenticator::Outcome Authenticator::bearer(RequestMetrics::Surface surface,
                                             const std::string& peer, std::string_view token,
                                             const config::User** user) {
  const std::string digest = sha256(token);  // a random token needs no slow hash
  std::lock_guard<std::mutex> lock(mu_);
  if (throttled(surface, peer)) return Outcome::throttled;
  for (const auto& u : *users_)
    for (const auto& t : u.tokens)
      if (CRYPTO_memcmp(t.data(), digest.data(), digest.size()) == 0) {
        return *user = &u, Outcome::ok;
      }
  failed(surface, peer, "");
  return Outcome::wrong;
}

void Authenticator::challenge(std::string_view name, std::string* salt,
                              uint32_t* iterations) const {
  std::string stored;
  const auto list = users();
  if (const config::User* u = find(*list, name);
      u && config::scram_params(u->password, salt, iterations, &stored))
    return;
  *salt = sha256(secret_ + std::string(name)).substr(0, 16);
  *iterations = 100000;
}

Authenticator::Outcome Authenticator::prove(RequestMetrics::Surface surface,
                                            const std::string& peer, std::string_view name,
                                            std::string_view auth_message, std::string_view proof,
                                            const config::User** user) {
  std::lock_guard<std::mutex> lock(mu_);
  if (throttled(surface, peer)) return Outcome::throttled;
  const config::User* u = find(*users_, name);
  std::string salt, stored;
  uint32_t iterations = 0;
  if (!u || !config::scram_params(u->password, &salt, &iterations, &stored) ||
      !config::check_proof(stored, auth_message, proof))
    return failed(surface, peer, name), Outcome::wrong;
  return *user = u, Outcome::ok;
}

void Authenticator::refused(RequestMetrics::Surface surface, RequestMetrics::AuthReason reason,
                            const std::string& peer, const std::string& what) {
  if (metrics_) metrics_->auth_refused(surface, reason);
  log(what + " from " + peer);
}

void Authenticator::log(const std::string& line) {
  std::lock_guard<std::mutex> lock(log_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_log_ < std::chrono::seconds(1)) return void(++unlogged_);
  last_log_ = now;
  spdlog::warn("refused: {}{}", line,
               unlogged_ ? " (and " + std::to_string(unlogged_) + " more since the last line)"
                         : std::string());
  unlogged_ = 0;
}

void refused_handshake(Authenticator* auth, RequestMetrics* metrics,
                       RequestMetrics::Surface surface, const boost::asio::ip::tcp::socket& sock,
                       const boost::system::error_code& ec) {
  if (auth)
    auth->refused(surface, RequestMetrics::auth_tls_handshake, peer_of(sock),
                  "TLS handshake (" + ec.message() + ")");
  else if (metrics)
    metrics->auth_refused(surface, RequestMetrics::auth_tls_handshake);
}

}  // namespace apsis::frontend
