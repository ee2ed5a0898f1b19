// apsisd: one apsis node. Starts on the embedded default config when given none, serves the
// Redis protocol, and stops gracefully on SIGTERM/SIGINT (closing every engine).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

#include "actors/node.hpp"
#include "config/node_config.hpp"
#include "frontends/binary_frontend.hpp"
#include "frontends/http_frontend.hpp"
#include "frontends/resp_frontend.hpp"

using namespace apsis;

namespace {

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

int main(int argc, char** argv) {
  CLI::App app{"apsisd: an apsis node"};
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_default = false;
  app.add_option("-c,--config", config_path, "TOML config file (default: the embedded one)");
  app.add_option("--set", overrides, "override a config key: section.key=value (repeatable)");
  app.add_flag("--print-default-config", print_default, "print the embedded default config");
  CLI11_PARSE(app, argc, argv);
  if (print_default) {
    std::cout << config::default_config_text();
    return 0;
  }
  config::NodeConfig cfg;
  std::string error;
  if (!config::load_config_file(config_path, overrides, &cfg, &error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));

  caf::actor_system_config caf_cfg;
  caf_cfg.add_message_types<caf::id_block::apsis>();
  caf_cfg.set("scheduler.max-threads", static_cast<size_t>(cfg.scheduler_threads));
  caf_cfg.set("scheduler.policy",
              cfg.scheduler == "stealing" ? caf::atom("stealing") : caf::atom("sharing"));
  if (cfg.cluster_port != 0) {
    caf_cfg.load<caf::io::middleman>();
    // Without heartbeats a frozen peer is never noticed (../shared/DESIGN.md).
    caf_cfg.set("middleman.heartbeat-interval",
                caf::timespan{std::chrono::milliseconds(cfg.heartbeat_ms)});
    caf_cfg.set("middleman.connection-timeout",
                caf::timespan{std::chrono::milliseconds(4 * cfg.heartbeat_ms)});
  }
  caf::actor_system sys{caf_cfg};

  NodeParts parts;
  auto metrics = std::make_shared<RequestMetrics>();
  // A node that has left its cluster stops as on SIGTERM (the handler below).
  auto stop_self = [] { std::raise(SIGTERM); };
  if (!start_node(sys, cfg, &parts, &error, metrics, stop_self)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    return 1;
  }
  std::string cluster_text;
  if (parts.peer) {
    auto port = sys.middleman().publish(parts.peer, cfg.cluster_port, cfg.bind.c_str(), true);
    if (!port) {
      std::fprintf(stderr, "apsisd: cluster port %s:%u: %s\n", cfg.bind.c_str(),
                   unsigned(cfg.cluster_port), sys.render(port.error()).c_str());
      caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
      return 1;
    }
    cluster_text = ", cluster on " + cfg.bind + ":" + std::to_string(*port);
  }
  IoPool io(cfg.io_threads);
  RespOptions ro;
  ro.bind = cfg.bind;
  ro.port = cfg.resp_port;
  ro.metrics = metrics;
  ro.idle_timeout = std::chrono::milliseconds(cfg.idle_timeout_ms);
  ro.limits.max_bulk = std::max<size_t>(cfg.limits.max_value_size, cfg.limits.max_key_size);
  std::optional<RespServer> resp_holder;
  RespServer& resp = resp_holder.emplace(io, parts.coordinator, ro);
  if (!resp.start(&error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
    return 1;
  }
  BinaryOptions bo;
  bo.bind = cfg.bind;
  bo.port = cfg.binary_port;
  bo.name = cfg.name;
  bo.metrics = metrics;
  bo.idle_timeout = std::chrono::milliseconds(cfg.idle_timeout_ms);
  bo.max_frame = uint32_t(
      std::min<uint64_t>(cfg.limits.max_value_size + cfg.limits.max_key_size + 65536, UINT32_MAX));
  std::optional<BinaryServer> binary_holder;
  BinaryServer& binary =
      binary_holder.emplace(io, sys, parts.coordinator, parts.locks, parts.node, bo);
  if (!binary.start(&error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    resp.stop();
    caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
    return 1;
  }
  HttpOptions ho;
  ho.bind = cfg.bind;
  ho.port = cfg.http_port;
  ho.limits = cfg.limits;
  ho.deadline = std::chrono::milliseconds(cfg.request_timeout_ms);
  std::optional<HttpServer> http_holder;
  HttpServer& http =
      http_holder.emplace(io, sys, parts.coordinator, parts.locks, parts.node, metrics, ho);
  if (!http.start(&error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    resp.stop();
    binary.stop();
    caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
    return 1;
  }
  if (parts.peer) caf::anon_send(parts.peer, atom::advertise_v, binary.port());
  // INFO runs on the I/O thread; engines' stats() are thread-safe. No client is served
  // before io.run(), so installing it now is safe.
  uint16_t port = resp.port();
  auto engines = parts.engines;
  resp.set_info(
      [&cfg, port, engines](const std::string&) { return info_text(cfg, port, engines); });

  boost::asio::signal_set signals(io.main(), SIGINT, SIGTERM);
  signals.async_wait([&](auto, int sig) {
    spdlog::info("apsisd: signal {}, stopping", sig);
    resp.stop();
    binary.stop();
    http.stop();
    io.stop();  // after the closes just posted
  });
  std::printf("apsisd: %s serving RESP on %s:%u, binary on %s:%u, http on %s:%u%s, data in %s\n",
              cfg.name.c_str(), cfg.bind.c_str(), unsigned(port), cfg.bind.c_str(),
              unsigned(binary.port()), cfg.bind.c_str(), unsigned(http.port()),
              cluster_text.c_str(), cfg.data_dir.c_str());
  std::fflush(stdout);
  io.run();

  // The servers hold the direct path, and with it the engines: drop them first.
  http_holder.reset();
  binary_holder.reset();
  resp_holder.reset();
  caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
  parts = NodeParts{};
  engines.clear();
  sys.await_all_actors_done();  // the last shard gone closes each engine (flush, snapshot)
  spdlog::info("apsisd: stopped");
  return 0;
}
