// libFuzzer: arbitrary bytes as an HTTP request: Beast parses it (with the server's header
// limit), the REST layer routes it, and every response the call can lead to is built from
// results the input also chooses. Must never crash or throw; a refused request always
// answers a 4xx with a JSON body that says why.
#include <boost/beast/core.hpp>

#include <cstdint>
#include <string>

#include "frontends/rest.hpp"

using namespace apsis;
namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  http::request_parser<http::string_body> parser;
  parser.header_limit(8 * 1024);
  parser.body_limit(1 << 16);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(in), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  rest::Request req = parser.release();
  storage::Limits limits;
  limits.max_value_size = 4096;
  rest::Call call;
  rest::Response err;
  if (!rest::route(req, limits, &call, &err)) {
    unsigned code = err.result_int();
    if (code < 400 || code >= 500) __builtin_trap();
    auto body = nlohmann::json::parse(err.body(), nullptr, false);
    if (!body.is_object() || !body.contains("error")) __builtin_trap();
    return 0;
  }
  // Results chosen by the input's last bytes: each status, a record with both parts.
  uint8_t pick = size ? data[size - 1] : 0;
  result_batch rs(call.ops.size());
  for (size_t i = 0; i < rs.size(); ++i) {
    op_result& r = rs[i];
    r.status = op_status((pick + i) % 10);
    r.version = {pick * 65536ull + i, 1};
    r.record.json = pick & 1 ? std::string(req.body()) : "{\"a\":1}";
    r.record.data = pick & 2 ? "bin" : "";
    r.existed = pick & 4;
    r.replicas.push_back({1, "n\xff", 1, r.status, r.version});
  }
  switch (call.kind) {
    case rest::Kind::key:
    case rest::Kind::patch: {
      uint64_t first = 0, last = 0;  // as if the key held a large value of `size` bytes
      const uint64_t size = uint64_t(pick) << (pick % 40);
      rest::Response head = rest::large_response(call, req, rs.at(0), size, &first, &last);
      if (first <= last && (last >= size || head.result_int() >= 300)) __builtin_trap();
      rest::key_response(call, req, rs.at(0));
      break;
    }
    case rest::Kind::bulk_get:
    case rest::Kind::bulk_put:
      rest::bulk_response(call, req, rs);
      break;
    case rest::Kind::ns_create:
    case rest::Kind::ns_drop: {
      kv_op write;
      rest::Response done;
      if (rest::catalog_step(call, rs.at(0), req, &write, &done) &&
          !nlohmann::json::accept(write.json))
        __builtin_trap();
      break;
    }
    case rest::Kind::list_keys: {  // a page of keys made of the body's bytes (any bytes)
      rest::ListPage page;
      page.status = op_status(pick % 10);
      page.cursor = pick & 1 ? "0" : "12345";
      for (size_t at = 0; at < req.body().size(); at += 7) {
        page.records.emplace_back().meta.key = req.body().substr(at, 7);
        page.records.back().meta.expiry_ms = pick;
      }
      rest::list_response(call, req, page);
      break;
    }
    default:
      break;
  }
  return 0;
}
