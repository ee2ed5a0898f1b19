#include "tools/apsis/certs.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

namespace apsis::cli {

namespace {

namespace fs = std::filesystem;

struct Free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;

struct Issuer {
  X509* cert;  ///< null: self-signed
  EVP_PKEY* key;
};

bool fail(const std::string& why) {
  std::cerr << "apsis certs: " << why << "\n";
  return false;
}

Key new_key() { return Key(EVP_EC_gen("P-256")); }

bool add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/// A certificate for key, named cn: a CA's (ca), or a leaf's for hosts, signed by `by`.
Cert make_cert(EVP_PKEY* key, const std::string& cn, bool ca, bool client, const CertArgs& a,
               Issuer by) {
  Cert x(X509_new());
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_set_version(x.get(), 2);
  // Valid from an hour ago (clocks differ); with days == 0, until a minute ago.
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), a.days > 0 ? long(a.days) * 86400 : -60);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("apsis"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), by.cert ? X509_get_subject_name(by.cert) : name);
  bool ok = add_ext(x.get(), by.cert, NID_subject_key_identifier, "hash") &&
            add_ext(x.get(), by.cert, NID_authority_key_identifier, "keyid:always");
  if (ca) {
    ok = ok && add_ext(x.get(), by.cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
         add_ext(x.get(), by.cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    std::string san;
    for (const auto& h : a.hosts) {
      bool ip = h.find_first_not_of("0123456789.") == std::string::npos ||
                h.find(':') != std::string::npos;
      san += (san.empty() ? "" : ",") + std::string(ip ? "IP:" : "DNS:") + h;
    }
    // A node is a server to clients and, between nodes, a client too.
    ok = ok && add_ext(x.get(), by.cert, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x.get(), by.cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
         add_ext(x.get(), by.cert, NID_ext_key_usage,
                 client ? "clientAuth" : "serverAuth,clientAuth") &&
         (san.empty() || add_ext(x.get(), by.cert, NID_subject_alt_name, san));
  }
  if (!ok || !X509_sign(x.get(), by.key, EVP_sha256())) return nullptr;
  return x;
}

bool write_pem(const fs::path& path, X509* cert, EVP_PKEY* key) {
  // A key is readable by its owner only, from the moment it exists.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, key ? 0600 : 0644);
  if (fd < 0) return fail(path.string() + ": cannot create: " + std::strerror(errno));
  FILE* f = fdopen(fd, "w");
  bool ok = key ? PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1
                : PEM_write_X509(f, cert) == 1;
  ok = (std::fclose(f) == 0) && ok;
  return ok || fail(path.string() + ": cannot write");
}

bool write_pair(const fs::path& dir, const std::string& name, X509* cert, EVP_PKEY* key) {
  return write_pem(dir / (name + ".crt"), cert, nullptr) &&
         write_pem(dir / (name + ".key"), nullptr, key);
}

bool read_pair(const fs::path& dir, const std::string& name, Cert* cert, Key* key) {
  FILE* f = std::fopen((dir / (name + ".crt")).c_str(), "r");
  if (f) cert->reset(PEM_read_X509(f, nullptr, nullptr, nullptr)), std::fclose(f);
  f = std::fopen((dir / (name + ".key")).c_str(), "r");
  if (f) key->reset(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr)), std::fclose(f);
  return (*cert && *key) ||
         fail((dir / name).string() + ".crt/.key: cannot read (run `apsis certs init " +
              dir.string() + "` first)");
}

/// Issues name's key and certificate (a leaf) from the CA in ca_cert/ca_key.
bool issue(const CertArgs& a, const std::string& name, bool client, X509* ca_cert,
           EVP_PKEY* ca_key) {
  Key key = new_key();
  Cert cert = key ? make_cert(key.get(), name, false, client, a, {ca_cert, ca_key}) : nullptr;
  if (!cert) return fail("OpenSSL could not make " + name + "'s certificate");
  return write_pair(a.dir, name, cert.get(), key.get());
}

bool make_ca(const CertArgs& a, const std::string& name, Cert* cert, Key* key) {
  *key = new_key();
  if (*key) *cert = make_cert(key->get(), "apsis " + name, true, false, a, {nullptr, key->get()});
  if (!*cert) return fail("OpenSSL could not make the " + name);
  return write_pair(a.dir, name, cert->get(), key->get());
}

CertArgs with_default_hosts(CertArgs a) {
  if (a.hosts.empty()) a.hosts = {"127.0.0.1", "::1", "localhost"};
  return a;
}

}  // namespace

int certs_init(const CertArgs& given) {
  CertArgs a = with_default_hosts(given);
  std::error_code ec;
  fs::create_directories(a.dir, ec);
  if (ec) return fail(a.dir + ": " + ec.message()), 1;
  for (const char* f : {"ca", "node", "client-ca", "client"})
    if (fs::exists(fs::path(a.dir) / (std::string(f) + ".key")))
      return fail(a.dir + " already holds " + f + ".key: not overwritten"), 1;
  Cert ca, client_ca;
  Key ca_key, client_ca_key;
  if (!make_ca(a, "ca", &ca, &ca_key) || !issue(a, a.name, false, ca.get(), ca_key.get()) ||
      !make_ca(a, "client-ca", &client_ca, &client_ca_key) ||
      !issue(a, "client", true, client_ca.get(), client_ca_key.get()))
    return 1;
  std::cout << "apsis certs: in " << a.dir << ": ca.crt (the cluster's CA: tls.ca), " << a.name
            << ".crt/.key (tls.cert, tls.key), client-ca.crt (tls.client_ca), client.crt/.key "
               "(a client's); keep the .key files secret\n";
  return 0;
}

int certs_issue(const CertArgs& given) {
  CertArgs a = with_default_hosts(given);
  Cert ca;
  Key key;
  if (!read_pair(a.dir, a.client ? "client-ca" : "ca", &ca, &key)) return 1;
  if (!issue(a, a.name, a.client, ca.get(), key.get())) return 1;
  std::cout << "apsis certs: " << (fs::path(a.dir) / a.name).string() << ".crt/.key\n";
  return 0;
}

}  // namespace apsis::cli
