# Shared steps of bench/groups.sh and bench/cleaner.sh. Source it from the repository root
# after setting $work (a temporary directory), then:
#
#   bench_shoal_bin ARG        sets $shoal_bin: `release` or `debug` (built here, only the
#                              shoal package) or a path to a shoal binary; exits 2 if none
#   free_port                  prints a free loopback port
#   bench_playground LOG ARGS  starts `$shoal_bin playground ARGS...` in the background
#                              (output to LOG), sets $shoal_pid, waits until it listens
#   bench_stop_playground      stops it (SIGTERM) and waits
#   bench_cleanup              for `trap bench_cleanup EXIT`: stops the playground and a
#                              broker started in $work/kafka, removes $work

bench_shoal_bin() {
  case "${1:-release}" in
    release) cargo build --release -q -p shoal; shoal_bin=target/release/shoal ;;
    debug)   cargo build -q -p shoal; shoal_bin=target/debug/shoal ;;
    *)       shoal_bin="$1" ;;
  esac
  [[ -x "$shoal_bin" ]] || { echo "$0: no shoal binary at $shoal_bin" >&2; exit 2; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

shoal_pid=""
bench_playground() {
  local log="$1"
  shift
  "$shoal_bin" playground "$@" >"$log" 2>&1 &
  shoal_pid=$!
  for _ in $(seq 300); do grep -q "Shoal is listening" "$log" && return 0; sleep 0.1; done
  cat "$log" >&2
  echo "$0: the playground did not start" >&2
  exit 1
}

bench_stop_playground() {
  if [[ -n "$shoal_pid" ]]; then kill -TERM "$shoal_pid" 2>/dev/null || true; wait "$shoal_pid" 2>/dev/null || true; fi
  shoal_pid=""
}

bench_cleanup() {
  bench_stop_playground
  [[ -f "$work/kafka/kafka.pid" ]] && bench/kafka/stop-kafka.sh "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
