// open_engine(): the one file of storage/ that knows every engine.
#include <spdlog/spdlog.h>

#include "storage/blob_engine.hpp"
#include "storage/block_engine.hpp"
#include "storage/engine.hpp"
#include "storage/fs_engine.hpp"
#include "storage/memory_engine.hpp"
#include "storage/sorted_engine.hpp"

namespace apsis::storage {

const std::vector<std::string>& engine_kinds() {
  static const std::vector<std::string> kinds{"blob", "block", "fs", "sorted", "memory"};
  return kinds;
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
