#include "config/node_config.hpp"

#include <gtest/gtest.h>

namespace apsis::config {
namespace {

std::string load_error(const std::string& text, std::vector<std::string> overrides = {}) {
  NodeConfig c;
  std::string error;
  EXPECT_FALSE(load_config(text, "node.toml", overrides, &c, &error)) << "accepted:\n" << text;
  return error;
}

const std::string backend = "\n[[backend]]\ndir = \"b1\"\n";

// Found by the fuzzer: a table header that starts with no key is a parse error, not a crash.
TEST(NodeConfig, ATableHeaderWithoutAKeyIsAnError) {
  EXPECT_EQ(load_error("[("),
            "node.toml:1: Error while parsing key: expected bare key starting character or "
            "string delimiter, saw '('");
}

TEST(NodeConfig, TheEmbeddedDefaultIsOneLocalNodeWithOneBlobBackend) {
  NodeConfig c;
  std::string error;
  ASSERT_TRUE(load_config_file("", {}, &c, &error)) << error;
  EXPECT_EQ(c.bind, "127.0.0.1");
  EXPECT_EQ(c.resp_port, 6380);
  EXPECT_EQ(c.binary_port, 7380);
  EXPECT_EQ(c.data_dir, "./data");
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].engine, "blob");
  EXPECT_EQ(c.backends[0].group, 1u);
  EXPECT_EQ(c.backend_dir(c.backends[0]), "./data/backend-1");
  EXPECT_EQ(c.collect_every_ms, 600000u);
  EXPECT_EQ(c.upload_idle_ms, 86400000u);
}

TEST(NodeConfig, AnUnknownKeyIsNamedWithItsLine) {
  std::string e = load_error("[node]\nname = \"a\"\nnmae = \"typo\"\n" + backend);
  EXPECT_NE(e.find("node.toml:3: node.nmae: unknown key"), std::string::npos) << e;
  e = load_error("[nodes]\n" + backend);
  EXPECT_NE(e.find("nodes: unknown key"), std::string::npos) << e;
}

TEST(NodeConfig, AWrongTypeOrRangeIsAnErrorNotADefault) {
  std::string e = load_error("[network]\nresp_port = \"6380\"\n" + backend);
  EXPECT_NE(load_error("[network]\nbinary_port = -1\n" + backend).find("network.binary_port"),
            std::string::npos);
  EXPECT_NE(e.find("node.toml:2: network.resp_port: expected an integer"), std::string::npos) << e;
  e = load_error("[network]\nresp_port = 70000\n" + backend);
  EXPECT_NE(e.find("must be between 0 and 65535, got 70000"), std::string::npos) << e;
  e = load_error("[[backend]]\ndir = \"b\"\nfsync = \"sometimes\"\n");
  EXPECT_NE(e.find("node.toml:3: backend.fsync: expected always, never or interval"),
            std::string::npos)
      << e;
  e = load_error("[replication]\npolicy = \"most\"\n" + backend);
  EXPECT_NE(e.find("replication.policy: expected one, quorum or all"), std::string::npos) << e;
  e = load_error("[large]\nupload_idle_ms = 10\n" + backend);
  EXPECT_NE(e.find("node.toml:2: large.upload_idle_ms: must be between 1000"), std::string::npos)
      << e;
}

TEST(NodeConfig, BackendsAreRequiredComplete) {
  EXPECT_NE(load_error("[node]\nname = \"a\"\n").find("at least one [[backend]]"),
            std::string::npos);
  EXPECT_NE(load_error("[[backend]]\nengine = \"blob\"\n").find("backend.dir: required"),
            std::string::npos);
  std::string e = load_error("[[backend]]\ndir = \"a\"\n[[backend]]\ndir = \"b\"\n");
  EXPECT_NE(e.find("backend.id: 1 is used twice"), std::string::npos) << e;
  EXPECT_NE(load_error("[[backend]]\ndir = \"a\"\nengine = \"lsm\"\n").find("got 'lsm'"),
            std::string::npos);
}

TEST(NodeConfig, SyntaxErrorsNameTheLine) {
  std::string e = load_error("[node]\nname = \"unterminated\n" + backend);
  EXPECT_EQ(e.rfind("node.toml:2:", 0), 0u) << e;
}

TEST(NodeConfig, NonAsciiTextIsRefusedBeforeTheParserSeesIt) {
  // "\xc8\xbb" (U+023B) sends toml++ 3.3.0 into undefined behaviour; found by config_fuzz.
  std::string e = load_error("[node]\nname = \"x\"\n\xc8\xbb\n" + backend);
  EXPECT_EQ(e, "node.toml:3: non-ASCII byte 0xC8: config text must be ASCII");
}

TEST(NodeConfig, OverridesApplyBeforeValidation) {
  NodeConfig c;
  std::string error;
  ASSERT_TRUE(load_config_file(
      "", {"network.resp_port=0", "node.data_dir=/tmp/x", "backend.fsync=always"}, &c, &error))
      << error;
  EXPECT_EQ(c.resp_port, 0);
  EXPECT_EQ(c.data_dir, "/tmp/x");
  EXPECT_EQ(c.backends[0].fsync.mode, storage::SyncPolicy::Mode::always);
  EXPECT_FALSE(load_config_file("", {"network.resp_port=99999"}, &c, &error));
  EXPECT_NE(error.find("network.resp_port"), std::string::npos) << error;
  EXPECT_FALSE(load_config_file("", {"resp_port=1"}, &c, &error));
  EXPECT_NE(error.find("needs its section"), std::string::npos) << error;
}

}  // namespace
}  // namespace apsis::config
