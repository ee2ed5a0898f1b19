#include "storage/engine_dir.hpp"

#include <algorithm>

namespace apsis::storage {

namespace {
constexpr char marker_name[] = "ENGINE";
constexpr int format_version = 1;
}  // namespace

Status claim_dir(const EngineOptions& opts, std::unique_ptr<FileLock>* lock) {
  Env* env = opts.env;
  const std::string marker = join_path(opts.dir, marker_name);
  const std::string expected = "apsis " + opts.kind + " " + std::to_string(format_version) + "\n";
  if (env->exists(opts.dir) && !env->is_dir(opts.dir))
    return Status::invalid_argument(opts.dir + " is not a directory");
  APSIS_TRY(env->make_dirs(opts.dir));
  std::vector<std::string> names;
  APSIS_TRY(env->list(opts.dir, &names));
  bool has_marker = std::count(names.begin(), names.end(), marker_name) > 0;
  if (has_marker) {
    std::string found;
    APSIS_TRY(env->read_all(marker, &found));
    if (found != expected) {
      std::string shown = found.substr(0, found.find('\n')).substr(0, 64);
      return Status::invalid_argument(opts.dir + " holds '" + shown + "', not an apsis " +
                                      opts.kind + " engine of format " +
                                      std::to_string(format_version));
    }
  } else {
    for (const auto& n : names) {
      if (n != "LOCK")
        return Status::invalid_argument(opts.dir + " is not empty and is not an apsis " +
                                        opts.kind + " directory (found '" + n + "', no " +
                                        marker_name + " file)");
    }
  }
  APSIS_TRY(env->lock(join_path(opts.dir, "LOCK"), lock));
  if (!has_marker) APSIS_TRY(env->write_atomic(marker, expected, true));
  return Status::ok();
}

}  // namespace apsis::storage
