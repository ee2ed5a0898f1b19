// apsis ls, export and import: a namespace's keys page by page (the binary protocol's list),
// and the export stream of messages/export_format.hpp out and back in.
#pragma once

#include <cstdint>
#include <string>

#include "clients/cpp/client.hpp"

namespace apsis::cli {

struct ListArgs {
  std::string ns;             ///< the namespace to list or export
  std::string prefix, match;  ///< ls: which keys (a prefix, or a glob)
  bool long_form = false;     ///< ls: version, sizes and expiry beside each key
  std::string since;          ///< export: a version (ms.counter@node), Unix ms or an age
  std::string file;           ///< import: read this file instead of stdin
  bool ns_given = false;      ///< import: --ns was given (else the stream's namespace)
};

/// Each returns the process's exit status (0 ok, 1 refused, 2 usage, 3 no answer).
int ls(Client& client, const ListArgs& a, bool as_json);
int export_ns(Client& client, const ListArgs& a);
int import_ns(Client& client, const ListArgs& a);

/// apsis upload KEY FILE (a large value, in parts) and apsis download KEY FILE ("-": stdin or
/// stdout), with a progress line on a terminal.
int transfer(Client& client, const std::string& key, const std::string& file, bool up,
             bool as_json);

/// "--since": Unix ms, or an age ("90s", "15m", "2h", "3d") back from now; false if neither.
bool parse_since(const std::string& text, uint64_t* out);

}  // namespace apsis::cli
