#include "frontends/tls.hpp"

#include <openssl/ssl.h>

namespace apsis::frontend {

namespace ssl = boost::asio::ssl;

namespace {

/// TLS 1.2's forward-secret AEAD suites (TLS 1.3's are all such, and OpenSSL's defaults).
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

bool failed(const boost::system::error_code& ec, const std::string& what, const std::string& file,
            std::string* error) {
  if (!ec) return false;
  *error = what + " " + file + ": " + ec.message();
  return true;
}

}  // namespace

std::shared_ptr<ssl::context> server_context(const config::TlsConfig& c, std::string* error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(native, tls12_ciphers);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::single_dh_use |
                   ssl::context::no_compression);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(c.cert, ec);
  if (failed(ec, "tls.cert", c.cert, error)) return nullptr;
  ctx->use_private_key_file(c.key, ssl::context::pem, ec);
  if (failed(ec, "tls.key", c.key, error)) return nullptr;
  if (SSL_CTX_check_private_key(native) != 1) {
    *error = "tls.key " + c.key + ": not the key of the certificate in " + c.cert;
    return nullptr;
  }
  if (!c.ca.empty()) {  // only checked here: the cluster port's TLS is CAF's
    ssl::context probe(ssl::context::tls);
    probe.load_verify_file(c.ca, ec);
    if (failed(ec, "tls.ca", c.ca, error)) return nullptr;
  }
  if (!c.client_ca.empty()) {
    ctx->load_verify_file(c.client_ca, ec);
    if (failed(ec, "tls.client_ca", c.client_ca, error)) return nullptr;
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(c.client_ca.c_str());
    if (names) SSL_CTX_set_client_CA_list(native, names);  // takes them
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    // A resumed session skips the certificate check only within this context.
    static const unsigned char id[] = "apsis";
    SSL_CTX_set_session_id_context(native, id, sizeof id - 1);
  }
  return ctx;
}

std::shared_ptr<ServerTls> ServerTls::load(const config::TlsConfig& c, std::string* error) {
  auto ctx = server_context(c, error);
  return ctx ? std::make_shared<ServerTls>(c, std::move(ctx)) : nullptr;
}

bool ServerTls::reload(std::string* error) {
  auto ctx = server_context(cfg_, error);
  if (!ctx) return false;
  std::lock_guard<std::mutex> lock(mu_);
  ctx_ = std::move(ctx);
  return true;
}

}  // namespace apsis::frontend
