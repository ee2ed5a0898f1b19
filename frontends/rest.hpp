// REST: what an HTTP request asks of the node, and the response its results make. No
// sockets here: the server (http_frontend) reads a request, asks route() what it is, runs
// its operations, and sends what the *_response functions build. docs/rest.md lists every
// route; the fuzz target tests/fuzz/http_fuzz.cpp drives these functions with any bytes.
#pragma once

#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "messages/base64.hpp"
#include "messages/listing.hpp"
#include "messages/types.hpp"
#include "storage/record.hpp"

namespace apsis::rest {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

enum class Kind {
  key,        ///< GET/HEAD/PUT/DELETE on one key: ops[0]
  patch,      ///< PATCH: ops[0], a merge patch computed by the key's owner in one group
  bulk_get,   ///< POST .../bulk/get: ops, one get per key
  bulk_put,   ///< POST .../bulk/put: ops, one put per item
  ns_list,    ///< GET /v1/ns
  ns_create,  ///< PUT /v1/ns/{ns}
  ns_drop,    ///< DELETE /v1/ns/{ns}
  lock,       ///< POST /v1/ns/{ns}/locks/{key}?lease_ms=
  unlock,     ///< DELETE /v1/ns/{ns}/locks/{key}?token=
  cluster,    ///< GET /v1/cluster (the node's view: nodes, their state)
  routes,     ///< GET /v1/cluster/routes
  healthz,
  readyz,
  stats,
  metrics,
  list_keys,  ///< GET /v1/ns/{ns}/keys?prefix=&match=&cursor=&limit=&long=
};

/// What the reader wants back from a GET: the data part, the JSON part, or whichever is set.
enum class Want { any, data, json };

struct Call {
  Kind kind = Kind::healthz;
  std::string ns, key;
  op_batch ops;
  bool head = false;
  bool verbose = false;  ///< ?verbose=1: a JSON body with the per-replica results
  Want want = Want::any;
  std::string if_none_match;  ///< GET: an ETag the client holds (304 when it is current)
  uint32_t lease_ms = 0;      ///< lock
  uint64_t token = 0;         ///< unlock
  // list_keys: what the pages filter, where the listing starts, how many keys it wants
  list_request list;
  storage::Id list_from;
  size_t list_limit = 100;
  bool list_long = false;  ///< each key with its version, sizes, expiry and flags
};

/// What a key listing gathered (frontends/rounds.hpp's Lister, as REST shows it).
struct ListPage {
  std::vector<listed_record> records;
  std::string cursor;  ///< "0": the listing is complete
  op_status status = op_status::ok;
  std::string message;
};

/// The namespace that holds the catalog of namespaces (not a valid name for users).
inline const std::string system_ns = std::string("\0apsis", 6);
inline const std::string catalog_key = "namespaces";

/// Parses a request; false with *error set to the response to send (400, 404, 405, 413).
/// A PUT's body moves into its operation (a large value is not copied).
bool route(Request& req, const storage::Limits& limits, Call* call, Response* error);

/// What a call needs of its user (config/users.hpp's bits) in call.ns, or on "*" when
/// *global; -1 for what needs no login at all (health and readiness).
int needs(const Call& call, bool* global);
/// The user and password of an `Authorization: Basic` header; false without a well-formed one.
bool basic_credentials(const Request& req, std::string* user, std::string* password);
/// The token of an `Authorization: Bearer` header; false without one.
bool bearer_token(const Request& req, std::string* token);

/// The response to a key call (GET, HEAD, PUT, DELETE, PATCH, POST's incr and append).
Response key_response(const Call& call, const Request& req, op_result& r);
/// Namespace create and drop edit the catalog record: from the read's result, the write to
/// make (true, conditional on the version read), or the response to send (false).
bool catalog_step(const Call& call, const op_result& read, const Request& req, kv_op* write,
                  Response* done);
/// The head of a large value's GET or HEAD (messages/large.hpp): status, Content-Length and
/// Range as for any value, no body; [*first, *last] is the slice to send after it (none when
/// *last < *first: a HEAD, a 304 or a 416).
Response large_response(const Call& call, const Request& req, const op_result& r, uint64_t size,
                        uint64_t* first, uint64_t* last);
/// The response to a key listing: {"keys": [...], "cursor": "..."} (cursor "0" at the end).
Response list_response(const Call& call, const Request& req, const ListPage& page);
/// The response to a bulk call: one entry per key, in request order.
Response bulk_response(const Call& call, const Request& req, result_batch& rs);

/// A JSON error body ({"error": why}) with that status.
Response error(const Request& req, http::status s, const std::string& why);
/// A JSON body with that status.
Response json_response(const Request& req, http::status s, const nlohmann::json& body);
/// The HTTP status for an operation's status.
http::status status_of(op_status s);

/// A version as text (ms.counter@node, as the CLI shows it), as an ETag (the same, quoted)
/// and back from one.
std::string version_text(const storage::Version& v);
std::string etag(const storage::Version& v);
bool parse_etag(std::string_view text, storage::Version* out);
/// Decodes %XX escapes ('+' stays '+': this is a path, not a form); false if malformed.
bool percent_decode(std::string_view in, std::string* out);
/// Namespaces users may name: 1-64 of [A-Za-z0-9_.-].
bool valid_ns(const std::string& ns);

}  // namespace apsis::rest
