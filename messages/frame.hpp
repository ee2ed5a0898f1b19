// The binary protocol's frames (docs/protocol.md, byte by byte): length-prefixed, with a
// request id, so many requests can be in flight on one connection. Encoding and decoding
// of every frame body, bounds-checked: a malformed frame is an error value, never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "messages/types.hpp"

namespace apsis::wire {

constexpr uint16_t protocol_version = 1;
constexpr size_t header_size = 16;  ///< u32 length, u8 kind, u8 opcode, u16 flags, u64 id
constexpr uint32_t default_max_frame = (32u << 20) + 64 * 1024;

enum class kind : uint8_t { hello = 1, request = 2, response = 3, error = 4 };
enum class opcode : uint8_t {
  none = 0,
  get = 1,
  put = 2,
  del = 3,
  lookup = 4,
  lock = 5,
  unlock = 6,
  stat = 7,
  ping = 8,
  admin = 9,     ///< an operator's command as JSON (`apsis recover`), answered with JSON
  replica = 10,  ///< a put or del for one backend, versioned by the client that coordinates
  list = 11,     ///< a page of a namespace's keys from a cursor (with payloads: an export)
  change = 12,   ///< a value computed from the stored one (incr, append, merge patch...)
  part = 13,     ///< one chunk of a large value's upload (messages/large.hpp)
  commit = 14,   ///< an upload's manifest: the large value becomes visible
  read = 15,     ///< bytes [offset, offset + length) of a value, plain or large
  login = 16     ///< a challenge-response login (SCRAM-SHA-256's proof), in two steps
};
/// Error frame codes: the connection closes after an error frame.
enum class error_code : uint16_t {
  malformed = 1,
  too_large = 2,
  unsupported_version = 3,
  unknown_opcode = 4,
  hello_first = 5
};

struct Frame {
  kind k = kind::request;
  opcode op = opcode::none;
  uint16_t flags = 0;
  uint64_t id = 0;
  std::string body;
};

enum class Decode { complete, incomplete, error };

/// One frame from buf[*pos]; on error *err says why (and whether it was too_large).
Decode decode_frame(std::string_view buf, size_t* pos, Frame* out, uint32_t max_frame,
                    error_code* code, std::string* err);
void encode_frame(const Frame& f, std::string& out);

/// A request frame's flags: bits 0-1 the success policy for a write (0 the node's default,
/// 1 one, 2 quorum, 3 all); bit 2 read-latest (the read policy all); bit 3: the body ends
/// with the groups to ask (u8 count, u32 each), a subset of the node's session; bits 4-5 the
/// read policy of a get or lookup (0 the node's default, 1 one, 2 quorum, 3 all).
constexpr uint16_t flag_policy_mask = 0x3, flag_latest = 0x4, flag_groups = 0x8;
constexpr uint16_t flag_read_shift = 4, flag_read_mask = 0x30;

/// A request as the server sees it.
struct Request {
  opcode op = opcode::none;
  std::string ns, key;
  op_cond cond = op_cond::none;
  storage::Version expected;
  uint64_t expiry_ms = 0;
  uint32_t user_flags = 0;
  uint64_t fence = 0;
  std::string json, data;        ///< put (admin: the command, in data)
  uint32_t lease_ms = 0;         ///< lock
  uint64_t token = 0;            ///< unlock
  uint8_t policy = 0;            ///< from the frame's flags: 0 default, else success_policy + 1
  bool latest = false;           ///< from the frame's flags: the read policy all
  uint8_t read = 0;              ///< from the frame's flags: 0 default, else success_policy + 1
  std::vector<uint32_t> groups;  ///< key requests: only these groups (flag_groups); empty: all
  // replica: which write, to which of the node's backends, at which version
  opcode inner = opcode::none;  ///< put or del
  uint32_t backend = 0;
  storage::Version version;
  // list: from where, how many keys, which ones; `version` is its since (newer or equal)
  std::string cursor = "0";
  std::string match;        ///< a glob on keys; empty: every key
  uint32_t limit = 0;       ///< keys wanted (0: 100)
  bool payload = false;     ///< each key's json and data too
  bool tombstones = false;  ///< deleted and expired keys too
  // change: what it does (value_change::kind_t), its integer (incr: by; setrange: offset);
  // its bytes (append, setrange), float increment or patch travel in `data`
  uint8_t change_kind = 0;
  int64_t by = 0;
  // part: chunk `offset` of upload `upload`, its bytes in `data`; commit: the upload's id and
  // its size in `length` (cond, expected, fence, expiry as a put's); read: offset and length
  std::string upload;
  uint64_t offset = 0, length = 0;
  // login: step 1 names the user (key) with the client's nonce (data); step 2 carries the
  // proof (data)
  uint8_t step = 0;
};
/// The frame flags that carry a request's policy and latest.
inline uint16_t request_flags(const Request& q) {
  return uint16_t((q.policy & flag_policy_mask) | (q.latest ? flag_latest : 0) |
                  (q.groups.empty() ? 0 : flag_groups) |
                  ((q.read << flag_read_shift) & flag_read_mask));
}

/// A request's body; `flags` are its frame's (flag_groups: the body ends with the groups).
bool decode_request(opcode op, std::string_view body, Request* out, std::string* err,
                    uint16_t flags = 0);
std::string encode_request(const Request& r);

/// A response: status and version, the record for get/lookup, one entry per replica;
/// lock answers token and expiry, unlock `released`, stat and admin a JSON text in `data`.
struct Response {
  op_status status = op_status::ok;
  std::string message;
  storage::Version version;
  bool existed = false;
  uint64_t expiry_ms = 0;
  uint32_t user_flags = 0;
  std::string json, data;                 ///< get (stat: data)
  uint32_t json_size = 0, data_size = 0;  ///< lookup
  uint64_t token = 0;                     ///< lock
  std::vector<replica_entry> replicas;
  std::string cursor;                 ///< list: where the next page starts ("0": the end)
  std::vector<listed_record> listed;  ///< list: the page
  uint64_t total = 0;                 ///< read: the value's whole size
  std::string salt, nonce;            ///< login step 1: the password's salt, the server's nonce
  uint32_t iterations = 0;            ///< login step 1: PBKDF2's iterations
};

std::string encode_response(opcode op, const Response& r);
/// A key operation's result as a response.
Response from_result(const op_result& r);

bool decode_response(opcode op, std::string_view body, Response* out, std::string* err);

struct Hello {
  uint16_t min_version = protocol_version, max_version = protocol_version;
  std::string name;
  uint32_t max_frame = default_max_frame;
};
std::string encode_hello(const Hello& h);
bool decode_hello(std::string_view body, Hello* out, std::string* err);

std::string encode_error(error_code code, const std::string& message);
bool decode_error(std::string_view body, error_code* code, std::string* message);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Request& x) {
  return f(caf::meta::type_name("request"), x.op, x.ns, x.key, x.cond, x.expected, x.expiry_ms,
           x.user_flags, x.fence, x.json, x.data, x.lease_ms, x.token, x.policy, x.latest, x.read,
           x.inner, x.backend, x.version, x.cursor, x.match, x.limit, x.payload, x.tombstones,
           x.change_kind, x.by, x.upload, x.offset, x.length);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Response& x) {
  return f(caf::meta::type_name("response"), x.status, x.message, x.version, x.existed, x.expiry_ms,
           x.user_flags, x.json, x.data, x.json_size, x.data_size, x.token, x.replicas, x.cursor,
           x.listed, x.total);
}

}  // namespace apsis::wire
