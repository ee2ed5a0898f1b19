#include "messages/frame.hpp"

#include <gtest/gtest.h>

#include <tuple>

namespace apsis::wire {
namespace {

TEST(Frame, RoundTripsAndDecodesIncrementally) {
  Frame f{kind::request, opcode::put, 7, 0x1122334455667788ull, std::string("body\0bytes", 10)};
  std::string wire;
  encode_frame(f, wire);
  encode_frame(f, wire);
  ASSERT_EQ(wire.size(), 2 * (header_size + 10));
  size_t pos = 0;
  Frame got;
  error_code code;
  std::string err;
  for (size_t cut = 0; cut < header_size + 10; ++cut) {
    size_t p = 0;
    EXPECT_EQ(decode_frame(std::string_view(wire).substr(0, cut), &p, &got, default_max_frame,
                           &code, &err),
              Decode::incomplete)
        << cut;
    EXPECT_EQ(p, 0u);
  }
  ASSERT_EQ(decode_frame(wire, &pos, &got, default_max_frame, &code, &err), Decode::complete);
  EXPECT_EQ(got.k, kind::request);
  EXPECT_EQ(got.op, opcode::put);
  EXPECT_EQ(got.flags, 7);
  EXPECT_EQ(got.id, f.id);
  EXPECT_EQ(got.body, f.body);
  ASSERT_EQ(decode_frame(wire, &pos, &got, default_max_frame, &code, &err), Decode::complete);
  EXPECT_EQ(pos, wire.size());
}

TEST(Frame, OversizedShortAndUnknownFramesAreErrors) {
  std::string wire;
  encode_frame(Frame{kind::request, opcode::get, 0, 1, std::string(100, 'x')}, wire);
  size_t pos = 0;
  Frame got;
  error_code code;
  std::string err;
  EXPECT_EQ(decode_frame(wire, &pos, &got, 64, &code, &err), Decode::error);
  EXPECT_EQ(code, error_code::too_large);
  std::string shorty("\x03\x00\x00\x00xyz", 7);
  EXPECT_EQ(decode_frame(shorty, &pos, &got, 1024, &code, &err), Decode::error);
  EXPECT_EQ(code, error_code::malformed);
  wire[4] = 9;  // no such kind
  EXPECT_EQ(decode_frame(wire, &pos, &got, 1024, &code, &err), Decode::error);
  EXPECT_NE(err.find("kind"), std::string::npos);
}

TEST(Request, EveryOpcodeRoundTrips) {
  Request put;
  put.op = opcode::put;
  put.ns = "accounts";
  put.key = std::string("k\0ey", 4);
  put.cond = op_cond::if_version;
  put.expected = {42, 3};
  put.fence = 99;
  put.expiry_ms = 123456;
  put.user_flags = 0xabcdef;
  put.json = R"({"a":1})";
  put.data = std::string(1000, '\xff');
  auto req = [](opcode op, std::string ns = {}, std::string key = {}) {
    Request q;
    q.op = op;
    q.ns = std::move(ns);
    q.key = std::move(key);
    return q;
  };
  Request lock = req(opcode::lock, "ns", "k");
  lock.lease_ms = 5000;
  Request unlock = req(opcode::unlock, "ns", "k");
  unlock.token = 77;
  Request replica = put;
  replica.op = opcode::replica;
  replica.inner = opcode::put;
  replica.backend = 7;
  replica.version = {1ull << 40, 1ull << 63};
  Request admin = req(opcode::admin);
  admin.data = R"({"cmd": "routes"})";
  Request some_groups = put;
  some_groups.groups = {2, 1u << 31};
  for (const Request& q :
       {put, lock, unlock, req(opcode::get, "n", "k"), req(opcode::del, "n", "k"),
        req(opcode::stat), replica, admin, some_groups}) {
    std::string body = encode_request(q);
    Request back;
    std::string err;
    const uint16_t flags = request_flags(q);
    ASSERT_TRUE(decode_request(q.op, body, &back, &err, flags)) << err;
    EXPECT_EQ(back.groups, q.groups);
    EXPECT_EQ(back.ns, q.ns);
    EXPECT_EQ(back.key, q.key);
    EXPECT_EQ(back.cond, q.cond);
    EXPECT_EQ(back.expected, q.expected);
    EXPECT_EQ(back.fence, q.fence);
    EXPECT_EQ(back.data, q.data);
    EXPECT_EQ(back.json, q.json);
    EXPECT_EQ(back.lease_ms, q.lease_ms);
    EXPECT_EQ(back.token, q.token);
    EXPECT_EQ(back.inner, q.inner);
    EXPECT_EQ(back.backend, q.backend);
    EXPECT_EQ(back.version, q.version);
    // Every truncation, and one trailing byte, is refused.
    for (size_t n = 0; n < body.size(); ++n)
      EXPECT_FALSE(decode_request(q.op, body.substr(0, n), &back, &err, flags)) << n;
    EXPECT_FALSE(decode_request(q.op, body + "x", &back, &err, flags));
  }
}

TEST(Response, CarriesOneEntryPerReplica) {
  Response r;
  r.status = op_status::ok;
  r.version = {5, 6};
  r.existed = true;
  r.data = "value";
  r.json = "{}";
  r.expiry_ms = 9;
  r.replicas = {{1, "node-a", 2, op_status::ok, {5, 6}}, {2, "node-b", 1, op_status::timeout, {}}};
  std::string body = encode_response(opcode::get, r);
  Response back;
  std::string err;
  ASSERT_TRUE(decode_response(opcode::get, body, &back, &err)) << err;
  EXPECT_EQ(back.data, "value");
  EXPECT_EQ(back.version, r.version);
  ASSERT_EQ(back.replicas.size(), 2u);
  EXPECT_EQ(back.replicas[1].node, "node-b");
  EXPECT_EQ(back.replicas[1].status, op_status::timeout);
  for (size_t n = 0; n < body.size(); ++n)
    EXPECT_FALSE(decode_response(opcode::get, body.substr(0, n), &back, &err)) << n;
}

TEST(List, RequestAndPageRoundTrip) {
  Request q;
  q.op = opcode::list;
  q.ns = "ns";
  q.cursor = "12345";
  q.limit = 500;
  q.match = "a*";
  q.payload = true;
  q.tombstones = true;
  q.version = {9, 1};
  Request back;
  std::string err;
  ASSERT_TRUE(decode_request(opcode::list, encode_request(q), &back, &err)) << err;
  EXPECT_EQ(back.ns, "ns");
  EXPECT_EQ(back.cursor, "12345");
  EXPECT_EQ(back.limit, 500u);
  EXPECT_EQ(back.match, "a*");
  EXPECT_TRUE(back.payload && back.tombstones);
  EXPECT_EQ(back.version, q.version);
  EXPECT_FALSE(decode_request(opcode::list, encode_request(q), &back, &err, flag_groups));
  Response r;
  r.cursor = "0";
  r.listed.resize(2);
  r.listed[0].meta.key = "k";
  r.listed[0].meta.data_size = 3;
  r.listed[0].data = "abc";
  r.listed[1].meta.key = "gone";
  r.listed[1].meta.tombstone = true;
  const std::string body = encode_response(opcode::list, r);
  Response got;
  ASSERT_TRUE(decode_response(opcode::list, body, &got, &err)) << err;
  EXPECT_EQ(got.cursor, "0");
  ASSERT_EQ(got.listed.size(), 2u);
  EXPECT_EQ(got.listed[0].data, "abc");
  EXPECT_EQ(got.listed[0].meta.data_size, 3u);
  EXPECT_TRUE(got.listed[1].meta.tombstone);
  for (size_t n = 0; n < body.size(); ++n)
    EXPECT_FALSE(decode_response(opcode::list, body.substr(0, n), &got, &err)) << n;
}

TEST(Parts, PartCommitAndReadRoundTrip) {
  std::string err;
  Request part;
  part.op = opcode::part;
  part.ns = "ns";
  part.key = "k";
  part.upload = "0123456789abcdef";
  part.offset = 7;
  part.data = std::string(1000, 'x');
  Request commit = part;
  commit.op = opcode::commit;
  commit.data.clear();
  commit.offset = 0;
  commit.length = 5ull << 30;
  commit.cond = op_cond::if_version;
  commit.expected = {3, 4};
  commit.expiry_ms = 99;
  Request read = part;
  read.op = opcode::read;
  read.upload.clear();
  read.data.clear();
  read.offset = 1ull << 33;
  read.length = 4096;
  for (const Request& q : {part, commit, read}) {
    Request back;
    ASSERT_TRUE(decode_request(q.op, encode_request(q), &back, &err)) << err;
    EXPECT_EQ(encode_request(back), encode_request(q));
    EXPECT_EQ(back.upload, q.upload);
    EXPECT_EQ(back.offset, q.offset);
    EXPECT_EQ(back.length, q.length);
    EXPECT_EQ(back.data, q.data);
  }
  Response r;
  r.total = 1ull << 32;
  r.data = "slice";
  Response got;
  ASSERT_TRUE(decode_response(opcode::read, encode_response(opcode::read, r), &got, &err)) << err;
  EXPECT_EQ(got.total, r.total);
  EXPECT_EQ(got.data, "slice");
}

TEST(Login, StepsRoundTripAndABadStepIsMalformed) {
  std::string err;
  Request q;
  q.op = opcode::login;
  q.step = 2;
  q.key = "alice";
  q.data = std::string(32, '\x7f');
  Request back;
  ASSERT_TRUE(decode_request(q.op, encode_request(q), &back, &err)) << err;
  EXPECT_EQ(std::make_tuple(int(back.step), back.key, back.data),
            std::make_tuple(int(q.step), q.key, q.data));
  q.step = 3;
  EXPECT_FALSE(decode_request(q.op, encode_request(q), &back, &err));
  EXPECT_EQ(err, "a login has steps 1 and 2, not 3");
  Response r;
  r.iterations = 100000;
  r.salt = std::string(16, 's');
  r.nonce = "n0nce";
  r.status = op_status::denied;
  Response got;
  ASSERT_TRUE(decode_response(opcode::login, encode_response(opcode::login, r), &got, &err)) << err;
  EXPECT_EQ(std::make_tuple(got.iterations, got.salt, got.nonce),
            std::make_tuple(r.iterations, r.salt, r.nonce));
  EXPECT_EQ(got.status, op_status::denied);
}

TEST(Hello, AndErrorRoundTrip) {
  Hello h{1, 3, "apsis-cli", 1 << 20};
  Hello back;
  std::string err;
  ASSERT_TRUE(decode_hello(encode_hello(h), &back, &err));
  EXPECT_EQ(back.max_version, 3);
  EXPECT_EQ(back.name, "apsis-cli");
  error_code code;
  std::string msg;
  ASSERT_TRUE(decode_error(encode_error(error_code::hello_first, "say hello"), &code, &msg));
  EXPECT_EQ(code, error_code::hello_first);
  EXPECT_EQ(msg, "say hello");
}

}  // namespace
}  // namespace apsis::wire
