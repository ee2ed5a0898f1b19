# Sourced by the bench scripts (after they declare `pids`, indexed or associative):
#   bench_begin NAME   sets $dir to a new temporary directory; at exit every PID in $pids is
#                      stopped and waited for, and $dir is removed.
bench_begin() {
  dir=$(mktemp -d "/tmp/$1.XXXXXX")
  trap bench_cleanup EXIT
}

bench_cleanup() {
  # A server may have exited already (or been stopped by the script): kill/wait may fail.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
