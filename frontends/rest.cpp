#include "frontends/rest.hpp"

#include <charconv>
#include <map>

#include "config/users.hpp"
#include "messages/large.hpp"
#include "storage/id.hpp"

namespace apsis::rest {

using nlohmann::json;

namespace {

constexpr size_t max_bulk = 10000;  ///< keys or items in one bulk call

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool is_json_type(std::string_view t) {
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t == "application/json" || (t.size() > 5 && t.substr(t.size() - 5) == "+json");
}

std::string header(const Request& req, std::string_view name) {
  auto it = req.find(boost::beast::string_view(name.data(), name.size()));
  return it == req.end() ? std::string() : std::string(it->value());
}

/// The query's parameters, decoded; false with *why if one is malformed.
bool parse_query(std::string_view q, std::map<std::string, std::string>* out, std::string* why) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string k, v;
    if (!percent_decode(part.substr(0, eq), &k) ||
        (eq != std::string_view::npos && !percent_decode(part.substr(eq + 1), &v)))
      return *why = "malformed percent-encoding in the query", false;
    (*out)[k] = v;
  }
  return true;
}

/// The options every key and bulk call shares: policy, read policy, groups, TTL, fence.
struct Options {
  uint8_t policy = 0;
  uint8_t read = 0;  ///< ?read= (?latest=true: all)
  std::vector<uint32_t> groups;
  uint64_t expiry_ms = 0;
  uint64_t fence = 0;
};

bool parse_options(std::map<std::string, std::string>& q, const Request& req, Options* o,
                   bool* verbose, std::string* why) {
  auto take = [&](const char* name, std::string* v) {
    auto it = q.find(name);
    if (it == q.end()) return false;
    *v = std::move(it->second);
    q.erase(it);
    return true;
  };
  std::string v;
  for (auto [name, out] : {std::pair{"policy", &o->policy}, std::pair{"read", &o->read}}) {
    success_policy p;
    if (!take(name, &v)) continue;
    if (!parse_policy(v, &p))
      return *why = std::string(name) + " must be one, quorum or all, not '" + v + "'", false;
    *out = uint8_t(uint8_t(p) + 1);
  }
  if (take("latest", &v)) {
    if (v != "true" && v != "false" && v != "1" && v != "0")
      return *why = "latest must be true or false", false;
    if (v == "true" || v == "1") o->read = uint8_t(success_policy::all) + 1;
  }
  if (take("verbose", &v)) {
    if (v != "1" && v != "0" && v != "true" && v != "false")
      return *why = "verbose must be 1 or 0", false;
    *verbose = v == "1" || v == "true";
  }
  if (take("groups", &v)) {
    for (size_t pos = 0; pos <= v.size();) {
      size_t comma = v.find(',', pos);
      if (comma == std::string::npos) comma = v.size();
      uint64_t g;
      if (!parse_u64(std::string_view(v).substr(pos, comma - pos), &g) || g > UINT32_MAX)
        return *why = "groups must be a comma-separated list of group numbers, not '" + v + "'",
               false;
      o->groups.push_back(uint32_t(g));
      pos = comma + 1;
    }
  }
  std::string ttl = header(req, "X-Apsis-TTL");
  if (take("ttl", &v)) ttl = v;
  if (!ttl.empty()) {
    uint64_t s;
    if (!parse_u64(ttl, &s) || s == 0 || s > 100ull * 365 * 86400)
      return *why = "ttl must be a number of seconds, at least 1, not '" + ttl + "'", false;
    o->expiry_ms = storage::now_ms() + s * 1000;
  }
  std::string fence = header(req, "X-Apsis-Fence");
  if (!fence.empty() && !parse_u64(fence, &o->fence))
    return *why = "X-Apsis-Fence must be a lock's token (a number)", false;
  return true;
}

kv_op make_op(op_kind kind, const std::string& ns, std::string key, const Options& o) {
  kv_op op;
  op.kind = kind;
  op.id = storage::make_id(ns, key);
  op.key = std::move(key);
  op.policy = o.policy;
  op.read = o.read;
  op.groups = o.groups;
  op.fence = o.fence;
  op.expiry_ms = o.expiry_ms;
  return op;
}

/// If-Match / If-None-Match on a write, as its condition.
bool write_condition(const Request& req, kv_op* op, std::string* why) {
  std::string match = header(req, "If-Match"), none = header(req, "If-None-Match");
  if (!match.empty() && !none.empty()) return *why = "If-Match and If-None-Match together", false;
  if (match == "*")
    op->cond = op_cond::if_present;
  else if (!match.empty()) {
    if (!parse_etag(match, &op->expected))
      return *why = "If-Match must be an ETag this server gave (\"ms.counter@node\") or *", false;
    op->cond = op_cond::if_version;
  }
  if (none == "*")
    op->cond = op_cond::if_absent;
  else if (!none.empty())
    return *why = "a write takes If-None-Match: * only", false;
  return true;
}

/// A Range header over a value of `total` bytes: one range (RFC 9110: a-b, a-, -n) gives
/// [*first, *last]; several, or another unit, give *last = SIZE_MAX (send it all); false if
/// the range holds no byte of the value (416).
bool parse_range(std::string_view r, size_t total, size_t* first, size_t* last) {
  *last = SIZE_MAX;
  if (r.substr(0, 6) != "bytes=" || r.find(',') != std::string_view::npos) return true;
  r.remove_prefix(6);
  size_t dash = r.find('-');
  uint64_t a = 0, b = 0;
  if (dash == std::string_view::npos) return true;
  const bool has_a = parse_u64(r.substr(0, dash), &a), has_b = parse_u64(r.substr(dash + 1), &b);
  if (!has_a && !has_b) return true;  // malformed: ignored, as RFC 9110 allows
  if (!has_a) {                       // the last b bytes
    if (b == 0 || total == 0) return false;
    *first = total - std::min<uint64_t>(b, total);
    *last = total - 1;
    return true;
  }
  if (a >= total) return false;
  if (has_b && b < a) return true;  // invalid: ignored
  *first = a;
  *last = has_b ? std::min<uint64_t>(b, total - 1) : total - 1;
  return true;
}

Want wanted(const Request& req) {
  std::string a = header(req, "Accept");
  bool j = a.find("application/json") != std::string::npos;
  bool d = a.find("application/octet-stream") != std::string::npos;
  return j && !d ? Want::json : d && !j ? Want::data : Want::any;
}

json replicas_json(const op_result& r) {
  json out = json::array();
  for (const auto& e : r.replicas)
    out.push_back({{"group", e.group},
                   {"node", e.node},
                   {"backend", e.backend},
                   {"status", to_string(e.status)},
                   {"version", version_text(e.version)}});
  return out;
}

std::string replicas_header(const op_result& r) {
  std::string out;
  for (const auto& e : r.replicas) {
    if (!out.empty()) out += ", ";
    out += std::to_string(e.group) + "/" + e.node + "/" + std::to_string(e.backend) + "=" +
           to_string(e.status);
  }
  return out;
}

Response empty(const Request& req, http::status s) {
  Response res(s, req.version());
  res.set(http::field::server, "apsisd");
  res.keep_alive(req.keep_alive());
  return res;
}

/// A record as JSON (bulk and verbose bodies): the JSON part embedded, the data part in base64.
json record_json(const op_result& r) {
  json out{{"version", version_text(r.version)}};
  if (!r.record.json.empty()) out["json"] = json::parse(r.record.json, nullptr, false);
  if (!r.record.data.empty()) out["data"] = base64(r.record.data);
  if (r.record.expiry_ms) out["expiry_ms"] = r.record.expiry_ms;
  if (r.record.user_flags) out["flags"] = r.record.user_flags;
  return out;
}

/// A failed operation: its status, why, and every replica's entry.
Response failure(const Request& req, const op_result& r) {
  json body{{"error", r.message.empty() ? std::string(to_string(r.status)) : r.message},
            {"status", to_string(r.status)},
            {"replicas", replicas_json(r)}};
  return json_response(req, status_of(r.status), body);
}

}  // namespace

http::status status_of(op_status s) {
  switch (s) {
    case op_status::ok:
      return http::status::ok;
    case op_status::not_found:
      return http::status::not_found;
    case op_status::condition_failed:
      return http::status::precondition_failed;
    case op_status::stale:
    case op_status::fenced:
      return http::status::conflict;
    case op_status::invalid:
      return http::status::bad_request;
    case op_status::denied:
      return http::status::forbidden;
    case op_status::timeout:
    case op_status::unavailable:
      return http::status::service_unavailable;
    default:
      return http::status::internal_server_error;
  }
}

std::string version_text(const storage::Version& v) { return v.to_string(); }

std::string etag(const storage::Version& v) { return "\"" + version_text(v) + "\""; }

bool parse_etag(std::string_view t, storage::Version* out) {
  if (t.size() >= 2 && t.substr(0, 2) == "W/") t.remove_prefix(2);  // weak: same version
  if (t.size() < 2 || t.front() != '"' || t.back() != '"') return false;
  return storage::Version::parse(t.substr(1, t.size() - 2), out);
}

bool percent_decode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;  // two hex digits must follow
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(char(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool valid_ns(const std::string& ns) {
  if (ns.empty() || ns.size() > 64) return false;
  for (char c : ns)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  return true;
}

Response error(const Request& req, http::status s, const std::string& why) {
  return json_response(req, s, json{{"error", why}});
}

Response json_response(const Request& req, http::status s, const json& body) {
  Response res = empty(req, s);
  res.set(http::field::content_type, "application/json");
  // Keys in a path may be any bytes: what is not UTF-8 shows as U+FFFD rather than throwing.
  res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  res.prepare_payload();
  return res;
}

namespace {

/// One request's way through the routes: what it asks for goes into *call; a refusal, into
/// *err (each method's false).
class Router {
 public:
  Router(Request& req, const storage::Limits& limits, Call* call, Response* err)
      : req_(req), limits_(limits), call_(call), err_(err), verb_(req.method()) {}

  bool route() {
    std::string_view target(req_.target().data(), req_.target().size());
    size_t qmark = target.find('?');
    path_ = target.substr(0, qmark);
    std::string why;
    if (qmark != std::string_view::npos && !parse_query(target.substr(qmark + 1), &query_, &why))
      return fail(http::status::bad_request, why);
    call_->head = verb_ == http::verb::head;
    static const std::pair<const char*, Kind> fixed[] = {
        {"/healthz", Kind::healthz},    {"/readyz", Kind::readyz},
        {"/metrics", Kind::metrics},    {"/v1/stats", Kind::stats},
        {"/v1/cluster", Kind::cluster}, {"/v1/cluster/routes", Kind::routes},
        {"/v1/ns", Kind::ns_list}};
    for (const auto& [p, kind] : fixed)
      if (path_ == p) {
        call_->kind = kind;
        return only({http::verb::get, http::verb::head}) && no_query();
      }
    constexpr std::string_view prefix = "/v1/ns/";
    if (path_.substr(0, prefix.size()) != prefix)
      return fail(http::status::not_found, "no route " + std::string(path_));
    std::string_view rest = path_.substr(prefix.size());
    size_t slash = rest.find('/');
    if (!percent_decode(rest.substr(0, slash), &call_->ns) || !valid_ns(call_->ns))
      return fail(http::status::bad_request, "a namespace is 1-64 of [A-Za-z0-9_.-]");
    if (slash == std::string_view::npos) return a_namespace();
    rest.remove_prefix(slash + 1);
    if (!parse_options(query_, req_, &opts_, &call_->verbose, &why))
      return fail(http::status::bad_request, why);
    if (rest == "bulk/get" || rest == "bulk/put") return bulk(rest == "bulk/get");
    if (starts(rest, "locks/")) return lock(rest.substr(6));
    if (rest == "keys" || (rest == "keys/" && verb_ == http::verb::get)) return list_keys();
    if (!starts(rest, "keys/"))
      return fail(http::status::not_found, "no route " + std::string(req_.target()));
    return key(rest.substr(5));
  }

 private:
  bool fail(http::status s, const std::string& why) { return *err_ = error(req_, s, why), false; }

  static bool starts(std::string_view s, std::string_view what) {
    return s.substr(0, what.size()) == what;
  }

  /// Whether the verb is one of these; else a 405 naming them.
  bool only(std::initializer_list<http::verb> verbs) {
    for (auto v : verbs)
      if (v == verb_) return true;
    std::string allowed;
    for (auto v : verbs) allowed += (allowed.empty() ? "" : ", ") + std::string(http::to_string(v));
    *err_ = error(
        req_, http::status::method_not_allowed,
        std::string(req_.method_string()) + " " + std::string(path_) + ": allowed " + allowed);
    err_->set(http::field::allow, allowed);
    return false;
  }

  bool no_query() {
    if (query_.empty()) return true;
    return fail(http::status::bad_request,
                "unknown query parameter '" + query_.begin()->first + "'");
  }

  /// Keys may hold '/': everything after "keys/" or "locks/" is the key, percent-decoded.
  bool key_from(std::string_view encoded) {
    if (!percent_decode(encoded, &call_->key))
      return fail(http::status::bad_request, "malformed percent-encoding in the key");
    if (call_->key.empty()) return fail(http::status::bad_request, "empty key");
    if (call_->key.size() > std::min(limits_.max_key_size, storage::Limits::key_hard_max))
      return fail(http::status::bad_request,
                  "key of " + std::to_string(call_->key.size()) + " bytes exceeds the limit");
    return true;
  }

  /// /v1/ns/{ns}: PUT creates, DELETE drops (both patch the catalog).
  bool a_namespace() {
    if (!only({http::verb::put, http::verb::delete_}) || !no_query()) return false;
    call_->kind = verb_ == http::verb::put ? Kind::ns_create : Kind::ns_drop;
    call_->ops.push_back(make_op(op_kind::get, system_ns, catalog_key, {}));
    call_->ops.back().read =
        uint8_t(success_policy::all) + 1;  // the newest catalog any replica holds
    return true;
  }

  bool bulk(bool get) {
    if (!only({http::verb::post}) || !no_query()) return false;
    json body = json::parse(req_.body(), nullptr, false);
    call_->kind = get ? Kind::bulk_get : Kind::bulk_put;
    const char* field = get ? "keys" : "items";
    if (!body.is_object() || !body.contains(field) || !body[field].is_array())
      return fail(http::status::bad_request,
                  std::string("the body must be a JSON object with an array \"") + field + "\"");
    if (body[field].size() > max_bulk)
      return fail(http::status::payload_too_large,
                  "at most " + std::to_string(max_bulk) + " per bulk call");
    for (auto& item : body[field]) {
      if (!get && !item.is_object())
        return fail(http::status::bad_request, "every item must be a JSON object");
      const json& k = get ? item : item.value("key", json());
      if (!k.is_string() || k.get_ref<const std::string&>().empty())
        return fail(http::status::bad_request,
                    get ? "keys must be non-empty strings" : "every item needs a \"key\" string");
      kv_op op = make_op(get ? op_kind::get : op_kind::put, call_->ns, k.get<std::string>(), opts_);
      if (!get && !bulk_item(item, op)) return false;
      call_->ops.push_back(std::move(op));
    }
    return true;
  }

  /// A bulk put's item: its json, base64 data and ttl.
  bool bulk_item(json& item, kv_op& op) {
    if (item.contains("json")) op.json = item["json"].dump();
    if (item.contains("data") &&
        (!item["data"].is_string() || !unbase64(item["data"].get<std::string>(), &op.data)))
      return fail(http::status::bad_request, "item " + op.key + ": data must be base64");
    if (item.contains("ttl")) {
      if (!item["ttl"].is_number_unsigned() || item["ttl"].get<uint64_t>() == 0)
        return fail(http::status::bad_request,
                    "item " + op.key + ": ttl must be a number of seconds, at least 1");
      op.expiry_ms = storage::now_ms() + item["ttl"].get<uint64_t>() * 1000;
    }
    if (op.json.size() + op.data.size() > limits_.max_value_size)
      return fail(http::status::payload_too_large,
                  "item " + op.key + ": value exceeds the limit of " +
                      std::to_string(limits_.max_value_size) + " bytes");
    return true;
  }

  /// /v1/ns/{ns}/locks/{key}: POST ?lease_ms= takes, DELETE ?token= releases.
  bool lock(std::string_view encoded_key) {
    if (!key_from(encoded_key) || !only({http::verb::post, http::verb::delete_})) return false;
    std::string v = query_.count("lease_ms") ? query_["lease_ms"]
                    : query_.count("token")  ? query_["token"]
                                             : "";
    uint64_t n = 0;
    if (verb_ == http::verb::post) {
      call_->kind = Kind::lock;
      if (!parse_u64(v.empty() ? "10000" : v, &n) || n == 0 || n > 3600000 || query_.count("token"))
        return fail(http::status::bad_request, "lease_ms must be 1..3600000");
      call_->lease_ms = uint32_t(n);
    } else {
      call_->kind = Kind::unlock;
      if (!parse_u64(v, &n) || query_.count("lease_ms"))
        return fail(http::status::bad_request, "unlock needs ?token=");
      call_->token = n;
    }
    query_.erase("lease_ms");
    query_.erase("token");
    return no_query();
  }

  /// /v1/ns/{ns}/keys?prefix=&match=&cursor=&limit=&long=: a page of the namespace's keys.
  bool list_keys() {
    if (!only({http::verb::get})) return false;
    call_->kind = Kind::list_keys;
    std::string why;
    auto take = [&](const char* name) {
      auto it = query_.find(name);
      if (it == query_.end()) return std::string();
      std::string v = std::move(it->second);
      query_.erase(it);
      return v;
    };
    const std::string prefix = take("prefix"), match = take("match"), cursor = take("cursor"),
                      limit = take("limit"), long_form = take("long");
    if (!prefix.empty() && !match.empty())
      return fail(http::status::bad_request, "give prefix or match, not both");
    call_->list.match = !prefix.empty() ? prefix_glob(prefix) : match;
    if (!parse_cursor(cursor.empty() ? "0" : cursor, &call_->list_from, &why))
      return fail(http::status::bad_request, why);
    uint64_t n = 100;
    if (!limit.empty() && (!parse_u64(limit, &n) || n == 0 || n > list_limit_max))
      return fail(http::status::bad_request, "limit must be 1.." + std::to_string(list_limit_max));
    call_->list_limit = n;
    call_->list.count = uint32_t(std::max<uint64_t>(n, 100));
    if (!long_form.empty() && long_form != "0" && long_form != "1" && long_form != "true" &&
        long_form != "false")
      return fail(http::status::bad_request, "long must be 1 or 0");
    call_->list_long = long_form == "1" || long_form == "true";
    return no_query();
  }

  /// /v1/ns/{ns}/keys/{key}: GET, HEAD, PUT, DELETE, PATCH.
  bool key(std::string_view encoded_key) {
    const size_t slash = encoded_key.rfind('/');
    if (verb_ == http::verb::post && slash != std::string_view::npos &&
        (encoded_key.substr(slash + 1) == "incr" || encoded_key.substr(slash + 1) == "append"))
      return action(encoded_key.substr(0, slash), encoded_key.substr(slash + 1));
    if (!key_from(encoded_key) || !no_query()) return false;
    if (!only({http::verb::get, http::verb::head, http::verb::put, http::verb::delete_,
               http::verb::patch}))
      return false;
    call_->kind = Kind::key;
    call_->want = wanted(req_);
    switch (verb_) {
      case http::verb::get:
      case http::verb::head:
        call_->ops.push_back(
            make_op(call_->head ? op_kind::lookup : op_kind::get, call_->ns, call_->key, opts_));
        call_->if_none_match = header(req_, "If-None-Match");
        return true;
      case http::verb::put:
        return put();
      case http::verb::delete_:
        return remove();
      default:
        return patch();
    }
  }

  bool put() {
    kv_op op = make_op(op_kind::put, call_->ns, call_->key, opts_);
    op.report_existed = true;  // 201 or 200
    std::string why;
    if (!write_condition(req_, &op, &why)) return fail(http::status::bad_request, why);
    if (req_.body().size() > limits_.max_value_size)
      return fail(http::status::payload_too_large,
                  "value of " + std::to_string(req_.body().size()) +
                      " bytes exceeds the limit of " + std::to_string(limits_.max_value_size));
    if (is_json_type(header(req_, "Content-Type"))) {
      if (!json::accept(req_.body()))
        return fail(http::status::bad_request, "the body is not a valid JSON document");
      op.json = std::move(req_.body());
    } else {
      op.data = std::move(req_.body());
    }
    call_->ops.push_back(std::move(op));
    return true;
  }

  bool remove() {
    kv_op op = make_op(op_kind::remove, call_->ns, call_->key, opts_);
    std::string why;
    if (!write_condition(req_, &op, &why)) return fail(http::status::bad_request, why);
    if (op.cond == op_cond::if_absent)
      return fail(http::status::bad_request, "DELETE takes If-Match only");
    call_->ops.push_back(std::move(op));
    return true;
  }

  /// POST /v1/ns/{ns}/keys/{key}/incr?by=N (an integer, or a decimal for a float increment)
  /// and POST .../{key}/append (the body's bytes): changes computed by the key's owner in one
  /// group, as RESP's INCRBY, INCRBYFLOAT and APPEND are. The key is what comes before the
  /// last '/' (keys may hold '/', and POST names an action; any other POST is a 405).
  bool action(std::string_view encoded_key, std::string_view name) {
    if (!key_from(encoded_key)) return false;
    call_->kind = Kind::key;
    kv_op op = make_op(op_kind::change, call_->ns, call_->key, opts_);
    op.change.max_size = limits_.max_value_size;
    if (name == "append") {
      op.change.kind = value_change::append;
      op.data = std::move(req_.body());
    } else {
      auto it = query_.find("by");
      const std::string by = it == query_.end() ? "1" : it->second;
      if (it != query_.end()) query_.erase(it);
      const bool decimal = by.find_first_of(".eE") != std::string::npos;
      op.change.kind = decimal ? value_change::incr_float : value_change::incr;
      if (decimal) {
        op.data = by;  // checked where it applies, as INCRBYFLOAT's argument
      } else if (!parse_integer(by, &op.change.by)) {
        return fail(http::status::bad_request,
                    "by must be an integer or a decimal, not '" + by + "'");
      }
    }
    call_->ops.push_back(std::move(op));
    return no_query();
  }

  /// A merge patch (RFC 7386) of the JSON part: a change computed by the key's owner in one
  /// group under its shard's lock (If-Match / If-None-Match checked there), then written to
  /// the other groups, as RESP's INCR is.
  bool patch() {
    std::string type = header(req_, "Content-Type");
    if (type.substr(0, type.find(';')) != "application/merge-patch+json" && !is_json_type(type))
      return fail(http::status::unsupported_media_type,
                  "PATCH takes application/merge-patch+json (RFC 7386)");
    if (!json::accept(req_.body()))
      return fail(http::status::bad_request, "the patch is not a valid JSON document");
    call_->kind = Kind::patch;
    kv_op op = make_op(op_kind::change, call_->ns, call_->key, opts_);
    std::string why;
    if (!write_condition(req_, &op, &why)) return fail(http::status::bad_request, why);
    op.change.kind = value_change::merge_patch;
    op.change.max_size = limits_.max_value_size;
    op.data = std::move(req_.body());
    call_->ops.push_back(std::move(op));
    return true;
  }

  Request& req_;
  const storage::Limits& limits_;
  Call* call_;
  Response* err_;
  const http::verb verb_;
  std::string_view path_;
  std::map<std::string, std::string> query_;
  Options opts_;
};

}  // namespace

bool route(Request& req, const storage::Limits& limits, Call* call, Response* err) {
  return Router(req, limits, call, err).route();
}

namespace {

/// A PUT's or DELETE's answer, with the headers already in `res`.
Response write_response(const Call& call, const Request& req, const op_result& r, Response res) {
  const op_kind kind = call.ops[0].kind;
  if (kind == op_kind::remove && !r.existed) {
    res = json_response(req, http::status::not_found,
                        json{{"error", "no such key"}, {"status", "not_found"}});
    res.set("X-Apsis-Replicas", replicas_header(r));
    return res;
  }
  json body{{"status", "ok"}, {"version", version_text(r.version)}, {"existed", r.existed}};
  if (kind == op_kind::change && call.ops[0].change.kind == value_change::append)
    body["length"] = r.record.data.size();
  else if (kind == op_kind::change && call.ops[0].change.kind != value_change::merge_patch)
    body["value"] = r.record.data;  // the number as Redis shows it (INCRBYFLOAT's text too)
  if (call.verbose) body["replicas"] = replicas_json(r);
  const bool created = (kind == op_kind::put || kind == op_kind::change) && !r.existed;
  Response out = json_response(req, created ? http::status::created : http::status::ok, body);
  for (const auto& f : res) out.set(f.name_string(), f.value());
  return out;
}

/// The value in res's body as the Range header asks: one byte range, a 206 with that slice;
/// several, the whole value; none in the value, a 416.
/// The bytes [*first, *last] of a value of `total` bytes that a Range header asks (*partial:
/// a 206), or the whole value without one; false with *refusal (a 416) when none of them is
/// in the value.
bool byte_range(const Request& req, size_t total, const storage::Version& version, size_t* first,
                size_t* last, bool* partial, Response* refusal) {
  const std::string range = header(req, "Range");
  *partial = false;
  if (!range.empty() && !parse_range(range, total, first, last)) {
    *refusal =
        error(req, http::status::range_not_satisfiable, "no byte of " + range + " is in the value");
    refusal->set(http::field::content_range, "bytes */" + std::to_string(total));
    refusal->set(http::field::etag, etag(version));
    return false;
  }
  *partial = !range.empty() && *last != SIZE_MAX;
  if (!*partial) *first = 0, *last = total ? total - 1 : 0;
  return true;
}

void mark_partial(Response& res, size_t first, size_t last, size_t total) {
  res.result(http::status::partial_content);
  res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" +
                                          std::to_string(last) + "/" + std::to_string(total));
}

Response with_range(const Request& req, const storage::Version& version, Response res) {
  const size_t total = res.body().size();
  size_t first = 0, last = 0;
  bool partial = false;
  Response refusal;
  if (!byte_range(req, total, version, &first, &last, &partial, &refusal)) return refusal;
  if (partial) {
    mark_partial(res, first, last, total);
    res.body() = res.body().substr(first, last - first + 1);
  }
  res.prepare_payload();
  return res;
}

/// A read's head after its ETag: expiry and flags; true when If-None-Match makes it a 304,
/// which is all there is to answer then.
bool read_head(const Call& call, const op_result& r, Response& res) {
  if (r.record.expiry_ms) res.set("X-Apsis-Expires", std::to_string(r.record.expiry_ms));
  if (uint32_t flags = r.record.user_flags & ~large::manifest_flag)
    res.set("X-Apsis-Flags", std::to_string(flags));
  if (call.if_none_match.empty() ||
      (call.if_none_match != etag(r.version) && call.if_none_match != "*"))
    return false;
  res.result(http::status::not_modified);
  return true;
}

Response no_json_part(const Request& req, const storage::Version& version) {
  Response out = error(req, http::status::not_acceptable,
                       "the record has no JSON part (its data part is binary)");
  out.set(http::field::etag, etag(version));
  return out;
}

}  // namespace

int needs(const Call& call, bool* global) {
  *global = false;
  switch (call.kind) {
    case Kind::healthz:
    case Kind::readyz:
      return -1;
    case Kind::key: {
      const op_kind k = call.ops.empty() ? op_kind::get : call.ops[0].kind;
      return k == op_kind::get || k == op_kind::lookup ? config::perm_read : config::perm_write;
    }
    case Kind::patch:
      return config::perm_read | config::perm_write;
    case Kind::bulk_get:
    case Kind::list_keys:
      return config::perm_read;
    case Kind::bulk_put:
    case Kind::lock:
    case Kind::unlock:
      return config::perm_write;
    case Kind::ns_create:
    case Kind::ns_drop:
      return config::perm_admin;
    default:  // the namespace list, the cluster's state, stats, metrics: any user
      *global = true;
      return 0;
  }
}

bool basic_credentials(const Request& req, std::string* user, std::string* password) {
  const std::string h = header(req, "Authorization");
  std::string decoded;
  if (h.size() < 6 || !boost::beast::iequals(h.substr(0, 6), "Basic ") ||
      !unbase64(h.substr(6), &decoded))
    return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  *user = decoded.substr(0, colon);
  *password = decoded.substr(colon + 1);
  return true;
}

bool bearer_token(const Request& req, std::string* token) {
  const std::string h = header(req, "Authorization");
  if (h.size() < 8 || !boost::beast::iequals(h.substr(0, 7), "Bearer ")) return false;
  *token = h.substr(7);
  return true;
}

Response list_response(const Call& call, const Request& req, const ListPage& page) {
  if (page.status != op_status::ok) {
    op_result r;
    r.status = page.status;
    r.message = page.message;
    return failure(req, r);
  }
  json keys = json::array();
  for (const auto& e : page.records) {
    const storage::RecordMeta& m = e.meta;
    if (!call.list_long) {
      keys.push_back(m.key);
      continue;
    }
    json k{{"key", m.key},
           {"version", version_text(m.version)},
           {"json_size", m.json_size},
           {"data_size", large::value_size(m.user_flags, m.data_size, e.data)},
           {"flags", m.user_flags}};
    if (m.user_flags & large::manifest_flag) k["large"] = true;
    if (m.expiry_ms) k["expiry_ms"] = m.expiry_ms;
    keys.push_back(std::move(k));
  }
  return json_response(req, http::status::ok,
                       json{{"keys", std::move(keys)}, {"cursor", page.cursor}});
}

Response large_response(const Call& call, const Request& req, const op_result& r, uint64_t size,
                        uint64_t* first, uint64_t* last) {
  *first = 1, *last = 0;  // nothing to send, unless a body follows
  Response res = empty(req, http::status::ok);
  if (!r.replicas.empty()) res.set("X-Apsis-Replicas", replicas_header(r));
  res.set(http::field::etag, etag(r.version));
  if (read_head(call, r, res)) return res;
  if (call.want == Want::json) return no_json_part(req, r.version);
  res.set(http::field::content_type, "application/octet-stream");
  res.set(http::field::accept_ranges, "bytes");
  res.set("X-Apsis-Data-Size", std::to_string(size));
  size_t a = 0, b = 0;
  bool partial = false;
  Response refusal;
  if (!byte_range(req, size, r.version, &a, &b, &partial, &refusal)) return refusal;
  if (partial) mark_partial(res, a, b, size);
  res.content_length(size == 0 ? 0 : b - a + 1);
  if (!call.head && size > 0) *first = a, *last = b;
  return res;
}

Response key_response(const Call& call, const Request& req, op_result& r) {
  const kv_op& op = call.ops[0];
  const bool failed = r.status != op_status::ok;
  Response res = failed ? failure(req, r) : empty(req, http::status::ok);
  // A change that cannot apply to what is stored (a JSON patch of a binary record, INCR of a
  // word) conflicts with the record, rather than being a malformed request.
  if (op.kind == op_kind::change && r.status == op_status::invalid)
    res.result(http::status::conflict);
  if (!r.replicas.empty()) res.set("X-Apsis-Replicas", replicas_header(r));
  if (failed) {
    if (r.status == op_status::not_found && r.version.stamp)
      res.set(http::field::etag, etag(r.version));
    if (call.head) res.body().clear();
    return res;
  }
  res.set(http::field::etag, etag(r.version));
  if (op.kind == op_kind::put || op.kind == op_kind::remove || op.kind == op_kind::change)
    return write_response(call, req, r, std::move(res));
  if (read_head(call, r, res)) return res;
  if (call.verbose && !call.head) {
    json body = record_json(r);
    body["key"] = call.key;
    body["replicas"] = replicas_json(r);
    Response out = json_response(req, http::status::ok, body);
    for (const auto& f : res) out.set(f.name_string(), f.value());
    return out;
  }
  bool has_json = op.kind == op_kind::lookup ? r.json_size > 0 : !r.record.json.empty();
  bool has_data = op.kind == op_kind::lookup ? r.data_size > 0 : !r.record.data.empty();
  bool as_json = call.want == Want::json || (call.want == Want::any && has_json && !has_data);
  if (call.want == Want::json && !has_json) return no_json_part(req, r.version);
  res.set(http::field::content_type, as_json ? "application/json" : "application/octet-stream");
  res.set(http::field::accept_ranges, "bytes");
  if (call.head) {
    res.content_length(as_json ? r.json_size : r.data_size);
    res.set("X-Apsis-Json-Size", std::to_string(r.json_size));
    res.set("X-Apsis-Data-Size", std::to_string(r.data_size));
    return res;
  }
  res.body() = std::move(as_json ? r.record.json : r.record.data);
  return with_range(req, r.version, std::move(res));
}

bool catalog_step(const Call& call, const op_result& read, const Request& req, kv_op* write,
                  Response* done) {
  if (read.status != op_status::ok && read.status != op_status::not_found)
    return *done = failure(req, read), false;
  const bool exists = read.status == op_status::ok;
  json doc =
      json::parse(exists && !read.record.json.empty() ? read.record.json : "{}", nullptr, false);
  if (!doc.is_object()) doc = json::object();
  bool known = doc.contains(call.ns) || call.ns == "default";
  if (call.kind == Kind::ns_create && known)
    return *done =
               json_response(req, http::status::ok, {{"namespace", call.ns}, {"created", false}}),
           false;
  if (call.kind == Kind::ns_drop && !doc.contains(call.ns))
    return *done = error(req, http::status::not_found,
                         "no namespace " + call.ns + " (only created ones can be dropped)"),
           false;
  if (call.kind == Kind::ns_create)
    doc[call.ns] = {{"created_ms", storage::now_ms()}};
  else
    doc.erase(call.ns);
  const kv_op& r = call.ops[0];
  *write = kv_op{};
  write->kind = op_kind::put;
  write->id = r.id;
  write->key = r.key;
  write->json = doc.dump();
  write->cond = exists ? op_cond::if_version : op_cond::if_absent;  // lost a race: read again
  write->expected = read.version;
  return true;
}

Response bulk_response(const Call& call, const Request& req, result_batch& rs) {
  json out = json::array();
  for (size_t i = 0; i < rs.size() && i < call.ops.size(); ++i) {
    op_result& r = rs[i];
    json e = r.status == op_status::ok && call.kind == Kind::bulk_get
                 ? record_json(r)
                 : json{{"version", version_text(r.version)}};
    e["key"] = call.ops[i].key;
    e["status"] = to_string(r.status);
    if (r.status != op_status::ok && !r.message.empty()) e["error"] = r.message;
    if (call.verbose || (r.status != op_status::ok && r.status != op_status::not_found))
      e["replicas"] = replicas_json(r);
    out.push_back(std::move(e));
  }
  return json_response(req, http::status::ok, json{{"results", out}});
}

}  // namespace apsis::rest
