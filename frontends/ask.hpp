// ask(): a request to an actor from an I/O thread, which is no actor. A short-lived actor
// sends it and hands the answer, or the error rendered as text, to `then` on the
// connection's executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <caf/all.hpp>

#include <functional>
#include <string>

namespace apsis::frontend {

/// An actor's answer of type T, or why there is none.
template <class T>
struct Answer {
  bool ok = false;
  T value{};
  std::string error;
};

template <class T>
using AnswerFn = std::function<void(Answer<T>)>;

/// The short-lived actor. It takes its inputs as spawn arguments: CAF 0.17 binds a null
/// reference when spawning a capturing function with none.
template <class T, class Handle, class... Ts>
void asker(caf::event_based_actor* self, Handle dest, caf::duration timeout,
           boost::asio::any_io_executor ex, AnswerFn<T> then, Ts... xs) {
  self->request(dest, timeout, std::move(xs)...)
      .then(
          [=](T& v) {
            boost::asio::post(ex, [then, a = Answer<T>{true, std::move(v), {}}]() mutable {
              then(std::move(a));
            });
          },
          [=](caf::error& e) {
            boost::asio::post(
                ex, [then, a = Answer<T>{false, T{}, self->home_system().render(e)}] { then(a); });
          });
}

/// Sends dest the request xs...; its answer of type T (or the error) goes to `then` on ex.
template <class T, class Handle, class... Ts>
void ask(caf::actor_system& sys, boost::asio::any_io_executor ex, caf::duration timeout,
         Handle dest, AnswerFn<T> then, Ts... xs) {
  sys.spawn(asker<T, Handle, Ts...>, std::move(dest), timeout, std::move(ex), std::move(then),
            std::move(xs)...);
}

}  // namespace apsis::frontend
