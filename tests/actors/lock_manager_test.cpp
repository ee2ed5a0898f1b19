#include "actors/lock_manager.hpp"

#include "tests/actors/actor_fixture.hpp"

namespace apsis {
namespace {

struct LockManagerTest : testing::ActorTest {
  lock_manager_actor locks = sys.spawn(lock_manager, std::string("node"));
};

TEST_F(LockManagerTest, WaitersAreServedInOrderWithRisingTokens) {
  caf::scoped_actor a{sys}, b{sys}, c{sys};
  auto ha = a->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{10000});
  auto hb = b->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{10000});
  auto hc = c->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{10000});
  sched.run();
  lease la, lb, lc;
  ha.receive([&](lease& l) { la = l; }, [&](caf::error& e) { FAIL() << sys.render(e); });
  EXPECT_GT(la.token, 0u);
  // b and c wait; a's unlock hands the lease to b, b's to c.
  auto unlock_a = a->request(locks, caf::infinite, atom::unlock_v, std::string("k"), la.token);
  sched.run();
  unlock_a.receive([&](bool ok) { EXPECT_TRUE(ok); }, [&](caf::error&) { FAIL(); });
  hb.receive([&](lease& l) { lb = l; }, [&](caf::error&) { FAIL(); });
  EXPECT_GT(lb.token, la.token);
  auto unlock_b = b->request(locks, caf::infinite, atom::unlock_v, std::string("k"), lb.token);
  sched.run();
  unlock_b.receive([&](bool ok) { EXPECT_TRUE(ok); }, [&](caf::error&) { FAIL(); });
  hc.receive([&](lease& l) { lc = l; }, [&](caf::error&) { FAIL(); });
  EXPECT_GT(lc.token, lb.token);
  // A stale token unlocks nothing.
  auto stale = a->request(locks, caf::infinite, atom::unlock_v, std::string("k"), la.token);
  sched.run();
  stale.receive([&](bool ok) { EXPECT_FALSE(ok); }, [&](caf::error&) { FAIL(); });
}

TEST_F(LockManagerTest, AnExpiredLeaseGoesToTheNextWaiter) {
  caf::scoped_actor a{sys}, b{sys};
  auto ha = a->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{100});
  sched.run();
  lease la;
  ha.receive([&](lease& l) { la = l; }, [&](caf::error&) { FAIL(); });
  auto hb = b->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{100});
  sched.run();
  sched.clock().advance_time(std::chrono::milliseconds(100));
  sched.run();
  lease lb;
  ASSERT_FALSE(b->mailbox().empty()) << "the lease never passed on";
  hb.receive([&](lease& l) { lb = l; }, [&](caf::error&) { FAIL(); });
  EXPECT_GT(lb.token, la.token);
  auto late = a->request(locks, caf::infinite, atom::unlock_v, std::string("k"), la.token);
  sched.run();
  late.receive([&](bool ok) { EXPECT_FALSE(ok); }, [&](caf::error&) { FAIL(); });
}

TEST_F(LockManagerTest, AHoldersDeathReleasesItsLease) {
  caf::scoped_actor b{sys};
  lease la;
  {
    caf::scoped_actor a{sys};
    auto ha = a->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{60000});
    sched.run();
    ha.receive([&](lease& l) { la = l; }, [&](caf::error&) { FAIL(); });
  }  // a terminates here
  auto hb = b->request(locks, caf::infinite, atom::lock_v, std::string("k"), uint32_t{60000});
  sched.run();
  lease lb;
  ASSERT_FALSE(b->mailbox().empty()) << "the lease never passed on";
  hb.receive([&](lease& l) { lb = l; }, [&](caf::error&) { FAIL(); });
  EXPECT_GT(lb.token, la.token);
}

}  // namespace
}  // namespace apsis
