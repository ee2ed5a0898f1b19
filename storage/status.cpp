#include "storage/status.hpp"

namespace apsis::storage {

const char* to_string(Status::Code code) {
  switch (code) {
    case Status::Code::ok:
      return "ok";
    case Status::Code::not_found:
      return "not_found";
    case Status::Code::stale:
      return "stale";
    case Status::Code::corruption:
      return "corruption";
    case Status::Code::invalid_argument:
      return "invalid_argument";
    case Status::Code::io_error:
      return "io_error";
    case Status::Code::busy:
      return "busy";
  }
  return "unknown";
}

std::string Status::to_string() const {
  std::string s = apsis::storage::to_string(code_);
  if (!msg_.empty()) s += ": " + msg_;
  return s;
}

}  // namespace apsis::storage
