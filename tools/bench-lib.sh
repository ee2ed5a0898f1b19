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

#   bench_nginx PORT [DIRECTIVES] [LISTEN]   serves $dir/www from nginx on 127.0.0.1:PORT (with
#                      these http-level directives, and LISTEN after the port, e.g. "ssl; ..."),
#                      in the foreground of a background job whose PID goes to $pids.
bench_nginx() {
  chmod -R a+rX "$dir"  # nginx's workers run as another user
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  ${2:-}
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  server { listen 127.0.0.1:$1 ${3:-}; root $dir/www; }
}
CONF
  nginx -c "$dir/nginx.conf" -p "$dir" &
  pids+=($!)
}

#   cpu_us PID...      microseconds of CPU (user + system) these processes and their children
#                      have used so far (/proc/PID/stat), for CPU per request.
cpu_us() {
  local ticks=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $((ticks * 1000000 / $(getconf CLK_TCK)))
}
