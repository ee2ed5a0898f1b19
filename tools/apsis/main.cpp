// apsis: the command-line client. Talks to a node over the binary protocol.
//   apsis put KEY [VALUE | --file F | -]   apsis get KEY   apsis del KEY   apsis lookup KEY
//   apsis lock KEY [--lease MS] [-- COMMAND...]   apsis unlock KEY TOKEN   apsis stat
//   apsis cluster status   apsis cluster forget NODE   apsis cluster leave [--no-wait]
//   apsis recover dc|merge [--groups 1,2] [--since 2h] [--dry-run] [--no-wait]
//   apsis recover status|stop|resume
//   apsis upload KEY FILE   apsis download KEY FILE   apsis get KEY --offset N --size M
//   apsis incr KEY [--by N]   apsis append KEY VALUE   apsis patch KEY JSON
//   apsis ls [--prefix P | --match GLOB] [--long]   apsis export [--since V] > F   apsis import < F
// Options: --policy one|quorum|all, --read one|quorum|all, --latest, --groups 1,2, --route,
// --coordinate (see --help).
// Exit status: 0 ok; 1 the operation did not happen (not found, condition failed, ...);
// 2 usage; 3 no answer (connection, timeout, protocol).
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "clients/cpp/client.hpp"
#include "tools/apsis/certs.hpp"
#include "tools/apsis/listing.hpp"
#include "tools/apsis/security.hpp"

using namespace apsis;
using nlohmann::json;

namespace {

json replicas_json(const wire::Response& r) {
  json out = json::array();
  for (const auto& e : r.replicas)
    out.push_back({{"group", e.group},
                   {"node", e.node},
                   {"backend", e.backend},
                   {"status", to_string(e.status)},
                   {"version", e.version.to_string()}});
  return out;
}

std::string replicas_text(const wire::Response& r) {
  std::string s;
  for (const auto& e : r.replicas)
    s += (s.empty() ? "" : ", ") + ("group " + std::to_string(e.group) + " " + e.node + "/" +
                                    std::to_string(e.backend) + ": " + to_string(e.status));
  return s;
}

const Client* the_client = nullptr;  // for report(): which node a routed request went to

/// Prints an outcome and returns the exit status.
int report(const std::string& what, const wire::Response& r, bool as_json,
           json extra = json::object()) {
  bool ok = r.status == op_status::ok;
  if (as_json) {
    json j = {{"status", to_string(r.status)},
              {"version", r.version.to_string()},
              {"replicas", replicas_json(r)}};
    if (the_client && !the_client->last_node().empty()) j["via"] = the_client->last_node();
    if (!r.message.empty()) j["message"] = r.message;
    for (auto& [k, v] : extra.items()) j[k] = v;
    std::cout << j.dump() << "\n";
  } else if (!ok) {
    std::cerr << "apsis " << what << ": " << to_string(r.status)
              << (r.message.empty() ? "" : ": " + r.message)
              << (r.replicas.empty() ? "" : " (" + replicas_text(r) + ")") << "\n";
  } else if (what != "get") {
    std::cout << what << ": ok, version " << r.version.to_string()
              << (r.replicas.empty() ? "" : " (" + replicas_text(r) + ")") << "\n";
  }
  return ok ? 0 : 1;
}

bool read_value(const std::string& arg, const std::string& file, std::string* out,
                std::string* error) {
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return *error = "cannot read " + file, false;
    out->assign(std::istreambuf_iterator<char>(in), {});
    return true;
  }
  if (arg == "-") {
    out->assign(std::istreambuf_iterator<char>(std::cin), {});
    return true;
  }
  *out = arg;
  return true;
}

/// One line of a recover pass's progress.
std::string pass_line(const json& p) {
  std::string line = "recover " + p.value("mode", std::string("?")) +
                     (p.value("dry_run", false) ? " (dry run)" : "") + ": " +
                     p.value("state", std::string("none")) + ", " +
                     std::to_string(p.value("done", 0)) + "/" +
                     std::to_string(p.value("total", 0)) +
                     (p.value("mode", std::string()) == "dc" ? " pairs" : " backends");
  if (p.value("mode", std::string()) == "dc")
    line += ", " + std::to_string(p.value("keys_compared", 0ull)) + " keys compared, " +
            std::to_string(p.value("divergent", 0ull)) + " divergent, " +
            std::to_string(p.value("repaired", 0ull)) + " repaired";
  else
    line += ", " + std::to_string(p.value("moved", 0ull)) +
            (p.value("dry_run", false) ? " to move, " : " moved, ") +
            std::to_string(p.value("misplaced", 0ull)) + " waiting for their owner, " +
            std::to_string(p.value("purged", 0ull)) +
            (p.value("dry_run", false) ? " tombstones to purge" : " tombstones purged");
  if (!p.value("skipped", json::array()).empty()) line += ", skipped: " + p["skipped"].dump();
  return line;
}

/// The lines of recovery work: anti-entropy, merge, and the recover pass if one ran.
void print_progress(const json& s) {
  if (s.contains("anti_entropy")) {
    const json& ae = s["anti_entropy"];
    std::printf(
        "anti-entropy: %llu rounds (%llu failed), %llu keys compared, %llu divergent, %llu "
        "repaired, "
        "%llu read repairs\n",
        (unsigned long long)ae.value("rounds", 0ull),
        (unsigned long long)ae.value("failed_rounds", 0ull),
        (unsigned long long)ae.value("keys_compared", 0ull),
        (unsigned long long)ae.value("divergent_found", 0ull),
        (unsigned long long)ae.value("repaired", 0ull),
        (unsigned long long)ae.value("read_repairs", 0ull));
  }
  if (s.contains("merge")) {
    const json& m = s["merge"];
    std::printf(
        "merge: %llu passes, %llu keys moved, %llu waiting for their owner, %llu tombstones "
        "purged\n",
        (unsigned long long)m.value("passes", 0ull), (unsigned long long)m.value("moved", 0ull),
        (unsigned long long)m.value("misplaced", 0ull),
        (unsigned long long)m.value("tombstones_purged", 0ull));
  }
  if (s.contains("scrub")) {
    const json& c = s["scrub"];
    std::printf(
        "scrub: %llu rounds, %llu records checked, %llu corrupt found, %llu dropped for repair, "
        "%llu unrepairable\n",
        (unsigned long long)c.value("rounds", 0ull), (unsigned long long)c.value("checked", 0ull),
        (unsigned long long)c.value("corrupt_found", 0ull),
        (unsigned long long)c.value("dropped_for_repair", 0ull),
        (unsigned long long)c.value("unrepairable", 0ull));
  }
  if (s.contains("recover") && s["recover"].contains("mode"))
    std::printf("%s\n", pass_line(s["recover"]).c_str());
}

/// `apsis stat` for a terminal: a line per backend, then the cluster's work in progress.
void print_stats(const json& s) {
  std::printf("node %s\n", s.value("node", std::string("?")).c_str());
  std::printf("%-8s %-6s %-7s %-14s %12s %12s %12s %10s %6s %12s %13s\n", "backend", "group",
              "engine", "fsync", "keys", "disk bytes", "dead bytes", "index", "files",
              "compactions", "writes/fsync");
  for (const auto& b : s["backends"]) {
    auto n = [&](const char* k) { return (unsigned long long)b.value(k, 0ull); };
    char per_sync[32] = "-";  // writes each fsync covered: how well group commit works
    if (n("syncs"))
      std::snprintf(per_sync, sizeof per_sync, "%.1f", n("synced_writes") / double(n("syncs")));
    std::printf("%-8llu %-6llu %-7s %-14s %12llu %12llu %12llu %10llu %6llu %12llu %13s\n", n("id"),
                n("group"), b.value("engine", std::string()).c_str(),
                b.value("fsync", std::string()).c_str(), n("keys"), n("disk_bytes"),
                n("dead_bytes"), n("index_bytes"), n("files"), n("compactions"), per_sync);
  }
  if (s.contains("requests")) {
    std::printf("%-8s %12s %8s %10s %10s %14s %14s\n", "surface", "operations", "failed",
                "p50 <=", "p99 <=", "bytes in", "bytes out");
    auto ms = [](const json& v) {
      char text[32] = "-";
      if (v.is_number()) std::snprintf(text, sizeof text, "%gms", v.get<double>());
      if (v.is_string()) std::snprintf(text, sizeof text, ">5s");
      return std::string(text);
    };
    for (const auto& [surface, r] : s["requests"].items())
      std::printf("%-8s %12llu %8llu %10s %10s %14llu %14llu\n", surface.c_str(),
                  (unsigned long long)r.value("operations", 0ull),
                  (unsigned long long)r.value("failed", 0ull), ms(r["p50_ms_at_most"]).c_str(),
                  ms(r["p99_ms_at_most"]).c_str(), (unsigned long long)r.value("bytes_in", 0ull),
                  (unsigned long long)r.value("bytes_out", 0ull));
  }
  print_progress(s);
  if (s.contains("cluster"))
    std::printf("cluster: %zu nodes (apsis cluster status)\n",
                s["cluster"].value("nodes", json::array()).size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"apsis: command-line client of an apsis node (binary protocol)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  ClientOptions co;
  bool as_json = false;
  uint64_t timeout_ms = 10000;  // above the node's default replication timeout (5 s)
  app.add_option("--host", co.host, "node address")->capture_default_str();
  app.add_option("-p,--port", co.port, "node's binary-protocol port")->capture_default_str();
  std::string password_file;
  app.add_option("-u,--user", co.user,
                 "log in as this user (its password from --password-file "
                 "or APSIS_PASSWORD)")
      ->envname("APSIS_USER");
  app.add_option("--password-file", password_file,
                 "a file whose first line is the password (never on the command line)");
  app.add_option("--cacert", co.tls_ca,
                 "speak TLS, trusting the CA in this file (the node's tls.binary)")
      ->envname("APSIS_CACERT");
  app.add_option("--cert", co.tls_cert, "a client certificate, for a node with tls.client_ca")
      ->envname("APSIS_CERT");
  app.add_option("--key", co.tls_key, "the client certificate's key")->envname("APSIS_KEY");
  app.add_option("-n,--ns", co.ns, "namespace")->capture_default_str();
  app.add_option("--timeout", timeout_ms, "milliseconds to wait for an answer")
      ->capture_default_str();
  app.add_flag("--json", as_json, "print results as JSON");
  std::string policy, read_policy;
  app.add_option("--policy", policy,
                 "writes: replicas that must succeed (one, quorum, all); "
                 "default: the node's")
      ->check(CLI::IsMember({"one", "quorum", "all"}));
  app.add_option("--read", read_policy,
                 "reads: replicas that must answer (one: the first group, "
                 "passing misses on; quorum, all: the newest of their answers); "
                 "default: the node's")
      ->check(CLI::IsMember({"one", "quorum", "all"}));
  app.add_flag("--route", co.route,
               "send the key's request straight to its owner in the first "
               "group (from the cluster's route table)");
  app.add_flag("--coordinate", co.coordinate,
               "coordinate puts and deletes here: version them and "
               "send them to the key's owner in every group");
  app.add_flag("--latest", co.latest, "reads: the same as --read all");
  app.add_option("--groups", co.groups,
                 "key requests: ask only these groups of the node's session "
                 "(e.g. --groups 1,2)")
      ->delimiter(',');

  std::string key, value, file, json_part;
  uint64_t ttl = 0, fence = 0, token = 0;
  uint32_t lease = 30000;
  bool nx = false, xx = false;
  std::vector<std::string> command;

  auto* put = app.add_subcommand("put", "store a value (VALUE, --file F, or - for stdin)");
  put->add_option("key", key)->required();
  put->add_option("value", value, "the data part; - reads stdin");
  put->add_option("--file", file, "read the data part from a file");
  put->add_option("--json-part", json_part, "the record's JSON part");
  put->add_option("--ttl", ttl, "expire after this many seconds");
  put->add_flag("--nx", nx, "only if the key is absent");
  put->add_flag("--xx", xx, "only if the key is present");
  put->add_option("--fence", fence, "a lease's token: refused if a newer one was used");
  std::optional<int64_t> put_offset;
  put->add_option("--offset", put_offset,
                  "write VALUE at this byte of the stored value (SETRANGE)");
  auto* upload = app.add_subcommand("upload", "store a file of any size as a large value");
  upload->add_option("key", key)->required();
  upload->add_option("file", file, "the file; - reads stdin")->required();
  auto* download = app.add_subcommand("download", "write a value of any size to a file");
  download->add_option("key", key)->required();
  download->add_option("file", file, "the file; - writes stdout")->required();
  auto* get = app.add_subcommand("get", "print a value's data part");
  get->add_option("key", key)->required();
  std::optional<uint64_t> offset, size;
  get->add_option("--offset", offset, "from this byte on (any value, plain or large)");
  get->add_option("--size", size, "this many bytes at most (16 MiB a call)");
  auto* del = app.add_subcommand("del", "remove a key");
  del->add_option("key", key)->required();
  del->add_option("--fence", fence, "a lease's token");
  auto* lookup = app.add_subcommand("lookup", "print a key's metadata");
  lookup->add_option("key", key)->required();
  auto* lock = app.add_subcommand("lock",
                                  "take a key's lease; hold it while COMMAND runs (its "
                                  "token in APSIS_FENCE), or until stdin closes");
  lock->add_option("key", key)->required();
  lock->add_option("--lease", lease, "lease in milliseconds")->capture_default_str();
  lock->add_option("command", command, "command to run while holding the lease");
  auto* unlock = app.add_subcommand("unlock", "end a lease by its token");
  unlock->add_option("key", key)->required();
  unlock->add_option("token", token)->required();
  auto* stat = app.add_subcommand("stat", "print the node's statistics");
  auto* cluster = app.add_subcommand("cluster", "the cluster as the node sees it");
  auto* cluster_status = cluster->add_subcommand(
      "status", "nodes, their state and backends, and anti-entropy progress");
  std::string forget_node, action, since, groups_text;
  bool dry_run = false, no_wait = false;
  auto* cluster_forget = cluster->add_subcommand(
      "forget",
      "remove a node that is down for good: its ranges pass to its groups' other backends");
  cluster_forget->add_option("node", forget_node, "the node's name")->required();
  auto* cluster_leave = cluster->add_subcommand(
      "leave", "drain the node: its keys move to the backends that remain, then it stops");
  cluster_leave->add_flag("--no-wait", no_wait,
                          "return once the leave began instead of following it");
  cluster->require_subcommand(1);
  auto* recover = app.add_subcommand("recover",
                                     "dc: make every replica hold the newest of each key now; "
                                     "merge: move keys to their owners now; status, stop, resume");
  recover->add_option("action", action, "dc, merge, status, stop or resume")
      ->required()
      ->check(CLI::IsMember({"dc", "merge", "status", "stop", "resume"}));
  recover->add_option("--groups", groups_text, "only these groups, e.g. 1,2");
  recover->add_option("--since", since, "only versions written since: Unix ms, or an age like 2h");
  recover->add_flag("--dry-run", dry_run, "count what would be repaired or moved; change nothing");
  recover->add_flag("--no-wait", no_wait, "return once started instead of following the progress");
  std::string by = "1";
  auto* incr = app.add_subcommand("incr", "add to a counter and print its new value");
  incr->add_option("key", key)->required();
  incr->add_option("--by", by, "an integer, or a decimal (a float increment)")
      ->capture_default_str();
  auto* append = app.add_subcommand("append", "append to a value and print its new length");
  append->add_option("key", key)->required();
  append->add_option("value", value, "the bytes to append; - reads stdin")->required();
  auto* patch = app.add_subcommand("patch", "apply a JSON merge patch (RFC 7386) to the JSON part");
  patch->add_option("key", key)->required();
  patch->add_option("patch", value, "the patch, e.g. '{\"n\": 1}'; - reads stdin")->required();
  cli::ListArgs la;
  auto* ls = app.add_subcommand("ls", "list the namespace's keys, page by page");
  ls->add_option("--prefix", la.prefix, "only keys that start with this");
  ls->add_option("--match", la.match, "only keys this glob matches (*, ?, [a-z])");
  ls->add_flag("-l,--long", la.long_form, "with size, version and expiry");
  auto* exp = app.add_subcommand(
      "export", "write the namespace's records to stdout as an export stream (docs/export.md)");
  exp->add_option("--since", la.since,
                  "only what changed since a version (ms.counter@node), Unix ms or an age like "
                  "2h; deletes included");
  auto* imp = app.add_subcommand(
      "import",
      "write an export stream's records (stdin, or --file) into the namespace it "
      "names (or --ns); checked whole before anything is written");
  imp->add_option("--file", la.file, "read this file instead of stdin");
  auto* passwd = app.add_subcommand(
      "passwd", "print a password's hash for a [[user]] table (the password from stdin)");
  auto* token_cmd = app.add_subcommand(
      "token", "print a new REST bearer token and its hash for a [[user]] table's tokens");
  cli::CertArgs cert_args;
  auto* certs = app.add_subcommand("certs", "make TLS certificates (docs/security.md)");
  certs->require_subcommand(1);
  auto* certs_init = certs->add_subcommand(
      "init", "a cluster CA and a node certificate, a client CA and a client certificate");
  auto* certs_issue =
      certs->add_subcommand("issue", "one more node certificate (or --client) from DIR's CAs");
  for (auto* c : {certs_init, certs_issue}) {
    c->add_option("dir", cert_args.dir, "the directory of the files")->required();
    c->add_option("--host", cert_args.hosts,
                  "an IP address or DNS name the certificate is for (repeatable; default "
                  "127.0.0.1, ::1, localhost)");
    c->add_option("--days", cert_args.days,
                  "days the certificates are valid (0: already expired, to "
                  "test refusals)")
        ->capture_default_str()
        ->check(CLI::Range(0, 36500));
  }
  certs_init
      ->add_option("--name", cert_args.name, "the node certificate's name (files NAME.crt/.key)")
      ->capture_default_str();
  certs_issue->add_option("name", cert_args.name, "its name (files NAME.crt/.key)")->required();
  certs_issue->add_flag("--client", cert_args.client, "a client certificate, from client-ca");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is not an error; every usage error is 2
  }
  if (passwd->parsed()) return cli::passwd();
  if (token_cmd->parsed()) return cli::token();
  if (certs_init->parsed()) return cli::certs_init(cert_args);
  if (certs_issue->parsed()) return cli::certs_issue(cert_args);
  if (std::string why; !co.user.empty() && !cli::password_of(password_file, &co.password, &why))
    return std::cerr << "apsis: " << why << "\n", 2;
  co.timeout = std::chrono::milliseconds(timeout_ms);
  if (success_policy p; !policy.empty() && parse_policy(policy, &p)) co.policy = p;
  if (success_policy p; !read_policy.empty() && parse_policy(read_policy, &p)) co.read = p;

  la.ns = co.ns;
  la.ns_given = app.get_option("--ns")->count() > 0;
  std::string error;
  Client client;
  the_client = &client;
  if (!client.connect(co, &error)) {
    std::cerr << "apsis: " << error << "\n";
    return 3;
  }
  wire::Response r;
  auto fail = [&] {
    std::cerr << "apsis: " << error << "\n";
    return 3;
  };
  if (put->parsed()) {
    if (nx && xx) return std::cerr << "apsis put: --nx and --xx exclude each other\n", 2;
    if (value.empty() && file.empty())
      return std::cerr << "apsis put: give VALUE, --file F or -\n", 2;
    std::string data;
    if (!read_value(value, file, &data, &error))
      return std::cerr << "apsis put: " << error << "\n", 2;
    if (put_offset) {  // a part of the value, as SETRANGE writes it
      if (!client.change(key, value_change::setrange, *put_offset, data, &r, &error)) return fail();
      return report("put", r, as_json);
    }
    PutOptions po;
    po.cond = nx ? op_cond::if_absent : xx ? op_cond::if_present : op_cond::none;
    po.expiry_ms = ttl ? storage::now_ms() + ttl * 1000 : 0;
    po.fence = fence;
    if (!client.put(key, data, json_part, po, &r, &error)) return fail();
    return report("put", r, as_json);
  }
  if (upload->parsed() || download->parsed())
    return cli::transfer(client, key, file, upload->parsed(), as_json);
  if (get->parsed() && (offset || size)) {
    if (!client.read(key, offset.value_or(0), size.value_or(16u << 20), &r, &error)) return fail();
    if (r.status == op_status::ok && !as_json) std::cout << r.data;
    return report("get", r, as_json, {{"data", r.data}, {"size", r.total}});
  }
  if (get->parsed()) {
    if (!client.get(key, &r, &error)) return fail();
    if (r.status == op_status::ok && !as_json) {
      std::cout << r.data;
      // On a terminal the prompt starts on a line of its own (as redis-cli's does); piped
      // output stays the value's bytes exactly.
      if (isatty(STDOUT_FILENO) && (r.data.empty() || r.data.back() != '\n')) std::cout << "\n";
    }
    return report("get", r, as_json,
                  {{"data", r.data}, {"json", r.json}, {"expiry_ms", r.expiry_ms}});
  }
  if (del->parsed()) {
    PutOptions po;
    po.fence = fence;
    if (!client.del(key, po, &r, &error)) return fail();
    return report("del", r, as_json, {{"existed", r.existed}});
  }
  if (lookup->parsed()) {
    if (!client.lookup(key, &r, &error)) return fail();
    json meta = {{"expiry_ms", r.expiry_ms},
                 {"user_flags", r.user_flags},
                 {"json_size", r.json_size},
                 {"data_size", r.data_size}};
    if (r.status == op_status::ok && !as_json)
      std::cout << "version " << r.version.to_string() << ", data " << r.data_size
                << " bytes, json " << r.json_size << " bytes, expiry_ms " << r.expiry_ms << "\n";
    return r.status == op_status::ok && !as_json ? 0 : report("lookup", r, as_json, meta);
  }
  if (lock->parsed()) {
    if (!client.lock(key, lease, &r, &error)) return fail();
    if (r.status != op_status::ok) return report("lock", r, as_json);
    if (as_json)
      std::cout << json{{"token", r.token}, {"expires_ms", r.expiry_ms}}.dump() << "\n";
    else
      std::cout << "lock " << key << ": token " << r.token << "\n";
    std::cout.flush();
    if (command.empty()) {  // hold until stdin closes
      std::string ignore;
      while (std::getline(std::cin, ignore)) {
      }
    } else {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::setenv("APSIS_FENCE", std::to_string(r.token).c_str(), 1);
        std::vector<char*> args;
        for (auto& c : command) args.push_back(c.data());
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        std::perror("apsis lock: exec");
        ::_exit(127);
      }
      int status = 0;
      ::waitpid(pid, &status, 0);
      wire::Response u;
      client.unlock(key, r.token, &u, &error);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    wire::Response u;
    if (!client.unlock(key, r.token, &u, &error)) return fail();
    return 0;
  }
  if (unlock->parsed()) {
    if (!client.unlock(key, token, &r, &error)) return fail();
    return report("unlock", r, as_json);
  }
  if (cluster_status->parsed()) {
    if (!client.stat(&r, &error)) return fail();
    if (r.status != op_status::ok) return report("cluster status", r, as_json);
    json s = json::parse(r.data);
    if (!s.contains("cluster"))
      return std::cerr << "apsis: " << s.value("node", "") << " is not in a cluster\n", 1;
    if (as_json)
      return std::cout << json{{"cluster", s["cluster"]},
                               {"anti_entropy", s["anti_entropy"]},
                               {"scrub", s["scrub"]}}
                              .dump()
                       << "\n",
             0;
    std::printf("%-16s %-22s %-11s %-7s %-10s %s\n", "node", "address", "incarnation", "state",
                "heard", "backends");
    for (const auto& n : s["cluster"]["nodes"]) {
      std::string backends;
      for (const auto& b : n["backends"])
        backends += (backends.empty() ? "" : ", ") + std::to_string(b["id"].get<int>()) +
                    " (group " + std::to_string(b["group"].get<int>()) + ", " +
                    std::to_string(b["points"].get<int>()) + " points)";
      // When the node itself was last heard from (a join or its gossip), as "1.2s ago".
      int64_t heard = n.value("last_heard_ms", int64_t(-1));
      char ago[32] = "-";
      if (n["state"] != "self" && heard < 0)
        std::snprintf(ago, sizeof ago, "never");
      else if (n["state"] != "self")
        std::snprintf(ago, sizeof ago, "%.1fs ago", heard / 1000.0);
      std::printf("%-16s %-22s %-11llu %-7s %-10s %s\n", n["name"].get<std::string>().c_str(),
                  n["address"].get<std::string>().c_str(),
                  (unsigned long long)n["incarnation"].get<uint64_t>(),
                  n["state"].get<std::string>().c_str(), ago, backends.c_str());
    }
    print_progress(s);
    return 0;
  }
  // An admin command's JSON answer (an {"error": ...} is an answer too).
  auto ask = [&](const json& c, json* out) {
    wire::Request q;
    q.op = wire::opcode::admin;
    q.data = c.dump();
    if (!client.call(q, &r, &error)) return false;
    if (r.status != op_status::ok)
      return error = r.message.empty() ? to_string(r.status) : r.message, false;
    *out = json::parse(r.data, nullptr, false);
    return !out->is_discarded() || (error = "the node's answer is not JSON", false);
  };
  if (cluster_forget->parsed()) {
    json p;
    if (!ask({{"cmd", "forget"}, {"node", forget_node}}, &p)) return fail();
    if (p.contains("error"))
      return std::cerr << "apsis cluster forget: " << p["error"].get<std::string>() << "\n", 1;
    std::cout << "forgot " << forget_node << ": its ranges pass to its groups' other backends\n";
    return 0;
  }
  if (cluster_leave->parsed()) {
    json p;
    if (!ask({{"cmd", "leave"}}, &p)) return fail();
    if (p.contains("error"))
      return std::cerr << "apsis cluster leave: " << p["error"].get<std::string>() << "\n", 1;
    const std::string name = p.value("leaving", std::string());
    // Follows the drain until the node stops (Ctrl-C leaves it draining); the node answers
    // nothing once it has gone.
    int64_t left = p.value("records_left", int64_t(-1));
    while (!no_wait && ask({{"cmd", "leave"}}, &p)) {
      left = p.value("records_left", int64_t(-1));
      if (!as_json)
        std::cerr << "\r" << name << " leaving: " << p.value("moved", 0ull) << " records moved, "
                  << (left < 0 ? std::string("counting") : std::to_string(left) + " left") << "   "
                  << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (no_wait)
      return std::cout << name
                       << " is leaving: its keys move to the backends that remain, then it stops\n",
             0;
    if (!as_json) std::cerr << "\n";
    if (left != 0)
      return std::cerr << "apsis cluster leave: " << name
                       << " stopped answering with records left: " << error << "\n",
             3;
    std::cout << name << " has left the cluster\n";
    return 0;
  }
  if (recover->parsed()) {
    json cmd{{"cmd", "recover"}, {"action", action}};
    if (action == "dc" || action == "merge") {
      uint64_t since_ms = 0;
      if (!cli::parse_since(since, &since_ms))
        return std::cerr
                   << "apsis recover: --since takes Unix ms or an age like 90s, 15m, 2h, 3d\n",
               2;
      std::vector<uint32_t> groups;
      for (size_t pos = 0; pos < groups_text.size();) {
        size_t end = groups_text.find(',', pos);
        std::string g =
            groups_text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        if (g.empty() || g.find_first_not_of("0123456789") != std::string::npos)
          return std::cerr << "apsis recover: --groups takes numbers separated by commas, got '"
                           << groups_text << "'\n",
                 2;
        groups.push_back(uint32_t(std::stoul(g)));
        pos = end == std::string::npos ? groups_text.size() : end + 1;
      }
      cmd.update({{"action", "start"},
                  {"mode", action},
                  {"dry_run", dry_run},
                  {"groups", groups},
                  {"since_ms", since_ms}});
    }
    json p;
    if (!ask(cmd, &p)) return fail();
    if (p.contains("error"))
      return std::cerr << "apsis recover: " << p["error"].get<std::string>() << "\n", 1;
    bool follow = (action == "dc" || action == "merge" || action == "resume") && !no_wait;
    // Follows the pass until it ends (Ctrl-C leaves it running on the node).
    while (follow && p.value("state", std::string()) == "running") {
      if (!as_json) std::cerr << "\r" << pass_line(p) << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (!ask({{"cmd", "recover"}, {"action", "status"}}, &p)) return fail();
    }
    if (follow && !as_json) std::cerr << "\n";
    std::cout << (as_json              ? p.dump()
                  : p.contains("mode") ? pass_line(p)
                                       : "no recover pass has run")
              << "\n";
    return 0;
  }
  if (incr->parsed() || append->parsed() || patch->parsed()) {
    // Computed by the key's owner in one group, then written to the others (op_kind::change).
    value_change::kind_t kind = patch->parsed()    ? value_change::merge_patch
                                : append->parsed() ? value_change::append
                                                   : value_change::incr;
    int64_t n = 0;
    std::string arg;
    if (kind == value_change::incr && !parse_integer(by, &n)) kind = value_change::incr_float;
    if (kind == value_change::incr_float) arg = by;
    if (kind != value_change::incr && kind != value_change::incr_float &&
        !read_value(value, "", &arg, &error))
      return std::cerr << "apsis: " << error << "\n", 2;
    const char* what = incr->parsed() ? "incr" : append->parsed() ? "append" : "patch";
    if (!client.change(key, kind, n, arg, &r, &error)) return fail();
    if (r.status == op_status::ok && !as_json)
      std::cout << (kind == value_change::append        ? std::to_string(r.data.size())
                    : kind == value_change::merge_patch ? r.json
                                                        : r.data)
                << "\n";
    return r.status == op_status::ok && !as_json
               ? 0
               : report(what, r, as_json, {{"data", r.data}, {"json", r.json}});
  }
  if (ls->parsed()) return cli::ls(client, la, as_json);
  if (exp->parsed()) return cli::export_ns(client, la);
  if (imp->parsed()) return cli::import_ns(client, la);
  if (stat->parsed()) {
    if (!client.stat(&r, &error)) return fail();
    if (r.status != op_status::ok) return report("stat", r, as_json);
    if (as_json) return std::cout << r.data << "\n", 0;
    print_stats(json::parse(r.data));
    return 0;
  }
  return 2;
}
