// Helpers shared by the storage tests: temporary directories and record builders.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "storage/engine.hpp"

namespace apsis::storage::testing {

/// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("apsis-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  // A copy would remove the directory twice and leak the one it replaced.
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline Record make_record(const std::string& key, const std::string& data, uint64_t stamp,
                          const std::string& json = "") {
  Record r;
  r.id = make_id("default", key);
  r.key = key;
  r.data = data;
  r.json = json;
  r.version = {stamp, 1};
  return r;
}

inline std::unique_ptr<Engine> open_or_die(const EngineOptions& opts) {
  std::unique_ptr<Engine> e;
  Status s = open_engine(opts, &e);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return e;
}

}  // namespace apsis::storage::testing
