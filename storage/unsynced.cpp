#include "storage/unsynced.hpp"

#include <algorithm>
#include <mutex>

namespace apsis::storage {

void Unsynced::owe(const std::shared_ptr<Engine>& engine, uint64_t ticket) {
  if (ticket == 0) return;
  for (auto& [e, t] : owed_)
    if (e == engine) return void(t = std::max(t, ticket));
  owed_.emplace_back(engine, ticket);
}

Status Unsynced::settle() {
  Status first;
  for (auto& [e, t] : owed_)
    if (Status s = e->settle(t); !s && first) first = std::move(s);
  owed_.clear();
  return first;
}

void Unsynced::when_settled(std::function<void(Status)> done) {
  auto owed = std::move(owed_);
  owed_.clear();
  if (owed.empty()) return done(Status::ok());
  struct Join {
    std::mutex mu;
    size_t left;
    Status first;
    std::function<void(Status)> done;
  };
  auto j = std::make_shared<Join>();
  j->left = owed.size();
  j->done = std::move(done);
  for (auto& [e, t] : owed)
    e->when_settled(t, [j](Status s) {
      std::unique_lock<std::mutex> l(j->mu);
      if (!s && j->first) j->first = std::move(s);
      if (--j->left > 0) return;
      l.unlock();
      j->done(j->first);
    });
}

}  // namespace apsis::storage
