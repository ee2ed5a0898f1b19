// Status: the result of every storage operation. Errors are values, never exceptions.
// Thread safety: a Status is an immutable value.
#pragma once

#include <string>
#include <utility>

namespace apsis::storage {

class Status {
 public:
  enum class Code { ok, not_found, stale, corruption, invalid_argument, io_error, busy };

  Status() = default;
  static Status ok() { return {}; }
  static Status not_found(std::string msg = {}) { return {Code::not_found, std::move(msg)}; }
  /// A put carried a version older than the stored one.
  static Status stale(std::string msg = {}) { return {Code::stale, std::move(msg)}; }
  static Status corruption(std::string msg) { return {Code::corruption, std::move(msg)}; }
  static Status invalid_argument(std::string msg) {
    return {Code::invalid_argument, std::move(msg)};
  }
  static Status io_error(std::string msg) { return {Code::io_error, std::move(msg)}; }
  /// The directory is in use by another engine instance or process.
  static Status busy(std::string msg) { return {Code::busy, std::move(msg)}; }

  bool is_ok() const { return code_ == Code::ok; }
  explicit operator bool() const { return is_ok(); }
  bool is_not_found() const { return code_ == Code::not_found; }
  bool is_stale() const { return code_ == Code::stale; }
  bool is_corruption() const { return code_ == Code::corruption; }
  bool is_invalid_argument() const { return code_ == Code::invalid_argument; }
  bool is_io_error() const { return code_ == Code::io_error; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  /// "<code>: <message>", for logs and error replies.
  std::string to_string() const;

 private:
  Status(Code c, std::string m) : code_(c), msg_(std::move(m)) {}
  Code code_ = Code::ok;
  std::string msg_;
};

const char* to_string(Status::Code code);

}  // namespace apsis::storage

/// Returns early from the enclosing function when `expr` is not ok.
#define APSIS_TRY(expr)                             \
  do {                                              \
    ::apsis::storage::Status apsis_try_s_ = (expr); \
    if (!apsis_try_s_.is_ok()) return apsis_try_s_; \
  } while (0)
