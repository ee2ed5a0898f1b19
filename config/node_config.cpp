#include "config/node_config.hpp"

// toml++ 3.3 asserts in parse_table_header() that "[(" starts a key, then reports it as the
// parse error it is; its asserts are off in release builds, so off in debug ones too (the
// fuzzer found it).
#define TOML_ASSERT(expr) static_cast<void>(0)
#include <toml++/toml.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace apsis::config {

const std::string& default_config_text() {
  static const std::string text = R"(# apsisd's embedded default config (docs/config.md)
[node]
name = "apsis-1"
id = 1
data_dir = "./data"

[network]
bind = "127.0.0.1"
resp_port = 6380
binary_port = 7380
http_port = 8380
request_timeout_ms = 10000
idle_timeout_ms = 0

[limits]
max_key_size = 4096
max_value_size = 33554432
max_object_size = 4294967296

[large]
collect_every_ms = 600000
upload_idle_ms = 86400000

[replication]
policy = "quorum"
read_policy = "quorum"
timeout_ms = 5000
read_order = "session"

[cluster]
port = 0
seeds = []
cookie = ""
points = 1024
heartbeat_ms = 500
anti_entropy_ms = 10000
recovery_rate = 20000
merge_every_ms = 60000
tombstone_grace_ms = 604800000

[scrub]
rate = 1000
pause_ms = 3600000

[runtime]
scheduler_threads = 2
io_threads = 2
scheduler = "sharing"

[log]
level = "info"

[[backend]]
id = 1
group = 1
engine = "blob"
dir = "backend-1"
shards = 4
fsync = "interval:1000"
)";
  return text;
}

std::string NodeConfig::backend_dir(const BackendConfig& b) const {
  if (!b.dir.empty() && b.dir.front() == '/') return b.dir;
  return storage::join_path(data_dir, b.dir);
}

namespace {

/// Reads one table's keys with their source positions, and reports the first problem.
class Reader {
 public:
  Reader(std::string file, std::string* error) : file_(std::move(file)), error_(error) {}

  bool failed() const { return failed_; }

  bool fail(const toml::node* at, const std::string& key, const std::string& why) {
    if (failed_) return false;
    failed_ = true;
    std::ostringstream os;
    os << file_;
    if (at && at->source().begin.line) os << ":" << at->source().begin.line;
    os << ": " << key << ": " << why;
    *error_ = os.str();
    return false;
  }

  /// Every key of t must be one of allowed.
  bool only(const toml::table& t, const std::string& prefix, std::vector<std::string> allowed) {
    for (const auto& [k, v] : t) {
      std::string key(k.str());
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        return fail(&v, prefix + key, "unknown key (expected one of: " + list + ")");
      }
    }
    return true;
  }

  template <class T>
  void integer(const toml::table& t, const std::string& prefix, const char* key, T* out, int64_t lo,
               int64_t hi) {
    const toml::node* n = t.get(key);
    if (!n || failed_) return;
    auto v = n->value_exact<int64_t>();
    if (!v) return void(fail(n, prefix + key, "expected an integer"));
    if (*v < lo || *v > hi)
      return void(fail(n, prefix + key,
                       "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                           ", got " + std::to_string(*v)));
    *out = static_cast<T>(*v);
  }

  void boolean(const toml::table& t, const std::string& prefix, const char* key, bool* out) {
    const toml::node* n = t.get(key);
    if (!n || failed_) return;
    if (!n->is_boolean()) return void(fail(n, prefix + key, "expected true or false"));
    *out = n->value_or(false);
  }

  void string(const toml::table& t, const std::string& prefix, const char* key, std::string* out,
              bool nonempty = true) {
    const toml::node* n = t.get(key);
    if (!n || failed_) return;
    auto v = n->value_exact<std::string>();
    if (!v) return void(fail(n, prefix + key, "expected a string"));
    if (nonempty && v->empty()) return void(fail(n, prefix + key, "must not be empty"));
    *out = *v;
  }

  const toml::table* table(const toml::table& root, const char* key) {
    const toml::node* n = root.get(key);
    if (!n || failed_) return nullptr;
    if (!n->is_table()) return fail(n, key, "expected a table [" + std::string(key) + "]"), nullptr;
    return n->as_table();
  }

  const toml::node* node(const toml::table& t, const char* key) { return t.get(key); }

 private:
  std::string file_;
  std::string* error_;
  bool failed_ = false;
};

/// Debian's toml++ 3.3.0 reaches __builtin_unreachable() on some non-ASCII characters
/// (e.g. U+023B; found by tests/fuzz/config_fuzz.cpp), which is undefined behaviour in an
/// optimized build. Config text is therefore ASCII; the first other byte is an error.
bool ascii_only(const std::string& text, const std::string& source, std::string* error) {
  size_t line = 1;
  for (unsigned char c : text) {
    if (c == '\n') ++line;
    if (c >= 0x80) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      *error = source + ":" + std::to_string(line) + ": non-ASCII byte " + hex +
               ": config text must be ASCII";
      return false;
    }
  }
  return true;
}

bool apply_override(toml::table& root, const std::string& line, std::string* error) {
  if (!ascii_only(line, "--set " + line.substr(0, line.find('=')), error)) return false;
  auto eq = line.find('=');
  if (eq == std::string::npos || eq == 0) {
    *error = "--set " + line + ": expected section.key=value";
    return false;
  }
  std::string path = line.substr(0, eq), value = line.substr(eq + 1);
  auto dot = path.rfind('.');
  if (dot == std::string::npos) {
    *error = "--set " + line + ": the key needs its section, as in network.resp_port=7000";
    return false;
  }
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};  // a bare word is a string
  }
  std::string section = path.substr(0, dot), key = path.substr(dot + 1);
  if (section.rfind("backend", 0) == 0) {  // backend.<key> applies to every backend
    auto* arr = root["backend"].as_array();
    if (!arr || section != "backend") {
      *error = "--set " + line + ": backend settings are written backend.<key>";
      return false;
    }
    for (auto& b : *arr)
      if (auto* t = b.as_table()) t->insert_or_assign(key, *parsed.get("v"));
    return true;
  }
  if (!root.contains(section)) root.insert(section, toml::table{});
  toml::table* target = root[section].as_table();
  if (!target) {
    *error = "--set " + line + ": " + section + " is not a table";
    return false;
  }
  target->insert_or_assign(key, *parsed.get("v"));
  return true;
}

void read_node(Reader& r, const toml::table& root, NodeConfig& c) {
  if (auto* t = r.table(root, "node")) {
    r.only(*t, "node.", {"name", "id", "data_dir"});
    r.string(*t, "node.", "name", &c.name);
    r.integer(*t, "node.", "id", &c.node_id, 1, INT64_MAX);
    r.string(*t, "node.", "data_dir", &c.data_dir);
  }
  if (auto* t = r.table(root, "network")) {
    r.only(
        *t, "network.",
        {"bind", "resp_port", "binary_port", "http_port", "request_timeout_ms", "idle_timeout_ms"});
    r.integer(*t, "network.", "idle_timeout_ms", &c.idle_timeout_ms, 0, 86400000);
    r.integer(*t, "network.", "request_timeout_ms", &c.request_timeout_ms, 100, 3600000);
    r.integer(*t, "network.", "http_port", &c.http_port, 0, 65535);
    r.string(*t, "network.", "bind", &c.bind);
    r.integer(*t, "network.", "resp_port", &c.resp_port, 0, 65535);
    r.integer(*t, "network.", "binary_port", &c.binary_port, 0, 65535);
  }
  if (auto* t = r.table(root, "limits")) {
    r.only(*t, "limits.", {"max_key_size", "max_value_size", "max_object_size"});
    r.integer(*t, "limits.", "max_key_size", &c.limits.max_key_size, 1, 4096);
    r.integer(*t, "limits.", "max_value_size", &c.limits.max_value_size, 0, 1ll << 30);
    r.integer(*t, "limits.", "max_object_size", &c.limits.max_object_size, 0, 1ll << 40);
  }
  if (auto* t = r.table(root, "large")) {
    r.only(*t, "large.", {"collect_every_ms", "upload_idle_ms"});
    r.integer(*t, "large.", "collect_every_ms", &c.collect_every_ms, 0, 604800000);
    r.integer(*t, "large.", "upload_idle_ms", &c.upload_idle_ms, 1000, 31536000000ll);
  }
}

void read_replication(Reader& r, const toml::table& root, NodeConfig& c) {
  if (auto* t = r.table(root, "replication")) {
    r.only(*t, "replication.", {"policy", "read_policy", "timeout_ms", "read_order"});
    std::string order;
    for (auto [key, out] :
         {std::pair{"policy", &c.policy}, std::pair{"read_policy", &c.read_policy}}) {
      std::string policy;
      r.string(*t, "replication.", key, &policy);
      if (!policy.empty() && !parse_policy(policy, out))
        r.fail(r.node(*t, key), std::string("replication.") + key,
               "expected one, quorum or all, got '" + policy + "'");
    }
    r.string(*t, "replication.", "read_order", &order);
    if (!order.empty() && !parse_read_order(order, &c.read_order))
      r.fail(r.node(*t, "read_order"), "replication.read_order",
             "expected session, random or latency, got '" + order + "'");
    r.integer(*t, "replication.", "timeout_ms", &c.timeout_ms, 1, 3600000);
  }
}

void read_seeds(Reader& r, const toml::table& t, NodeConfig& c) {
  const toml::node* n = t.get("seeds");
  if (!n || r.failed()) return;
  const toml::array* a = n->as_array();
  if (!a) r.fail(n, "cluster.seeds", "expected an array of \"host:port\" strings");
  for (size_t i = 0; a && i < a->size() && !r.failed(); ++i) {
    auto v = (*a)[i].value_exact<std::string>();
    size_t colon = v ? v->rfind(':') : std::string::npos;
    int64_t port = 0;
    if (colon != std::string::npos && colon > 0 && colon + 1 < v->size() &&
        v->find_first_not_of("0123456789", colon + 1) == std::string::npos &&
        v->size() - colon <= 6)
      port = std::stoll(v->substr(colon + 1));
    if (port < 1 || port > 65535)
      r.fail(&(*a)[i], "cluster.seeds", "expected \"host:port\" with a port 1-65535");
    else
      c.seeds.emplace_back(v->substr(0, colon), uint16_t(port));
  }
}

void read_cluster(Reader& r, const toml::table& root, NodeConfig& c) {
  if (auto* t = r.table(root, "cluster")) {
    r.only(*t, "cluster.",
           {"port", "seeds", "cookie", "points", "heartbeat_ms", "anti_entropy_ms", "recovery_rate",
            "merge_every_ms", "tombstone_grace_ms"});
    r.integer(*t, "cluster.", "anti_entropy_ms", &c.anti_entropy_ms, 10, 86400000);
    r.integer(*t, "cluster.", "recovery_rate", &c.recovery_rate, 1, 100000000);
    r.integer(*t, "cluster.", "merge_every_ms", &c.merge_every_ms, 10, 86400000);
    r.integer(*t, "cluster.", "tombstone_grace_ms", &c.tombstone_grace_ms, 1000, 315360000000ll);
    r.integer(*t, "cluster.", "port", &c.cluster_port, 0, 65535);
    r.string(*t, "cluster.", "cookie", &c.cookie, false);
    r.integer(*t, "cluster.", "points", &c.points, 1, 4096);
    r.integer(*t, "cluster.", "heartbeat_ms", &c.heartbeat_ms, 10, 60000);
    read_seeds(r, *t, c);
    if (!r.failed() && (c.cluster_port != 0 || !c.seeds.empty()) && c.cookie.size() < 8)
      r.fail(t->get("cookie") ? t->get("cookie") : t, "cluster.cookie",
             "a cluster (a port or seeds) needs a cookie of at least 8 characters");
  }
}

/// [scrub], [runtime] and [log].
void read_upkeep(Reader& r, const toml::table& root, NodeConfig& c) {
  if (auto* t = r.table(root, "scrub")) {
    r.only(*t, "scrub.", {"rate", "pause_ms"});
    r.integer(*t, "scrub.", "rate", &c.scrub_rate, 0, 100000000);
    r.integer(*t, "scrub.", "pause_ms", &c.scrub_pause_ms, 10, 86400000 * 30ll);
  }
  if (auto* t = r.table(root, "runtime")) {
    r.only(*t, "runtime.", {"scheduler_threads", "io_threads", "scheduler"});
    r.integer(*t, "runtime.", "scheduler_threads", &c.scheduler_threads, 1, 256);
    r.integer(*t, "runtime.", "io_threads", &c.io_threads, 1, 256);
    r.string(*t, "runtime.", "scheduler", &c.scheduler);
    if (c.scheduler != "sharing" && c.scheduler != "stealing")
      r.fail(r.node(*t, "scheduler"), "runtime.scheduler",
             "expected sharing or stealing, got '" + c.scheduler + "'");
  }
  if (auto* t = r.table(root, "log")) {
    r.only(*t, "log.", {"level"});
    r.string(*t, "log.", "level", &c.log_level);
    static const std::vector<std::string> levels{"trace", "debug", "info", "warn", "error", "off"};
    if (std::find(levels.begin(), levels.end(), c.log_level) == levels.end())
      r.fail(r.node(*t, "level"), "log.level", "expected trace, debug, info, warn, error or off");
  }
}

/// [security] and the [[user]] tables.
void read_users(Reader& r, const toml::table& root, NodeConfig& c) {
  if (auto* t = r.table(root, "security")) {
    r.only(*t, "security.", {"allow_unprotected"});
    r.boolean(*t, "security.", "allow_unprotected", &c.allow_unprotected);
  }
  const toml::node* users = root.get("user");
  if (!users || r.failed()) return;
  if (!users->is_array_of_tables()) return void(r.fail(users, "user", "expected [[user]] tables"));
  for (const auto& n : *users->as_array()) {
    const toml::table& t = *n.as_table();
    User u;
    r.only(t, "user.", {"name", "password", "permissions", "tokens"});
    r.string(t, "user.", "name", &u.name);
    r.string(t, "user.", "password", &u.password);
    std::string why;
    if (!r.failed() && (u.name.empty() || u.name.size() > 64 ||
                        u.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                                                 "wxyz0123456789_.-@") != std::string::npos))
      r.fail(t.get("name") ? t.get("name") : &n, "user.name", "1-64 of [A-Za-z0-9_.-@] expected");
    if (!r.failed() && !valid_hash(u.password, &why))
      r.fail(t.get("password") ? t.get("password") : &n, "user.password",
             why + " (a hash made by `apsis passwd`, never the password itself)");
    for (const auto& other : c.users)
      if (!r.failed() && other.name == u.name)
        r.fail(t.get("name"), "user.name", "'" + u.name + "' is listed twice");
    if (const toml::node* tokens = t.get("tokens"); tokens && !r.failed()) {
      const toml::array* a = tokens->as_array();
      if (!a) r.fail(tokens, "user.tokens", "expected an array of token hashes");
      for (size_t i = 0; a && i < a->size() && !r.failed(); ++i) {
        auto line = (*a)[i].value_exact<std::string>();
        std::string digest, why = "expected a string";
        if (!line || !parse_token_hash(*line, &digest, &why))
          r.fail(&(*a)[i], "user.tokens",
                 why + " (a hash made by `apsis token`, never the token itself)");
        u.tokens.push_back(digest);
      }
    }
    const toml::node* perms = t.get("permissions");
    if (perms && !perms->is_table() && !r.failed())
      r.fail(perms, "user.permissions",
             "expected a table of namespace pattern = [\"read\", \"write\", ...]");
    if (perms && perms->is_table())
      for (const auto& [pattern, list] : *perms->as_table()) {
        Grant g{std::string(pattern.str()), 0};
        const toml::array* a = list.as_array();
        for (size_t i = 0; a && i < a->size(); ++i) {
          auto name = (*a)[i].value_exact<std::string>();
          uint8_t bit = name ? permission_named(*name) : 0;
          if (!bit && !r.failed())
            r.fail(&(*a)[i], "user.permissions." + g.pattern,
                   "expected read, write, admin or replicate");
          g.perms |= bit;
        }
        if (!a && !r.failed())
          r.fail(&list, "user.permissions." + g.pattern, "expected an array of permissions");
        u.grants.push_back(std::move(g));
      }
    c.users.push_back(std::move(u));
  }
}

/// [tls]: a port that speaks TLS needs the node's certificate and key; the cluster port, the
/// cluster's CA as well (nodes authenticate each other).
void read_tls(Reader& r, const toml::table& root, NodeConfig& c) {
  auto* t = r.table(root, "tls");
  if (!t) return;
  TlsConfig& tls = c.tls;
  r.only(*t, "tls.", {"cert", "key", "ca", "client_ca", "resp", "binary", "http", "cluster"});
  for (auto [key, out] : {std::pair{"cert", &tls.cert},
                          {"key", &tls.key},
                          {"ca", &tls.ca},
                          {"client_ca", &tls.client_ca}})
    r.string(*t, "tls.", key, out);
  for (auto [key, out] : {std::pair{"resp", &tls.resp},
                          {"binary", &tls.binary},
                          {"http", &tls.http},
                          {"cluster", &tls.cluster}})
    r.boolean(*t, "tls.", key, out);
  if (r.failed()) return;
  if ((tls.any_client_port() || tls.cluster) && (tls.cert.empty() || tls.key.empty()))
    r.fail(t, tls.cert.empty() ? "tls.cert" : "tls.key",
           "a port that speaks TLS needs the node's certificate and key (`apsis certs init` "
           "makes them)");
  else if (tls.cluster && tls.ca.empty())
    r.fail(t, "tls.ca", "tls.cluster needs the cluster's CA, which signs every node's certificate");
  else if (!tls.client_ca.empty() && !tls.any_client_port())
    r.fail(t->get("client_ca"), "tls.client_ca",
           "client certificates are asked for only on TLS ports: set tls.resp, tls.binary or "
           "tls.http");
  else if (tls.cluster && c.cluster_port == 0 && c.seeds.empty())
    r.fail(t->get("cluster"), "tls.cluster",
           "the node has no cluster (cluster.port, cluster.seeds)");
}

void read_backends(Reader& r, const toml::table& root, NodeConfig& c) {
  const toml::node* backends = root.get("backend");
  if (!r.failed() &&
      (!backends || !backends->is_array_of_tables() || backends->as_array()->empty()))
    r.fail(backends, "backend", "at least one [[backend]] table is needed");
  if (!r.failed()) {
    std::map<uint32_t, const toml::node*> ids;
    for (const auto& n : *backends->as_array()) {
      const toml::table& t = *n.as_table();
      BackendConfig b;
      b.dir = "";
      r.only(t, "backend.", {"id", "group", "engine", "dir", "shards", "fsync"});
      r.integer(t, "backend.", "id", &b.id, 0, UINT32_MAX);
      r.integer(t, "backend.", "group", &b.group, 1, UINT32_MAX);
      r.string(t, "backend.", "engine", &b.engine);
      r.string(t, "backend.", "dir", &b.dir);
      r.integer(t, "backend.", "shards", &b.shards, 1, 256);
      std::string fsync = "interval:1000", why;
      r.string(t, "backend.", "fsync", &fsync);
      if (!r.failed() && !storage::SyncPolicy::parse(fsync, &b.fsync, &why))
        r.fail(t.get("fsync"), "backend.fsync", why);
      const auto& kinds = storage::engine_kinds();
      if (!r.failed() && std::find(kinds.begin(), kinds.end(), b.engine) == kinds.end())
        r.fail(t.get("engine"), "backend.engine",
               "expected blob, block, fs, sorted or memory, got '" + b.engine + "'");
      if (!r.failed() && b.dir.empty() && b.engine != "memory")
        r.fail(&n, "backend.dir", "required for engine '" + b.engine + "'");
      if (!r.failed() && !ids.emplace(b.id, &n).second)
        r.fail(&n, "backend.id", std::to_string(b.id) + " is used twice");
      c.backends.push_back(b);
    }
  }
}
}  // namespace

bool load_config(const std::string& text, const std::string& file,
                 const std::vector<std::string>& overrides, NodeConfig* out, std::string* error) {
  toml::table root;
  if (!ascii_only(text, file, error)) return false;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << file << ":" << e.source().begin.line << ": " << e.description();
    *error = os.str();
    return false;
  }
  for (const auto& o : overrides)
    if (!apply_override(root, o, error)) return false;

  NodeConfig c;
  c.name = "apsis-1";
  c.data_dir = "./data";
  c.bind = "127.0.0.1";
  c.resp_port = 6380;
  c.binary_port = 7380;
  c.log_level = "info";
  Reader r(file, error);
  r.only(root, "",
         {"node", "network", "limits", "large", "replication", "cluster", "scrub", "runtime", "log",
          "backend", "security", "user", "tls"});
  read_node(r, root, c);
  read_replication(r, root, c);
  read_cluster(r, root, c);
  read_upkeep(r, root, c);
  read_backends(r, root, c);
  read_users(r, root, c);
  read_tls(r, root, c);
  if (r.failed()) return false;
  *out = std::move(c);
  return true;
}

bool loopback(const std::string& bind) {
  return bind == "localhost" || bind == "::1" || bind.rfind("127.", 0) == 0;
}

std::string unprotected(const NodeConfig& c) {
  if (loopback(c.bind) || c.allow_unprotected) return {};
  const TlsConfig& t = c.tls;
  // Client certificates on every client port keep strangers out as users do.
  bool certified = !t.client_ca.empty() && t.resp && t.binary && t.http;
  if (c.users.empty() && !certified)
    return "network.bind = \"" + c.bind +
           "\" reaches other machines and no [[user]] is configured: anyone who reaches a port "
           "would own the data. Add [[user]] tables (`apsis passwd` makes a password hash; "
           "docs/security.md), or tls.client_ca with tls.resp, tls.binary and tls.http, or set "
           "security.allow_unprotected = true to accept the risk";
  if (c.cluster_port != 0 && !t.cluster)
    return "network.bind = \"" + c.bind +
           "\" reaches other machines and the cluster port speaks in clear, where anyone who "
           "knows the cookie may join: set tls.cluster with tls.ca (docs/security.md), or "
           "security.allow_unprotected = true to accept the risk";
  return {};
}

bool load_config_file(const std::string& path, const std::vector<std::string>& overrides,
                      NodeConfig* out, std::string* error) {
  if (path.empty())
    return load_config(default_config_text(), "<embedded default>", overrides, out, error);
  std::ifstream in(path);
  if (!in) {
    *error = path + ": cannot read the config file";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config(ss.str(), path, overrides, out, error);
}

}  // namespace apsis::config
