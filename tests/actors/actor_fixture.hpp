// A deterministic actor system for GoogleTest: actors run only when the test runs the
// scheduler, and timeouts fire on a virtual clock (sched.clock().advance_time()).
#pragma once

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include "messages/type_ids.hpp"
#include "storage/engine.hpp"

namespace apsis::testing {

class ActorTest : public ::testing::Test {
 protected:
  struct config : caf::actor_system_config {
    config() {
      add_message_types<caf::id_block::apsis>();
      set("scheduler.policy", caf::atom("testing"));
    }
  };

  ActorTest()
      : sys(cfg),
        self(sys, true),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}
  ~ActorTest() override {
    // Pending timers (request timeouts, lease expiries) keep their actors alive, and the
    // actor system waits for every actor: drop them, then let everything finish.
    sched.clock().cancel_all();
    sched.run();
  }

  /// Sends a request from `self`, runs every actor until idle, and returns the reply.
  template <class R, class Handle, class... Ts>
  R ask(const Handle& dest, Ts&&... xs) {
    R out{};
    auto h = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
    sched.run();
    h.receive([&](R& r) { out = std::move(r); },
              [&](caf::error& e) { ADD_FAILURE() << "error reply: " << sys.render(e); });
    return out;
  }

  static std::shared_ptr<storage::Engine> memory_engine() {
    storage::EngineOptions o;
    o.kind = "memory";
    std::unique_ptr<storage::Engine> e;
    EXPECT_TRUE(storage::open_engine(o, &e).is_ok());
    return std::shared_ptr<storage::Engine>(std::move(e));
  }

  static kv_op op(op_kind kind, const std::string& key, const std::string& data = {}) {
    kv_op o;
    o.kind = kind;
    o.key = key;
    o.id = storage::make_id("default", key);
    o.data = data;
    return o;
  }

  config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  caf::scheduler::test_coordinator& sched;
};

}  // namespace apsis::testing
