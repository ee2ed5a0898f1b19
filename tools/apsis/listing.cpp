#include "tools/apsis/listing.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "messages/export_format.hpp"
#include "messages/large.hpp"
#include "messages/listing.hpp"

namespace apsis::cli {

using nlohmann::json;

bool parse_since(const std::string& text, uint64_t* out) {
  if (text.empty()) return *out = 0, true;
  size_t digits = text.find_first_not_of("0123456789");
  if (digits == 0 || text.size() > 18) return false;
  uint64_t n = std::stoull(text.substr(0, digits));
  if (digits == std::string::npos) return *out = n, true;
  std::string unit = text.substr(digits);
  uint64_t ms = unit == "s"   ? 1000
                : unit == "m" ? 60000
                : unit == "h" ? 3600000
                : unit == "d" ? 86400000
                              : 0;
  if (ms == 0) return false;
  uint64_t now = storage::now_ms();
  *out = now > n * ms ? now - n * ms : 1;
  return true;
}

namespace {

/// A progress line on stderr, redrawn in place, when stderr is a terminal.
struct Progress {
  bool on = isatty(STDERR_FILENO);
  void show(const std::string& line) const {
    if (on) std::cerr << "\r" << line << "   " << std::flush;
  }
  void end() const {
    if (on) std::cerr << "\n";
  }
};

int failed(const char* what, const std::string& error) {
  std::cerr << "apsis " << what << ": " << error << "\n";
  return 3;
}

}  // namespace

int transfer(Client& client, const std::string& key, const std::string& file, bool up,
             bool as_json) {
  Progress progress;
  wire::Response r;
  std::string error;
  auto mib = [](uint64_t b) { return std::to_string(b >> 20) + " MiB"; };
  bool ok;
  if (up) {
    std::ifstream f;
    if (file != "-") f.open(file, std::ios::binary);
    if (file != "-" && !f) return std::cerr << "apsis upload: cannot read " << file << "\n", 2;
    ok = client.upload(
        key, file == "-" ? std::cin : f,
        [&](uint64_t sent) { progress.show("upload: " + mib(sent)); }, &r, &error);
  } else {
    std::ofstream f;
    if (file != "-") f.open(file, std::ios::binary | std::ios::trunc);
    if (file != "-" && !f) return std::cerr << "apsis download: cannot write " << file << "\n", 2;
    ok = client.download(
        key, file == "-" ? std::cout : f,
        [&](uint64_t at, uint64_t total) {
          progress.show("download: " + mib(at) + " of " + mib(total));
        },
        &r, &error);
  }
  progress.end();
  const char* what = up ? "upload" : "download";
  if (!ok && r.status == op_status::ok) return failed(what, error);
  if (!ok || r.status != op_status::ok) {
    std::cerr << "apsis " << what << ": " << to_string(r.status)
              << (r.message.empty() ? "" : ": " + r.message) << "\n";
    return 1;
  }
  if (as_json)
    std::cout
        << json{{"status", "ok"}, {"version", r.version.to_string()}, {"size", r.total}}.dump()
        << "\n";
  else if (up)
    std::cerr << "upload: ok, version " << r.version.to_string() << "\n";
  return 0;
}

int ls(Client& client, const ListArgs& a, bool as_json) {
  if (!a.prefix.empty() && !a.match.empty())
    return std::cerr << "apsis ls: give --prefix or --match, not both\n", 2;
  wire::Request q;
  q.ns = a.ns;
  q.limit = 1000;
  q.match = !a.prefix.empty() ? prefix_glob(a.prefix) : a.match;
  std::string error;
  bool ok = client.list(
      q,
      [&](const listed_record& e) {
        const storage::RecordMeta& m = e.meta;
        const uint64_t size = large::value_size(m.user_flags, m.data_size, e.data);
        if (as_json) {
          json j{{"key", m.key}, {"version", m.version.to_string()}};
          if (a.long_form)
            j.update({{"json_size", m.json_size},
                      {"data_size", size},
                      {"expiry_ms", m.expiry_ms},
                      {"flags", m.user_flags}});
          std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        } else if (a.long_form) {
          std::cout << m.key << "\t" << size + m.json_size << "\t" << m.version.to_string() << "\t"
                    << (m.expiry_ms ? std::to_string(m.expiry_ms) : "-") << "\n";
        } else {
          std::cout << m.key << "\n";
        }
        return bool(std::cout);
      },
      &error);
  return ok ? 0 : failed("ls", error);
}

namespace {

/// A large value's record and part lines, read a chunk at a time; false with *error when a
/// read fails or the value changes on the way. One deleted since the listing is left out.
bool export_large(Client& client, const listed_record& e, exportfmt::Writer& w,
                  const std::function<bool(const std::string&)>& out, std::string* error) {
  wire::Response r;
  storage::Version version;
  uint64_t size = 0;
  for (uint64_t index = 0; index == 0 || index * large::chunk_size < size; ++index) {
    if (!client.read(e.meta.key, index * large::chunk_size, large::chunk_size, &r, error))
      return false;
    if (index == 0 && r.status == op_status::not_found) return true;
    if (r.status != op_status::ok)
      return *error = e.meta.key + ": " + to_string(r.status) + " " + r.message, false;
    if (index == 0) {
      version = r.version, size = r.total;
      listed_record head = e;
      head.meta.version = version;
      if (!out(w.large(head, size))) return false;
    } else if (r.version != version) {
      return *error = e.meta.key + " changed during the export; run it again", false;
    }
    if (size > 0 && !out(w.part(index, r.data))) return false;
  }
  return true;
}

}  // namespace

int export_ns(Client& client, const ListArgs& a) {
  wire::Request q;
  q.ns = a.ns;
  q.limit = 1000;
  q.payload = true;
  if (!a.since.empty()) {  // what changed since: deletes too
    uint64_t ms = 0;
    if (!storage::Version::parse(a.since, &q.version) && !parse_since(a.since, &ms))
      return std::cerr << "apsis export: --since takes a version (ms.counter@node), Unix ms or "
                          "an age like 2h\n",
             2;
    if (ms) q.version = {ms << 16, 0};
    q.tombstones = true;
  }
  exportfmt::Writer w;
  Progress progress;
  uint64_t bytes = 0, shown = 0;
  auto out = [&](const std::string& line) {
    bytes += line.size();
    std::cout << line;
    if (w.records() % 1000 == 0 || bytes - shown >= (1u << 20))
      shown = bytes, progress.show("export: " + std::to_string(w.records()) + " records, " +
                                   std::to_string(bytes >> 20) + " MiB");
    return bool(std::cout);
  };
  std::cout << w.header(a.ns, q.version);
  std::string error;
  std::vector<listed_record> larges;  // their bytes are read after the listing
  bool ok = client.list(
      q,
      [&](const listed_record& e) {
        if (!e.meta.tombstone && (e.meta.user_flags & large::manifest_flag))
          return larges.push_back(e), true;
        return out(w.record(e));
      },
      &error);
  for (size_t i = 0; ok && i < larges.size(); ++i)
    ok = export_large(client, larges[i], w, out, &error);
  if (!ok) return progress.end(), failed("export", error + " (the stream has no trailer)");
  std::cout << w.trailer() << std::flush;
  progress.end();
  if (progress.on) std::cerr << "export: " << w.records() << " records\n";
  return std::cout ? 0 : failed("export", "cannot write the output");
}

int import_ns(Client& client, const ListArgs& a) {
  // Checked whole first, into a temporary copy: a truncated or altered stream writes nothing.
  char path[] = "/tmp/apsis-import-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return failed("import", "cannot create a temporary file");
  ::close(fd);
  struct Remove {
    const char* p;
    ~Remove() { std::remove(p); }
  } remove{path};
  std::ifstream file;
  if (!a.file.empty()) {
    file.open(a.file, std::ios::binary);
    if (!file) return std::cerr << "apsis import: cannot read " << a.file << "\n", 2;
  }
  std::istream& in = a.file.empty() ? std::cin : file;
  exportfmt::Reader check;
  exportfmt::Reader::Line kind;
  exportfmt::Item item;
  std::string line, error;
  {
    std::ofstream copy(path, std::ios::binary);
    while (std::getline(in, line)) {
      if (!check.next(line, &kind, &item, &error))
        return std::cerr << "apsis import: " << error << "; nothing was written\n", 1;
      copy << line << "\n";
    }
    if (!check.complete())
      return std::cerr << "apsis import: the stream ends without its trailer (truncated?); "
                          "nothing was written\n",
             1;
    if (!copy.flush()) return failed("import", "cannot write a temporary copy");
  }
  const std::string ns = a.ns_given ? a.ns : check.ns();
  std::ifstream replay(path, std::ios::binary);
  exportfmt::Reader reader;
  Progress progress;
  uint64_t written = 0, skipped = 0;
  const uint64_t now = storage::now_ms();
  std::vector<wire::Request> batch;
  std::vector<wire::Response> answers;
  // Writes go in batches of requests in flight together; a refused one stops the import.
  auto flush = [&] {
    if (!client.call_all(std::move(batch), &answers, &error)) return false;
    batch.clear();
    for (const auto& r : answers) {
      if (r.status != op_status::ok && r.status != op_status::not_found)
        return error = "record " + std::to_string(written + skipped + 1) + ": " +
                       to_string(r.status) + " " + r.message + " (" + std::to_string(written) +
                       " written before it)",
               false;
      ++written;
    }
    progress.show("import: " + std::to_string(written) + " records into " + ns);
    return true;
  };
  // A large value: its parts go up eight at a time, then the commit (its expiry and flags).
  wire::Request commit;
  std::vector<wire::Request> parts;
  bool skip_parts = false;
  auto send_parts = [&] {
    if (!client.call_all(std::move(parts), &answers, &error)) return false;
    parts.clear();
    for (const auto& r : answers)
      if (r.status != op_status::ok)
        return error =
                   commit.key + ": a part was refused: " + to_string(r.status) + " " + r.message,
               false;
    return true;
  };
  auto take_part = [&](exportfmt::Item& part) {
    if (skip_parts) return true;
    wire::Request& q = parts.emplace_back();
    q.op = wire::opcode::part;
    q.ns = ns;
    q.key = commit.key;
    q.upload = commit.upload;
    q.offset = part.part;
    q.data = std::move(part.data);
    const bool last = (part.part + 1) * large::chunk_size >= commit.length;
    if ((parts.size() == 8 || last) && !send_parts()) return false;
    if (!last) return true;
    wire::Response r;
    if (!client.call(commit, &r, &error)) return false;
    if (r.status != op_status::ok)
      return error = commit.key + ": " + to_string(r.status) + " " + r.message, false;
    ++written;
    return true;
  };
  while (std::getline(replay, line)) {
    if (!reader.next(line, &kind, &item, &error)) return failed("import", error);
    if (kind == exportfmt::Reader::Line::part) {
      if (!take_part(item)) return progress.end(), failed("import", error);
      continue;
    }
    if (kind != exportfmt::Reader::Line::record) continue;
    skip_parts = !item.deleted && item.expiry_ms && item.expiry_ms <= now;
    if (skip_parts) {
      ++skipped;  // expired since the export
      continue;
    }
    if (item.large) {
      commit = wire::Request{};
      commit.op = wire::opcode::commit;
      commit.ns = ns;
      commit.key = std::move(item.key);
      commit.upload = large::new_upload();
      commit.length = item.size;
      commit.expiry_ms = item.expiry_ms;
      if (item.size == 0) {
        exportfmt::Item none;
        if (!take_part(none)) return progress.end(), failed("import", error);
      }
      continue;
    }
    wire::Request& q = batch.emplace_back();
    q.op = item.deleted ? wire::opcode::del : wire::opcode::put;
    q.ns = ns;
    q.key = std::move(item.key);
    q.json = std::move(item.json);
    q.data = std::move(item.data);
    q.expiry_ms = item.expiry_ms;
    q.user_flags = item.user_flags;
    if (batch.size() == 256 && !flush()) return progress.end(), failed("import", error);
  }
  if (!batch.empty() && !flush()) return progress.end(), failed("import", error);
  progress.end();
  std::cerr << "import: " << written << " records into " << ns
            << (skipped ? ", " + std::to_string(skipped) + " expired ones skipped" : "") << "\n";
  return 0;
}

}  // namespace apsis::cli
