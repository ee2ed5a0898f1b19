// RespServer: the Redis-protocol frontend, on Boost.Asio (an IoPool). Each socket read
// is parsed whole; its key operations go to the coordinator as one batch (run on the I/O
// thread by the direct path, or one actor message), answered with one write. Replies stay in
// request order across reads; a client with too much outstanding stops being read, so it only holds
// up its own connection.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "actors/metrics.hpp"
#include "actors/replica_group.hpp"
#include "frontends/io_pool.hpp"
#include "messages/resp.hpp"
#include "storage/record.hpp"

namespace apsis {

struct RespOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;  ///< 0 = an ephemeral port
  resp::Limits limits;
  /// The text of INFO [section].
  std::function<std::string(const std::string& section)> info;
  std::shared_ptr<RequestMetrics> metrics;    ///< counts requests (may be null)
  std::chrono::milliseconds idle_timeout{0};  ///< close connections idle this long; 0: never
};

class RespServer {
 public:
  RespServer(IoPool& io, Coordinator coordinator, RespOptions opts);
  ~RespServer();
  /// Binds and starts accepting; false with *error set when that fails.
  bool start(std::string* error);
  /// Sets the INFO callback; call before the io_context runs.
  void set_info(std::function<std::string(const std::string&)> info);
  /// The bound port (after start).
  uint16_t port() const;
  /// Stops accepting and closes every connection.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace apsis
