// libFuzzer: a JSON document and an RFC 7386 merge patch (the input split at its first NUL),
// through REST's PATCH: it routes to a merge-patch change carrying the patch, and that change
// applied to the document must be the document merged with the patch, valid JSON, and
// applying it again must change nothing (a merge patch is idempotent).
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
  const kv_op& op = call.ops.at(0);
  if (op.kind != op_kind::change || op.change.kind != value_change::merge_patch) __builtin_trap();
  std::string merged, twice, why;
  bool write = false;
  if (!apply_change(op.change, op.data, true, target.dump(), &merged, &write, &why))
    return 0;  // the limit: a patched document too large
  json want = target;
  want.merge_patch(patch);
  json got = json::parse(merged, nullptr, false);
  if (got.is_discarded() || got != want) __builtin_trap();
  if (!apply_change(op.change, op.data, true, merged, &twice, &write, &why) || twice != merged)
    __builtin_trap();
  return 0;
}
