// apsisd: one apsis node. Starts on the embedded default config when given none, serves the
// Redis protocol, and stops gracefully on SIGTERM/SIGINT (closing every engine).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

#include "actors/node.hpp"
#include "config/node_config.hpp"
#include "frontends/servers.hpp"
#include "frontends/tls.hpp"
#include "tools/apsisd/openssl_shim.hpp"

using namespace apsis;

namespace {

/// The [[user]] tables of the config file again, unless it no longer loads or would leave a
/// node bound past loopback open to anyone (then the users loaded before stay).
void reload_users(const std::string& path, const std::vector<std::string>& overrides,
                  frontend::Authenticator& auth) {
  config::NodeConfig fresh;
  std::string error;
  if (!config::load_config_file(path, overrides, &fresh, &error))
    return spdlog::error("apsisd: SIGHUP: kept the users loaded before: {}", error);
  if (std::string why = config::unprotected(fresh); !why.empty())
    return spdlog::error("apsisd: SIGHUP: kept the users loaded before: {}", why);
  auth.reload(fresh.users);
  spdlog::info("apsisd: SIGHUP: {} users reloaded (other settings change at a restart)",
               fresh.users.size());
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
  if (std::string why = config::unprotected(cfg); !why.empty()) {
    std::fprintf(stderr, "apsisd: refusing to start: %s\n", why.c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  // CAF reads the cluster's files at every connection and aborts on one it cannot load:
  // they are checked here first, with the client ports' own.
  if ((cfg.tls.cluster || cfg.tls.any_client_port()) &&
      !frontend::server_context(cfg.tls, &error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    return 2;
  }

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
    if (cfg.tls.cluster) {  // mutual TLS: every node shows a certificate the cluster's CA signed
      caf_cfg.load<caf::openssl::manager>();
      caf_cfg.openssl_certificate = cfg.tls.cert;
      caf_cfg.openssl_key = cfg.tls.key;
      caf_cfg.openssl_cafile = cfg.tls.ca;
    }
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
    auto port = cfg.tls.cluster
                    ? caf::openssl::publish(parts.peer, cfg.cluster_port, cfg.bind.c_str(), true)
                    : sys.middleman().publish(parts.peer, cfg.cluster_port, cfg.bind.c_str(), true);
    if (!port) {
      std::fprintf(stderr, "apsisd: cluster port %s:%u: %s\n", cfg.bind.c_str(),
                   unsigned(cfg.cluster_port), sys.render(port.error()).c_str());
      caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
      return 1;
    }
    if (cfg.tls.cluster) watch_cluster_tls(*port);
    cluster_text = ", cluster on " + cfg.bind + ":" + std::to_string(*port) +
                   (cfg.tls.cluster ? " (TLS)" : "");
  }
  IoPool io(cfg.io_threads);
  Servers servers;
  if (!start_servers(io, sys, cfg, parts, metrics, &servers, &error)) {
    std::fprintf(stderr, "apsisd: %s\n", error.c_str());
    caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
    return 1;
  }
  if (parts.peer) caf::anon_send(parts.peer, atom::advertise_v, servers.binary->port());
  boost::asio::signal_set signals(io.main(), SIGINT, SIGTERM);
  signals.async_wait([&](auto, int sig) {
    spdlog::info("apsisd: signal {}, stopping", sig);
    servers.stop();
    io.stop();  // after the closes just posted
  });
  // SIGHUP: the users from the config file, and the TLS files (CAF reads the cluster's at
  // every new connection anyway). Nothing else changes without a restart.
  boost::asio::signal_set hangups(io.main(), SIGHUP);
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      reload_users(config_path, overrides, *servers.auth);
      std::string why;
      if (servers.tls && servers.tls->reload(&why))
        spdlog::info("apsisd: SIGHUP: TLS certificate and key reloaded");
      else if (servers.tls)
        spdlog::error("apsisd: SIGHUP: kept the TLS files loaded before: {}", why);
      on_hangup();
    });
  };
  on_hangup();
  std::printf("apsisd: %s serving %s%s, data in %s\n", cfg.name.c_str(),
              servers.describe(cfg).c_str(), cluster_text.c_str(), cfg.data_dir.c_str());
  std::fflush(stdout);
  io.run();

  // The servers hold the direct path, and with it the engines: drop them first.
  servers.http.reset();
  servers.binary.reset();
  servers.resp.reset();
  caf::anon_send_exit(parts.node, caf::exit_reason::user_shutdown);
  parts = NodeParts{};
  sys.await_all_actors_done();  // the last shard gone closes each engine (flush, snapshot)
  spdlog::info("apsisd: stopped");
  return 0;
}
