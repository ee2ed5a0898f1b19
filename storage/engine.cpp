#include "storage/engine.hpp"

#include <spdlog/spdlog.h>

#include "storage/blob_engine.hpp"
#include "storage/block_engine.hpp"
#include "storage/fs_engine.hpp"
#include "storage/memory_engine.hpp"
#include "storage/sorted_engine.hpp"

namespace apsis::storage {

bool SyncPolicy::parse(const std::string& text, SyncPolicy* out, std::string* error) {
  if (text == "always" || text == "never") {
    out->mode = text == "always" ? Mode::always : Mode::never;
    return true;
  }
  const std::string prefix = "interval:";
  if (text.compare(0, prefix.size(), prefix) == 0) {
    std::string ms = text.substr(prefix.size());
    bool digits =
        !ms.empty() && ms.size() <= 7 && ms.find_first_not_of("0123456789") == std::string::npos;
    unsigned long v = digits ? std::stoul(ms) : 0;
    if (v >= 1 && v <= 3600000) {
      out->mode = Mode::interval;
      out->interval_ms = static_cast<uint32_t>(v);
      return true;
    }
    *error = "interval must be a whole number of milliseconds from 1 to 3600000, got '" + ms + "'";
    return false;
  }
  *error = "expected always, never or interval:<ms>, got '" + text + "'";
  return false;
}

std::string SyncPolicy::to_string() const {
  switch (mode) {
    case Mode::always:
      return "always";
    case Mode::never:
      return "never";
    case Mode::interval:
      return "interval:" + std::to_string(interval_ms);
  }
  return "?";
}

const std::vector<std::string>& engine_kinds() {
  static const std::vector<std::string> kinds{"blob", "block", "fs", "sorted", "memory"};
  return kinds;
}

Status Engine::scrub(uint64_t* cursor, size_t max, ScrubStep* out) {
  constexpr uint64_t slices = 256;  // by the id's first byte
  do {
    const uint64_t s = *cursor % slices;
    IterateOptions io;
    io.end = Id::max();
    io.begin.bytes[0] = io.end.bytes[0] = uint8_t(s);
    io.with_payload = false;  // the checksum is verified all the same
    io.on_corrupt = [&](const Id& id) { out->corrupt.push_back(id), ++out->checked; };
    APSIS_TRY(iterate(io, [&](const Record&) { return ++out->checked, true; }));
    *cursor = (s + 1) % slices;
  } while (*cursor != 0 && out->checked < max);
  return Status::ok();
}

Status open_engine(const EngineOptions& in, std::unique_ptr<Engine>* out) {
  EngineOptions opts = in;
  if (!opts.env) opts.env = Env::posix();
  if (!opts.log) {
    opts.log = [](LogLevel level, const std::string& msg) {
      switch (level) {
        case LogLevel::debug:
          spdlog::debug("{}", msg);
          break;
        case LogLevel::info:
          spdlog::info("{}", msg);
          break;
        case LogLevel::warn:
          spdlog::warn("{}", msg);
          break;
        case LogLevel::error:
          spdlog::error("{}", msg);
          break;
      }
    };
  }
  if (opts.kind == "memory") {
    *out = std::make_unique<MemoryEngine>(opts);
    return Status::ok();
  }
  if (opts.dir.empty()) return Status::invalid_argument("engine '" + opts.kind + "' needs a dir");
  if (opts.kind == "blob") return BlobEngine::open(opts, out);
  if (opts.kind == "block") return BlockEngine::open(opts, out);
  if (opts.kind == "fs") return FsEngine::open(opts, out);
  if (opts.kind == "sorted") return SortedEngine::open(opts, out);
  return Status::invalid_argument("unknown engine '" + opts.kind +
                                  "' (expected blob, block, fs, sorted or memory)");
}

}  // namespace apsis::storage
