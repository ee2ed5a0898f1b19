// Users: password hashes (made, verified, refused when malformed) and what grants allow.
#include "config/users.hpp"

#include <gtest/gtest.h>

#include "config/node_config.hpp"

namespace apsis::config {
namespace {

TEST(Users, AHashVerifiesItsPasswordOnly) {
  const std::string h = hash_password("s3cret", 10000);
  EXPECT_EQ(h.rfind("scram-sha256$10000$", 0), 0u) << h;
  EXPECT_EQ(h.find("s3cret"), std::string::npos);
  EXPECT_TRUE(verify_password("s3cret", h));
  EXPECT_FALSE(verify_password("s3cret ", h));
  EXPECT_FALSE(verify_password("", h));
  EXPECT_NE(hash_password("s3cret", 10000), h) << "a fresh salt each time";
}

TEST(Users, AChallengeProofShowsThePasswordWithoutCarryingIt) {
  const std::string h = hash_password("s3cret", 10000);
  std::string salt, stored;
  uint32_t iterations = 0;
  ASSERT_TRUE(scram_params(h, &salt, &iterations, &stored));
  EXPECT_EQ(iterations, 10000u);
  const std::string message = "alice,client-nonce,server-nonce";
  const std::string proof = client_proof("s3cret", salt, iterations, message);
  EXPECT_EQ(proof.size(), 32u);
  EXPECT_EQ(proof.find("s3cret"), std::string::npos);
  EXPECT_TRUE(check_proof(stored, message, proof));
  EXPECT_FALSE(check_proof(stored, message + "x", proof)) << "a proof is for one challenge";
  EXPECT_FALSE(check_proof(stored, message, client_proof("guess", salt, iterations, message)));
  EXPECT_FALSE(check_proof(stored, message, proof.substr(1)));
  EXPECT_FALSE(check_proof(stored, message, stored)) << "the stored key is not a proof";
}

TEST(Users, AMalformedHashIsRefusedWithItsReason) {
  std::string why;
  const std::string good = hash_password("x", 10000);
  EXPECT_TRUE(valid_hash(good, &why)) << why;
  const std::string salt_and_hash = good.substr(good.find('$', 14));
  for (auto [text, reason] : std::vector<std::pair<std::string, std::string>>{
           {"plaintext", "expected scram-sha256$ITERATIONS$SALT$HASH"},
           {"md5$1$2$3", "expected a hash starting scram-sha256"},
           {"scram-sha256$99" + salt_and_hash, "iterations must be 10000-10000000"},
           {"scram-sha256$10000$AAAA$" + good.substr(good.rfind('$') + 1),
            "the salt must be base64 of at least 16 bytes"},
           {good.substr(0, good.rfind('$')) + "$AAAA", "the hash must be base64 of 32 bytes"}}) {
    EXPECT_FALSE(valid_hash(text, &why)) << text;
    EXPECT_EQ(why, reason) << text;
    EXPECT_FALSE(verify_password("x", text));
  }
}

TEST(Users, GrantsAddUpByNamespacePattern) {
  User u{
      "alice", "", {{"app*", perm_read | perm_write}, {"*", perm_read}, {"ops", perm_admin}}, {}};
  EXPECT_EQ(u.on("app1"), perm_read | perm_write);
  EXPECT_EQ(u.on("default"), perm_read);
  EXPECT_EQ(u.on("ops"), perm_read | perm_admin);
  EXPECT_EQ(u.global(), perm_read) << "only the grant on \"*\" itself is global";
  EXPECT_EQ(permission_names(u.on("ops")), "read,admin");
  EXPECT_EQ(permission_names(0), "none");
  EXPECT_EQ(permission_named("replicate"), perm_replicate);
  EXPECT_EQ(permission_named("root"), 0);
}

TEST(Users, TheConfigListsUsersAndRefusesWhatIsWrong) {
  const std::string hash = hash_password("pw", 10000);
  const std::string backend = "\n[[backend]]\ndir = \"b1\"\n";
  NodeConfig c;
  std::string error;
  ASSERT_TRUE(load_config("[[user]]\nname = \"alice\"\npassword = \"" + hash +
                              "\"\npermissions = { \"app*\" = [\"read\", \"write\"] }\n" + backend,
                          "node.toml", {}, &c, &error))
      << error;
  ASSERT_EQ(c.users.size(), 1u);
  EXPECT_EQ(c.users[0].on("app2"), perm_read | perm_write);
  for (auto [text, reason] : std::vector<std::pair<std::string, std::string>>{
           {"[[user]]\nname = \"bob\"\npassword = \"hunter2\"\n",
            "node.toml:3: user.password: expected scram-sha256$ITERATIONS$SALT$HASH (a hash "
            "made by `apsis passwd`, never the password itself)"},
           {"[[user]]\nname = \"b b\"\npassword = \"" + hash + "\"\n",
            "node.toml:2: user.name: 1-64 of [A-Za-z0-9_.-@] expected"},
           {"[[user]]\nname = \"b\"\npassword = \"" + hash +
                "\"\npermissions = { \"*\" = [\"root\"] }\n",
            "node.toml:4: user.permissions.*: expected read, write, admin or replicate"},
           {"[[user]]\nname = \"b\"\npassword = \"" + hash + "\"\n[[user]]\nname = \"b\"\n" +
                "password = \"" + hash + "\"\n",
            "node.toml:5: user.name: 'b' is listed twice"},
           {"[[user]]\nname = \"b\"\npasswd = \"x\"\n",
            "node.toml:3: user.passwd: unknown key (expected one of: name, password, "
            "permissions, tokens)"}}) {
    EXPECT_FALSE(load_config(text + backend, "node.toml", {}, &c, &error)) << text;
    EXPECT_EQ(error, reason);
  }
}

TEST(Users, ANodeBoundPastLoopbackNeedsUsersOrTheRiskAccepted) {
  NodeConfig c;
  c.bind = "127.0.0.1";
  EXPECT_EQ(unprotected(c), "");
  c.bind = "0.0.0.0";
  EXPECT_NE(unprotected(c).find("network.bind = \"0.0.0.0\" reaches other machines"),
            std::string::npos);
  EXPECT_NE(unprotected(c).find("security.allow_unprotected = true"), std::string::npos);
  c.allow_unprotected = true;
  EXPECT_EQ(unprotected(c), "");
  c.allow_unprotected = false;
  c.users.push_back(User{"a", hash_password("pw", 10000), {}, {}});
  EXPECT_EQ(unprotected(c), "");
  // A cluster port in clear is refused past loopback too, where anyone with the cookie joins.
  c.cluster_port = 7000;
  EXPECT_NE(unprotected(c).find("set tls.cluster with tls.ca"), std::string::npos);
  c.tls.cluster = true;
  EXPECT_EQ(unprotected(c), "");
}

TEST(Users, ClientCertificatesOnEveryPortStandInForUsers) {
  NodeConfig c;
  c.bind = "0.0.0.0";
  c.tls.client_ca = "client-ca.crt";
  c.tls.resp = c.tls.binary = true;
  EXPECT_NE(unprotected(c), "");  // the HTTP port would still take anyone
  c.tls.http = true;
  EXPECT_EQ(unprotected(c), "");
}

TEST(Users, ATokenIsKeptOnlyAsItsHash) {
  const std::string t = new_token();
  EXPECT_EQ(t.size(), 6u + 64u);
  EXPECT_NE(t, new_token());
  const std::string line = token_hash(t);
  std::string digest, why;
  ASSERT_TRUE(parse_token_hash(line, &digest, &why)) << why;
  EXPECT_EQ(digest, sha256(t));
  EXPECT_EQ(line.find(t.substr(6)), std::string::npos);
  for (const std::string& bad : {t, std::string("sha256:abc"), "sha256:" + std::string(64, 'G')})
    EXPECT_FALSE(parse_token_hash(bad, &digest, &why)) << bad;
  NodeConfig c;
  std::string error;
  const std::string user =
      "[[backend]]\nengine = \"memory\"\n[[user]]\nname = \"ci\"\npassword = \"" +
      hash_password("pw", 10000) + "\"\ntokens = [\"";
  ASSERT_TRUE(load_config(user + line + "\"]\n", "node.toml", {}, &c, &error)) << error;
  ASSERT_EQ(c.users.at(0).tokens.size(), 1u);
  EXPECT_EQ(c.users[0].tokens[0], sha256(t));
  EXPECT_FALSE(load_config(user + t + "\"]\n", "node.toml", {}, &c, &error));
  EXPECT_EQ(error,
            "node.toml:6: user.tokens: expected sha256: and 64 hex digits (a hash made by "
            "`apsis token`, never the token itself)");
}

TEST(Users, TlsNeedsItsFilesAndAPortToServe) {
  NodeConfig c;
  std::string error;
  const std::string backend = "[[backend]]\nengine = \"memory\"\n";
  for (const auto& [text, reason] : std::vector<std::pair<std::string, std::string>>{
           {"[tls]\nresp = true\n",
            "node.toml:1: tls.cert: a port that speaks TLS needs the node's certificate and key "
            "(`apsis certs init` makes them)"},
           {"[tls]\ncert = \"a.crt\"\nhttp = true\n",
            "node.toml:1: tls.key: a port that speaks TLS needs the node's certificate and key "
            "(`apsis certs init` makes them)"},
           {"[tls]\ncert = \"a\"\nkey = \"b\"\nresp = \"yes\"\n",
            "node.toml:4: tls.resp: expected true or false"},
           {"[tls]\ncert = \"a\"\nkey = \"b\"\nclient_ca = \"c\"\n",
            "node.toml:4: tls.client_ca: client certificates are asked for only on TLS ports: "
            "set tls.resp, tls.binary or tls.http"},
           {"[cluster]\nport = 7000\ncookie = \"12345678\"\n[tls]\ncert = \"a\"\nkey = "
            "\"b\"\ncluster = true\n",
            "node.toml:4: tls.ca: tls.cluster needs the cluster's CA, which signs every node's "
            "certificate"},
           {"[tls]\ncert = \"a\"\nkey = \"b\"\nca = \"c\"\ncluster = true\n",
            "node.toml:5: tls.cluster: the node has no cluster (cluster.port, cluster.seeds)"},
           {"[tls]\ncrt = \"a\"\n",
            "node.toml:2: tls.crt: unknown key (expected one of: cert, key, ca, client_ca, resp, "
            "binary, http, cluster)"}}) {
    EXPECT_FALSE(load_config(text + backend, "node.toml", {}, &c, &error)) << text;
    EXPECT_EQ(error, reason);
  }
  ASSERT_TRUE(load_config("[tls]\ncert = \"n.crt\"\nkey = \"n.key\"\nhttp = true\n" + backend,
                          "node.toml", {}, &c, &error))
      << error;
  EXPECT_TRUE(c.tls.http);
  EXPECT_FALSE(c.tls.resp);
  EXPECT_EQ(c.tls.cert, "n.crt");
}

}  // namespace
}  // namespace apsis::config
