# Sourced by the cluster benchmarks from the repository root: sets $etcd and $minio to
# the binaries, or exits 2 saying how to get them (tests/cluster/run.sh installs both:
# etcd from Debian's etcd-server, MinIO with `go install`); then builds the release
# binaries of shoal and shoal-bench.
etcd="$(command -v etcd || true)"
minio="$(command -v minio || true)"
if [[ -z "$minio" ]]; then
  gobin="$(go env GOBIN 2>/dev/null || true)"
  [[ -n "$gobin" ]] || gobin="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
  [[ -x "$gobin/minio" ]] && minio="$gobin/minio"
fi
[[ -n "$etcd" && -n "$minio" ]] || {
  echo "$0: needs etcd and minio (etcd: '${etcd:-missing}', minio: '${minio:-missing}');" \
       "tests/cluster/run.sh installs them" >&2
  exit 2
}

echo "==> building release binaries" >&2
cargo build --release -q -p shoal -p shoal-bench
