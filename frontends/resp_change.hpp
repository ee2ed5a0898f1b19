// The new value of RESP's read-modify-write commands (INCR, INCRBY, DECR, DECRBY,
// INCRBYFLOAT, APPEND, SETRANGE), computed from the value read, with Redis's rules and error
// texts. No I/O: the RESP frontend runs each as a read-modify-write (frontends/rmw.hpp).
#pragma once

#include <cstdint>
#include <string>

namespace apsis::resp {

struct Change {
  enum Kind { incr, incr_float, append, setrange } kind = incr;
  int64_t by = 0;       ///< incr: the increment; setrange: the offset
  std::string arg;      ///< incr_float: the increment as given; append, setrange: the bytes
  size_t max_size = 0;  ///< the longest value allowed (append, setrange)
};

/// Redis's integer: an optional '-', then digits without a leading zero, within int64.
bool parse_integer(const std::string& s, int64_t* out);

/// The new value from the old one (exists: whether the key held one), and the reply to send
/// (RESP-encoded); false with *reply an error when the change cannot apply. *write is false
/// when nothing needs writing (SETRANGE of no bytes).
bool apply_change(const Change& c, bool exists, const std::string& old, std::string* value,
                  std::string* reply, bool* write);

}  // namespace apsis::resp
