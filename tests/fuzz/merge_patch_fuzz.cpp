// libFuzzer: a JSON document and an RFC 7386 merge patch (the input split at its first NUL),
// through the REST PATCH step. The write it makes must be the document merged with the
// patch, valid JSON, and patching again must change nothing (a merge patch is idempotent).
#include <cstdint>
#include <string>

#include "frontends/rest.hpp"

using namespace apsis;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  if (nul == std::string::npos) return 0;
  json target = json::parse(in.substr(0, nul), nullptr, false);
  json patch = json::parse(in.substr(nul + 1), nullptr, false);
  if (target.is_discarded() || patch.is_discarded()) return 0;

  rest::Request req(rest::http::verb::patch, "/v1/ns/default/keys/k", 11);
  req.set(rest::http::field::content_type, "application/merge-patch+json");
  req.body() = patch.dump();
  req.prepare_payload();
  rest::Call call;
  rest::Response err;
  if (!rest::route(req, storage::Limits{}, &call, &err)) __builtin_trap();  // a valid patch routes
  op_result read;
  read.status = op_status::ok;
  read.record.json = target.dump();
  read.version = {42, 1};
  kv_op write;
  rest::Response done;
  if (!rest::patch_step(call, read, req, &write, &done)) __builtin_trap();
  json want = target;
  want.merge_patch(patch);
  json got = json::parse(write.json, nullptr, false);
  if (got.is_discarded() || got != want) __builtin_trap();
  if (write.cond != op_cond::if_version || write.expected != read.version) __builtin_trap();
  json again = got;
  again.merge_patch(patch);
  if (again != got) __builtin_trap();
  return 0;
}
