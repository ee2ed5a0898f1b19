// apsis certs: a quick start's certificates, made with OpenSSL's library (docs/security.md).
//   init DIR    a cluster CA with one node certificate, and a client CA with one client
//               certificate (separate CAs, so a client's certificate never joins the cluster)
//   issue DIR NAME   one more node (or, with --client, client) certificate from DIR's CAs
#pragma once

#include <string>
#include <vector>

namespace apsis::cli {

struct CertArgs {
  std::string dir;
  std::string name = "node";       ///< the certificate's CN and file names
  std::vector<std::string> hosts;  ///< subjectAltNames (IP addresses or DNS names)
  int days = 825;                  ///< 0: already expired (to test refusals)
  bool client = false;             ///< issue: a client certificate
};

/// Makes DIR (if missing) with ca.{crt,key}, node.{crt,key}, client-ca.{crt,key} and
/// client.{crt,key}; refuses to overwrite any. The process's exit status.
int certs_init(const CertArgs& a);
/// Issues DIR/NAME.{crt,key} from DIR's ca (or client-ca with a.client).
int certs_issue(const CertArgs& a);

}  // namespace apsis::cli
