// Base64 (RFC 4648, with padding), through OpenSSL: binary values inside JSON (REST bodies,
// the export stream).
#pragma once

#include <string>
#include <string_view>

namespace apsis {

std::string base64(std::string_view in);
/// false unless `in` is padded base64.
bool unbase64(std::string_view in, std::string* out);

}  // namespace apsis
