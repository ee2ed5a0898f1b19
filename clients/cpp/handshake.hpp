// The start of every client connection, shared by Client and the CLIENT actor: connect,
// set the timeouts, say hello, learn the node's frame limit.
#pragma once

#include <boost/asio.hpp>
#include <string>

#include "clients/cpp/client.hpp"
#include "messages/stream.hpp"

namespace apsis::detail {

/// The TLS context opts ask for (null when tls_ca is empty, or on error with *error set).
std::shared_ptr<boost::asio::ssl::context> client_tls(const ClientOptions& opts,
                                                      std::string* error);

/// Connects sock to opts.host:opts.port (with TLS: shakes hands, checking the node's
/// certificate) and negotiates the protocol version. Bytes that
/// arrive after the hello stay in *in. False with *error set when any step fails.
bool connect_and_hello(Stream& sock, const ClientOptions& opts, std::string* in,
                       uint32_t* max_frame, std::string* error);

/// The login after the hello (opts.user, opts.password): false with *error when refused.
bool log_in(Stream& sock, const ClientOptions& opts, std::string* in, uint32_t max_frame,
            std::string* error);

/// Reads one frame (blocking); an error frame from the node becomes *error.
bool read_frame(Stream& sock, std::string* in, uint32_t max_frame, const ClientOptions& opts,
                wire::Frame* f, std::string* error);

}  // namespace apsis::detail
