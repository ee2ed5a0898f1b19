// Users and what they may do (docs/security.md): a name, a salted slow hash of the password
// (SCRAM-SHA-256's StoredKey over PBKDF2-HMAC-SHA256, never the password itself) and grants of
// permissions on namespace patterns. The node config lists them as [[user]] tables; `apsis passwd`
// makes the hash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apsis::config {

/// What a grant allows, as bits.
enum permission : uint8_t {
  perm_read = 1,       ///< reads and listings
  perm_write = 2,      ///< writes, deletes, changes, locks
  perm_admin = 4,      ///< namespaces; on "*": recover, cluster commands, backend control
  perm_replicate = 8,  ///< versioned replica writes (a client that coordinates itself)
};

/// "read", "write", "admin" or "replicate"; 0 for anything else.
uint8_t permission_named(std::string_view name);
/// "read,write" for perm_read | perm_write; "none" for 0.
std::string permission_names(uint8_t perms);

struct Grant {
  std::string pattern;  ///< a Redis glob on namespace names ("*": every one)
  uint8_t perms = 0;
};

struct User {
  std::string name;
  std::string password;  ///< the hash, as hash_password() writes it
  std::vector<Grant> grants;
  /// REST bearer tokens, each as its SHA-256 (raw bytes): the token itself is never kept.
  std::vector<std::string> tokens;

  /// What the user may do in namespace ns: the union of the grants whose pattern matches.
  uint8_t on(std::string_view ns) const;
  /// What the user may do to the node and the cluster: its grants on the pattern "*" itself.
  uint8_t global() const;
};

/// The password's SCRAM-SHA-256 StoredKey with a fresh 16-byte salt:
/// "scram-sha256$ITERATIONS$SALT$STOREDKEY" (salt and key in base64).
std::string hash_password(std::string_view password, uint32_t iterations = 100000);
/// Whether text is a hash as hash_password() writes it (why not, in *why).
bool valid_hash(std::string_view text, std::string* why);
/// Whether password is the one hashed (compared in constant time).
bool verify_password(std::string_view password, std::string_view hash);

/// SHA-256 of text, raw bytes.
std::string sha256(std::string_view text);

/// A new bearer token (32 random bytes as 64 hex digits, prefixed "apsis_").
std::string new_token();
/// A token's line for a [[user]] table's tokens: "sha256:" and its SHA-256 in hex.
std::string token_hash(std::string_view token);
/// The raw SHA-256 in a "sha256:<64 hex>" line; false (why in *why) when it is not one.
bool parse_token_hash(std::string_view line, std::string* digest, std::string* why);

/// A hash's parts for a challenge-response login (the binary protocol's, docs/protocol.md);
/// false for a malformed hash.
bool scram_params(std::string_view hash, std::string* salt, uint32_t* iterations,
                  std::string* stored_key);
/// The client's proof for auth_message: ClientKey XOR HMAC(StoredKey, auth_message).
std::string client_proof(std::string_view password, const std::string& salt, uint32_t iterations,
                         std::string_view auth_message);
/// Whether proof shows the password behind stored_key (RFC 5802's check).
bool check_proof(const std::string& stored_key, std::string_view auth_message,
                 std::string_view proof);

}  // namespace apsis::config
