#include "frontends/servers.hpp"

#include <algorithm>

namespace apsis {

namespace {

/// RESP's INFO: the node and its backends' keys.
std::string info_text(const config::NodeConfig& cfg, uint16_t port,
                      const std::vector<std::shared_ptr<storage::Engine>>& engines) {
  std::string s = "# Server\r\napsis_version:0.1.0\r\nnode:" + cfg.name +
                  "\r\ntcp_port:" + std::to_string(port) + "\r\n# Keyspace\r\n";
  for (size_t i = 0; i < engines.size(); ++i) {
    storage::EngineStats st = engines[i]->stats();
    const auto& b = cfg.backends[i];
    s += "backend" + std::to_string(b.id) + ":engine=" + b.engine +
         ",group=" + std::to_string(b.group) + ",keys=" + std::to_string(st.keys) +
         ",disk_bytes=" + std::to_string(st.disk_bytes) + ",fsync=" + b.fsync.to_string() + "\r\n";
  }
  return s;
}

}  // namespace

void Servers::stop() {
  for (auto* s : {&resp, &binary, &http})
    if (*s) (*s)->stop();
  if (collector) collector->stop();
}

std::string Servers::describe(const config::NodeConfig& cfg) const {
  auto at = [&](uint16_t port, bool tls) {
    return cfg.bind + ":" + std::to_string(port) + (tls ? " (TLS)" : "");
  };
  return "RESP on " + at(resp->port(), cfg.tls.resp) + ", binary on " +
         at(binary->port(), cfg.tls.binary) + ", http on " + at(http->port(), cfg.tls.http);
}

bool start_servers(IoPool& io, caf::actor_system& sys, const config::NodeConfig& cfg,
                   const NodeParts& parts, std::shared_ptr<RequestMetrics> metrics, Servers* out,
                   std::string* error) {
  const auto idle = std::chrono::milliseconds(cfg.idle_timeout_ms);
  RespOptions ro;
  ro.bind = cfg.bind;
  ro.port = cfg.resp_port;
  ro.metrics = metrics;
  ro.idle_timeout = idle;
  ro.limits.max_bulk = std::max<size_t>(cfg.limits.max_value_size, cfg.limits.max_key_size);
  auto auth = std::make_shared<frontend::Authenticator>(cfg.users, metrics);
  out->auth = auth;
  ro.auth = auth;
  if (cfg.tls.any_client_port()) {
    out->tls = frontend::ServerTls::load(cfg.tls, error);
    if (!out->tls) return false;
  }
  ro.tls = cfg.tls.resp ? out->tls : nullptr;
  BinaryOptions bo;
  bo.max_object_size = cfg.limits.max_object_size;
  bo.bind = cfg.bind;
  bo.port = cfg.binary_port;
  bo.name = cfg.name;
  bo.metrics = metrics;
  bo.idle_timeout = idle;
  bo.auth = auth;
  bo.tls = cfg.tls.binary ? out->tls : nullptr;
  bo.max_frame = uint32_t(
      std::min<uint64_t>(cfg.limits.max_value_size + cfg.limits.max_key_size + 65536, UINT32_MAX));
  HttpOptions ho;
  ho.bind = cfg.bind;
  ho.port = cfg.http_port;
  ho.limits = cfg.limits;
  ho.deadline = std::chrono::milliseconds(cfg.request_timeout_ms);
  ho.auth = auth;
  ho.tls = cfg.tls.http ? out->tls : nullptr;
  // INFO runs on the I/O thread (engines' stats() are thread-safe), once the port is bound.
  ro.info = [&cfg, out, engines = parts.engines](const std::string&) {
    return info_text(cfg, out->resp->port(), engines);
  };
  out->resp = make_resp_server(io, parts.coordinator, ro);
  out->binary = make_binary_server(io, sys, parts.coordinator, parts.locks, parts.node, bo);
  out->http = make_http_server(io, sys, parts.coordinator, parts.locks, parts.node, metrics, ho);
  for (auto* s : {&out->resp, &out->binary, &out->http})
    if (!(*s)->start(error)) {
      out->stop();
      return false;
    }
  std::vector<uint32_t> groups;
  for (const auto& b : cfg.backends) groups.push_back(b.group);
  std::function<std::string()> view;
  if (auto cluster = parts.cluster)
    view = [cluster] {
      std::lock_guard<std::mutex> lock(cluster->mu);
      return cluster->json;
    };
  out->collector = std::make_shared<frontend::ChunkCollector>(
      parts.coordinator, io.main().get_executor(), frontend::node_gate(cfg.name, groups, view),
      frontend::CollectorOptions{std::chrono::milliseconds(cfg.collect_every_ms),
                                 std::chrono::milliseconds(cfg.upload_idle_ms)},
      metrics);
  out->collector->start();
  return true;
}

}  // namespace apsis
