// The client actor against a real node in this process: real actor system, real sockets on
// 127.0.0.1 with a port the server picks.
#include "clients/cpp/client_actor.hpp"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <thread>

#include "actors/node.hpp"
#include "frontends/binary_frontend.hpp"

namespace apsis {
namespace {

struct ClientActorTest : ::testing::Test {
  struct system_config : caf::actor_system_config {
    system_config() {
      add_message_types<caf::id_block::apsis>();
      set("scheduler.max-threads", 2);
    }
  };
  system_config cfg;
  caf::actor_system sys{cfg};
  NodeParts parts;
  IoPool io{2};
  std::shared_ptr<WireServer> server;

  ClientActorTest() {
    config::NodeConfig nc;
    std::string error;
    EXPECT_TRUE(config::load_config(config::default_config_text(), "default",
                                    {"backend.engine=memory", "backend.shards=2"}, &nc, &error))
        << error;
    EXPECT_TRUE(start_node(sys, nc, &parts, &error)) << error;
    server =
        make_binary_server(io, sys, parts.coordinator, parts.locks, parts.node, BinaryOptions{});
    EXPECT_TRUE(server->start(&error)) << error;
    io.run_in_background();
  }
  ~ClientActorTest() override {
    boost::asio::post(io.main(), [this] {
      server->stop();
      io.stop();
    });
    io.join();
    caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
  }

  client_actor connect() {
    ClientOptions o;
    o.port = server->port();
    std::string error;
    client_actor c = spawn_client(sys, o, &error);
    EXPECT_TRUE(c) << error;
    return c;
  }
};

wire::Request put(const std::string& key, const std::string& data) {
  wire::Request q;
  q.op = wire::opcode::put;
  q.key = key;
  q.data = data;
  return q;
}

TEST_F(ClientActorTest, ManyRequestsInFlightAreEachAnswered) {
  client_actor c = connect();
  caf::scoped_actor self{sys};
  const int n = 500;
  for (int i = 0; i < n; ++i)
    self->request(c, std::chrono::seconds(10),
                  put("k" + std::to_string(i), "v" + std::to_string(i)))
        .receive(
            [&](wire::Response& r) {
              EXPECT_EQ(r.status, op_status::ok);
              ASSERT_EQ(r.replicas.size(), 1u);
            },
            [&](caf::error& e) { FAIL() << sys.render(e); });
  // Now all at once: n gets in flight before the first answer is read.
  std::vector<std::string> got(n);
  std::vector<decltype(self->request(c, std::chrono::seconds(10), wire::Request{}))> handles;
  for (int i = 0; i < n; ++i) {
    wire::Request q;
    q.op = wire::opcode::get;
    q.key = "k" + std::to_string(i);
    handles.push_back(self->request(c, std::chrono::seconds(10), q));
  }
  for (int i = 0; i < n; ++i)
    handles[i].receive([&](wire::Response& r) { got[i] = r.data; },
                       [&](caf::error& e) { FAIL() << sys.render(e); });
  for (int i = 0; i < n; ++i) EXPECT_EQ(got[i], "v" + std::to_string(i));
  caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
}

TEST_F(ClientActorTest, AClosedConnectionFailsRequestsInsteadOfHanging) {
  client_actor c = connect();
  caf::scoped_actor self{sys};
  boost::asio::post(io.main(), [this] { server->stop(); });  // the node goes away
  bool failed = false;
  for (int attempt = 0; attempt < 50 && !failed; ++attempt) {
    self->request(c, std::chrono::seconds(5), put("k", "v"))
        .receive(
            [&](wire::Response&) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); },
            [&](caf::error&) { failed = true; });
  }
  EXPECT_TRUE(failed);
  caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
}

TEST(ClientActor, AnUnreachableNodeIsAnError) {
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::apsis>();
  caf::actor_system sys{cfg};
  ClientOptions o;
  o.port = 1;
  std::string error;
  EXPECT_FALSE(spawn_client(sys, o, &error));
  EXPECT_NE(error.find("connect 127.0.0.1:1"), std::string::npos) << error;
}

}  // namespace
}  // namespace apsis
