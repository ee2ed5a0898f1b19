// RESP (the Redis protocol): an incremental parser of client commands (arrays of bulk
// strings, and inline commands) and reply encoders. Plain code with limits on every size,
// so that malformed or hostile input is an error, never a crash or unbounded memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apsis::resp {

struct Limits {
  size_t max_args = 1 << 20;     ///< arguments in one command
  size_t max_bulk = 512u << 20;  ///< bytes in one argument
  size_t max_inline = 64 << 10;  ///< bytes in one inline command line
};

enum class Parse { complete, incomplete, error, oversized };

/// The rest of a command one of whose arguments is longer than max_bulk: the bytes of that
/// argument still to come and the arguments after it, dropped as they arrive so that the
/// client gets an error reply and its connection goes on, without the node holding them.
struct Skip {
  uint64_t bytes = 0;  ///< of the current argument, its CRLF included
  int64_t args = 0;    ///< whole arguments after it
  bool active() const { return bytes > 0 || args > 0; }
  /// Drops what buf holds from *pos on: complete once the command is gone, incomplete while
  /// more is to come (what arrived is consumed), error on a malformed argument header.
  Parse drain(std::string_view buf, size_t* pos, std::string* error);
};

/// Parses one command starting at buf[*pos]. complete: *args holds it and *pos is past it;
/// incomplete: more bytes are needed (nothing consumed); error: *error says why, and the
/// connection should be answered with it and closed. With `skip`, an argument over max_bulk
/// is `oversized`: *error is the reply, *pos is past that argument's header, and *skip says
/// what of the command is still to drop (Skip::drain).
/// With `need`, an incomplete command that has declared an argument's length sets *need to
/// the bytes it takes from *pos on, at least (the caller may reserve them at once rather than
/// grow its buffer twice over for a large value).
Parse parse_command(std::string_view buf, size_t* pos, std::vector<std::string>* args,
                    std::string* error, const Limits& limits = {}, Skip* skip = nullptr,
                    size_t* need = nullptr);

void simple(std::string& out, std::string_view s);  ///< +s
void error(std::string& out, std::string_view s);   ///< -s (newlines replaced)
void integer(std::string& out, int64_t v);          ///< :v
void bulk(std::string& out, std::string_view s);    ///< $len s
void null_bulk(std::string& out);                   ///< $-1
void array(std::string& out, size_t n);             ///< *n, then n replies

}  // namespace apsis::resp
