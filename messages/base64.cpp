#include "messages/base64.hpp"

#include <openssl/evp.h>

namespace apsis {

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), int(in.size()));
  out.resize(size_t(n));
  return out;
}

bool unbase64(std::string_view in, std::string* out) {
  if (in.size() % 4 != 0) return false;
  out->assign(3 * (in.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                          reinterpret_cast<const unsigned char*>(in.data()), int(in.size()));
  if (n < 0) return false;
  size_t pad =
      in.size() >= 1 && in.back() == '=' ? (in.size() >= 2 && in[in.size() - 2] == '=' ? 2 : 1) : 0;
  out->resize(size_t(n) - pad);  // EVP_DecodeBlock counts the padding as bytes
  return true;
}

}  // namespace apsis
