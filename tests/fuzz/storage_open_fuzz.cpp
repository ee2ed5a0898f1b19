// libFuzzer: arbitrary bytes as a record, as a blob data file and as a blob index snapshot.
// Open must either fail with a Status or succeed; every record it then serves must be
// intact (get/iterate never crash, never return a record whose id differs).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "storage/engine.hpp"
#include "storage/record_codec.hpp"

using namespace apsis::storage;

namespace {

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
}

EngineOptions options(const std::string& dir) {
  EngineOptions o;
  o.kind = "blob";
  o.dir = dir;
  o.sync.mode = SyncPolicy::Mode::never;
  o.blob_file_size = 64 << 10;
  o.log = [](LogLevel, const std::string&) {};
  return o;
}

void check_engine(const std::string& dir) {
  std::unique_ptr<Engine> e;
  if (!open_engine(options(dir), &e)) return;
  e->iterate(IterateOptions(), [&](const Record& r) {
    Record got;
    Status s = e->get(r.id, &got);
    if (s && got.id != r.id) __builtin_trap();
    return true;
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. The record decoder.
  Record r;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (codec::decode(bytes, &r) && codec::encode(r) != bytes.substr(0, codec::encoded_size(r)))
    __builtin_trap();  // a decoded record must re-encode to the same bytes

  // 2. The bytes as the tail of a blob data file (after a valid file header) and as an
  //    index snapshot beside a valid data file.
  // tmpfs: the engine fsyncs at open and close, which on a disk would dominate the run.
  static const std::string root =
      (std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp") +
      std::string("/apsis-fuzz-") + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  {
    std::unique_ptr<Engine> e;
    if (!open_engine(options(root), &e)) return 0;
    Record rec;
    rec.key = "k";
    rec.id = make_id("default", "k");
    rec.data = "v";
    rec.version = {1, 1};
    e->put(rec);
  }
  std::string data_path = root + "/data-00000001.blob";
  if (size % 2 == 0) {
    std::ofstream(data_path, std::ios::binary | std::ios::app)
        .write(reinterpret_cast<const char*>(data), std::streamsize(size));
    std::filesystem::remove(root + "/index.snap");
  } else {
    write_file(root + "/index.snap", data, size);
  }
  check_engine(root);
  std::filesystem::remove_all(root);
  return 0;
}
