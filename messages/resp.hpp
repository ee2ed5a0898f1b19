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

enum class Parse { complete, incomplete, error };

/// Parses one command starting at buf[*pos]. complete: *args holds it and *pos is past it;
/// incomplete: more bytes are needed (nothing consumed); error: *error says why, and the
/// connection should be answered with it and closed.
Parse parse_command(std::string_view buf, size_t* pos, std::vector<std::string>* args,
                    std::string* error, const Limits& limits = {});

void simple(std::string& out, std::string_view s);  ///< +s
void error(std::string& out, std::string_view s);   ///< -s (newlines replaced)
void integer(std::string& out, int64_t v);          ///< :v
void bulk(std::string& out, std::string_view s);    ///< $len s
void null_bulk(std::string& out);                   ///< $-1
void array(std::string& out, size_t n);             ///< *n, then n replies

}  // namespace apsis::resp
