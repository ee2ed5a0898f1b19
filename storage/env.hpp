// Env: the one interface through which every engine touches files, so that tests can
// inject faults (a write cut at any byte, a failed fsync) and count what was written.
// Thread safety: File::read may run concurrently with itself and with write() to other
// offsets; everything else is serialized by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/status.hpp"

namespace apsis::storage {

class File {
 public:
  virtual ~File() = default;
  /// Reads n bytes at off. *out points into the file's mapping or into *scratch.
  /// A read past the end is corruption ("short read").
  virtual Status read(uint64_t off, size_t n, std::string_view* out, std::string* scratch) = 0;
  virtual Status write(uint64_t off, std::string_view data) = 0;
  /// Makes every write so far durable (fdatasync).
  virtual Status sync() = 0;
  /// Cuts or extends the file. A mapping stays valid; reading mapped bytes past the new
  /// end is the caller's error (SIGBUS).
  virtual Status truncate(uint64_t size) = 0;
  virtual Status size(uint64_t* out) = 0;
  /// Reserves `capacity` bytes on disk (so a full disk fails here, not later) and maps the
  /// file: reads, and writes if `writable`, inside the mapping need no system call.
  virtual Status map(uint64_t capacity, bool writable) = 0;
};

/// An advisory lock on a directory, held until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;
  virtual Status open(const std::string& path, bool create, std::unique_ptr<File>* out) = 0;
  virtual Status read_all(const std::string& path, std::string* out) = 0;
  /// Write to a temporary name, fsync (when sync), rename over path, fsync the directory.
  virtual Status write_atomic(const std::string& path, std::string_view data, bool sync) = 0;
  /// Names (not paths) in dir, without "." and "..".
  virtual Status list(const std::string& dir, std::vector<std::string>* names) = 0;
  virtual Status remove(const std::string& path) = 0;
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  virtual Status make_dirs(const std::string& dir) = 0;
  virtual Status sync_dir(const std::string& dir) = 0;
  /// Flushes every file of the filesystem holding dir (syncfs).
  virtual Status sync_filesystem(const std::string& dir) = 0;
  virtual bool exists(const std::string& path) = 0;
  virtual bool is_dir(const std::string& path) = 0;
  /// busy if another process or engine holds it.
  virtual Status lock(const std::string& path, std::unique_ptr<FileLock>* out) = 0;

  /// The process-wide POSIX environment.
  static Env* posix();
};

std::string join_path(const std::string& dir, const std::string& name);

}  // namespace apsis::storage
