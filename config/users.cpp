#include "config/users.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>

#include "messages/base64.hpp"
#include "messages/listing.hpp"

namespace apsis::config {

namespace {

constexpr std::string_view scheme = "scram-sha256";
constexpr size_t salt_bytes = 16, hash_bytes = 32;
constexpr uint32_t min_iterations = 10000, max_iterations = 10000000;

struct Parsed {
  uint32_t iterations = 0;
  std::string salt, hash;
};

bool parse(std::string_view text, Parsed* out, std::string* why) {
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    const size_t end = i < 3 ? text.find('$') : text.size();
    if (end == std::string_view::npos)
      return *why = "expected " + std::string(scheme) + "$ITERATIONS$SALT$HASH", false;
    parts[i] = text.substr(0, end);
    text.remove_prefix(std::min(text.size(), end + 1));
  }
  if (parts[0] != scheme) return *why = "expected a hash starting " + std::string(scheme), false;
  auto [end, ec] =
      std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), out->iterations);
  if (ec != std::errc() || end != parts[1].data() + parts[1].size() ||
      out->iterations < min_iterations || out->iterations > max_iterations)
    return *why = "iterations must be " + std::to_string(min_iterations) + "-" +
                  std::to_string(max_iterations),
           false;
  if (!unbase64(parts[2], &out->salt) || out->salt.size() < salt_bytes)
    return *why = "the salt must be base64 of at least 16 bytes", false;
  if (!unbase64(parts[3], &out->hash) || out->hash.size() != hash_bytes)
    return *why = "the hash must be base64 of 32 bytes", false;
  return true;
}

std::string hmac(std::string_view key, std::string_view text) {
  std::string out(hash_bytes, '\0');
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(),
       reinterpret_cast<unsigned char*>(out.data()), &n);
  return out;
}

/// SCRAM's ClientKey: HMAC(PBKDF2(password, salt, iterations), "Client Key").
std::string client_key(std::string_view password, const std::string& salt, uint32_t iterations) {
  std::string salted(hash_bytes, '\0');
  PKCS5_PBKDF2_HMAC(password.data(), int(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()), int(salt.size()),
                    int(iterations), EVP_sha256(), int(salted.size()),
                    reinterpret_cast<unsigned char*>(salted.data()));
  return hmac(salted, "Client Key");
}

/// SCRAM-SHA-256's StoredKey (RFC 5802): SHA-256 of the ClientKey. What is stored cannot be
/// replayed as the password, and a challenge-response login can check a proof against it
/// without the password crossing the wire.
std::string derive(std::string_view password, const std::string& salt, uint32_t iterations) {
  return sha256(client_key(password, salt, iterations));
}

std::string xor_of(std::string a, std::string_view b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) a[i] = char(a[i] ^ b[i]);
  return a;
}

}  // namespace

uint8_t permission_named(std::string_view name) {
  return name == "read"        ? perm_read
         : name == "write"     ? perm_write
         : name == "admin"     ? perm_admin
         : name == "replicate" ? perm_replicate
                               : 0;
}

std::string permission_names(uint8_t perms) {
  std::string out;
  for (auto [bit, name] : {std::pair{perm_read, "read"},
                           {perm_write, "write"},
                           {perm_admin, "admin"},
                           {perm_replicate, "replicate"}})
    if (perms & bit) out += (out.empty() ? "" : ",") + std::string(name);
  return out.empty() ? "none" : out;
}

uint8_t User::on(std::string_view ns) const {
  uint8_t out = 0;
  for (const auto& g : grants)
    if (glob_match(g.pattern, ns)) out |= g.perms;
  return out;
}

uint8_t User::global() const {
  uint8_t out = 0;
  for (const auto& g : grants)
    if (g.pattern == "*") out |= g.perms;
  return out;
}

std::string hash_password(std::string_view password, uint32_t iterations) {
  std::string salt(salt_bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), int(salt.size()));
  return std::string(scheme) + "$" + std::to_string(iterations) + "$" + base64(salt) + "$" +
         base64(derive(password, salt, iterations));
}

bool valid_hash(std::string_view text, std::string* why) {
  Parsed p;
  return parse(text, &p, why);
}

bool verify_password(std::string_view password, std::string_view hash) {
  Parsed p;
  std::string why;
  if (!parse(hash, &p, &why)) return false;
  const std::string got = derive(password, p.salt, p.iterations);
  return CRYPTO_memcmp(got.data(), p.hash.data(), hash_bytes) == 0;
}

bool scram_params(std::string_view hash, std::string* salt, uint32_t* iterations,
                  std::string* stored_key) {
  Parsed p;
  std::string why;
  if (!parse(hash, &p, &why)) return false;
  *salt = std::move(p.salt);
  *iterations = p.iterations;
  *stored_key = std::move(p.hash);
  return true;
}

std::string client_proof(std::string_view password, const std::string& salt, uint32_t iterations,
                         std::string_view auth_message) {
  const std::string key = client_key(password, salt, iterations);
  return xor_of(key, hmac(sha256(key), auth_message));
}

bool check_proof(const std::string& stored_key, std::string_view auth_message,
                 std::string_view proof) {
  if (proof.size() != hash_bytes || stored_key.size() != hash_bytes) return false;
  const std::string key = xor_of(std::string(proof), hmac(stored_key, auth_message));
  return CRYPTO_memcmp(sha256(key).data(), stored_key.data(), hash_bytes) == 0;
}

std::string sha256(std::string_view text) {
  std::string out(hash_bytes, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

namespace {
const char* const hex_digits = "0123456789abcdef";
}  // namespace

std::string new_token() {
  unsigned char raw[32];
  RAND_bytes(raw, sizeof raw);
  std::string t = "apsis_";
  for (unsigned char c : raw) t += hex_digits[c >> 4], t += hex_digits[c & 15];
  return t;
}

std::string token_hash(std::string_view token) {
  std::string line = "sha256:";
  for (unsigned char c : sha256(token)) line += hex_digits[c >> 4], line += hex_digits[c & 15];
  return line;
}

bool parse_token_hash(std::string_view line, std::string* digest, std::string* why) {
  constexpr std::string_view prefix = "sha256:";
  if (line.substr(0, prefix.size()) != prefix || line.size() != prefix.size() + 2 * hash_bytes)
    return *why = "expected sha256: and 64 hex digits", false;
  digest->clear();
  for (size_t i = prefix.size(); i < line.size(); i += 2) {
    auto nibble = [](char c) {
      return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    int hi = nibble(line[i]), lo = nibble(line[i + 1]);
    if (hi < 0 || lo < 0) return *why = "expected sha256: and 64 lowercase hex digits", false;
    *digest += char(hi << 4 | lo);
  }
  return true;
}

}  // namespace apsis::config
