#include "frontends/auth.hpp"

#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace apsis::frontend {

namespace {

constexpr uint32_t free_failures = 5;  ///< from one address, before it is refused for a while
constexpr auto max_cooldown = std::chrono::seconds(60);
constexpr size_t max_tracked = 100000;  ///< addresses remembered (a flood cannot grow it past)

std::string sha256(std::string_view text) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

}  // namespace

Authenticator::Authenticator(std::vector<config::User> users,
                             std::shared_ptr<RequestMetrics> metrics)
    : users_(std::move(users)), metrics_(std::move(metrics)) {}

const config::User* Authenticator::find(std::string_view name) const {
  for (const auto& u : users_)
    if (u.name == name) return &u;
  return nullptr;
}

Authenticator::Outcome Authenticator::login(RequestMetrics::Surface surface,
                                            const std::string& peer, std::string_view name,
                                            std::string_view password, const config::User** user) {
  const auto now = std::chrono::steady_clock::now();
  const std::string digest = sha256(password);
  const std::string address = peer.substr(0, peer.rfind(':'));  // throttled by host, not port
  const config::User* u = find(name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto f = failures_.find(address);
    if (f != failures_.end() && f->second.until > now) {
      refused(surface, RequestMetrics::auth_throttled, peer, "a login while throttled");
      return Outcome::throttled;
    }
    if (u) {
      auto v = verified_.find(u->name);
      if (v != verified_.end() && v->second == digest) return *user = u, Outcome::ok;
    }
  }
  // The slow hash runs outside the lock; an unknown user costs as much as a known one.
  const bool ok = config::verify_password(password, u ? u->password : users_.front().password) && u;
  std::lock_guard<std::mutex> lock(mu_);
  if (ok) {
    verified_[u->name] = digest;
    failures_.erase(address);
    return *user = u, Outcome::ok;
  }
  if (failures_.size() >= max_tracked) failures_.clear();
  Failures& f = failures_[address];
  if (++f.count > free_failures)
    f.until = now + std::min<std::chrono::steady_clock::duration>(
                        std::chrono::seconds(1) * (1u << std::min(f.count - free_failures, 6u)),
                        max_cooldown);
  refused(surface, RequestMetrics::auth_wrong_password, peer,
          "a wrong password for user '" + std::string(name.substr(0, 64)) + "'");
  return Outcome::wrong;
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

}  // namespace apsis::frontend
