// FaultEnv: wraps the POSIX Env and simulates a crash after a byte budget: the write that
// crosses the budget lands only partly, and from then on every write, sync, truncate,
// rename and remove fails. Reads keep working. Used to cut a write at every byte offset.
#pragma once

#include <atomic>
#include <limits>

#include "storage/env.hpp"

namespace apsis::storage::testing {

class FaultEnv final : public Env {
 public:
  /// Bytes that may still be written before the "crash".
  std::atomic<uint64_t> budget{std::numeric_limits<uint64_t>::max()};
  std::atomic<bool> crashed{false};
  std::atomic<uint64_t> written{0};
  std::atomic<bool> fail_sync{false};

  Status check() { return crashed ? Status::io_error("injected crash") : Status::ok(); }

  /// Spends up to n bytes of the budget; returns how many may be written.
  uint64_t spend(uint64_t n) {
    if (crashed) return 0;
    uint64_t b = budget.load();
    uint64_t take = std::min(b, n);
    budget -= take;
    written += take;
    if (take < n) crashed = true;
    return take;
  }

  class FaultFile final : public File {
   public:
    FaultFile(FaultEnv* env, std::unique_ptr<File> f) : env_(env), f_(std::move(f)) {}
    Status read(uint64_t off, size_t n, std::string_view* out, std::string* scratch) override {
      return f_->read(off, n, out, scratch);
    }
    Status write(uint64_t off, std::string_view data) override {
      uint64_t take = env_->spend(data.size());
      if (take) APSIS_TRY(f_->write(off, data.substr(0, take)));
      return take == data.size() ? Status::ok() : Status::io_error("injected crash mid-write");
    }
    Status sync() override {
      APSIS_TRY(env_->check());
      if (env_->fail_sync) return Status::io_error("injected fsync failure");
      return f_->sync();
    }
    Status truncate(uint64_t size) override {
      APSIS_TRY(env_->check());
      return f_->truncate(size);
    }
    Status size(uint64_t* out) override { return f_->size(out); }
    Status map(uint64_t capacity, bool writable) override {
      APSIS_TRY(env_->check());
      return f_->map(capacity, writable);
    }

   private:
    FaultEnv* env_;
    std::unique_ptr<File> f_;
  };

  Status open(const std::string& path, bool create, std::unique_ptr<File>* out) override {
    if (create) APSIS_TRY(check());
    std::unique_ptr<File> f;
    APSIS_TRY(base_->open(path, create, &f));
    *out = std::make_unique<FaultFile>(this, std::move(f));
    return Status::ok();
  }
  Status read_all(const std::string& path, std::string* out) override {
    return base_->read_all(path, out);
  }
  Status write_atomic(const std::string& path, std::string_view data, bool sync) override {
    // Whole or nothing, like the real thing: a crash before the rename leaves the old file.
    uint64_t take = spend(data.size());
    if (take < data.size()) {  // the crash leaves a partial temporary, never a partial file
      std::unique_ptr<File> f;
      if (take && base_->open(path + ".tmp.crash", true, &f)) f->write(0, data.substr(0, take));
      return Status::io_error("injected crash mid-write");
    }
    return base_->write_atomic(path, data, sync);
  }
  Status list(const std::string& dir, std::vector<std::string>* names) override {
    return base_->list(dir, names);
  }
  Status remove(const std::string& path) override {
    APSIS_TRY(check());
    return base_->remove(path);
  }
  Status rename(const std::string& from, const std::string& to) override {
    APSIS_TRY(check());
    return base_->rename(from, to);
  }
  Status make_dirs(const std::string& dir) override {
    APSIS_TRY(check());
    return base_->make_dirs(dir);
  }
  Status sync_dir(const std::string& dir) override {
    APSIS_TRY(check());
    return base_->sync_dir(dir);
  }
  Status sync_filesystem(const std::string& dir) override {
    APSIS_TRY(check());
    return base_->sync_filesystem(dir);
  }
  bool exists(const std::string& path) override { return base_->exists(path); }
  bool is_dir(const std::string& path) override { return base_->is_dir(path); }
  Status lock(const std::string& path, std::unique_ptr<FileLock>* out) override {
    return base_->lock(path, out);
  }

 private:
  Env* base_ = Env::posix();
};

}  // namespace apsis::storage::testing
