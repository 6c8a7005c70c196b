#!/usr/bin/env bash
# etcd's database size under Shoal's writes, with Shoal compacting etcd's history and
# without (bench/etcd_history.py says how; figures in docs/benchmarks.md).
#
#   bench/etcd_history.sh            SECONDS_EACH (150), HISTORIES ("0s 20s"), KEEP=1
#
# Builds release binaries, then per --metadata-history setting starts a fresh etcd and
# MinIO on loopback ports and one agent, produces small requests with shoal-bench for
# SECONDS_EACH seconds and samples etcd's revision and database size every 5 s. Figures are
# printed, never asserted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
source bench/servers.sh
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-etcd-history.XXXXXX")"
trap '[[ "${KEEP:-}" == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
echo "==> machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)" >&2
timeout -k 30 3600 python3 -u bench/etcd_history.py \
  --shoal "$root/target/release/shoal" --bench "$root/target/release/shoal-bench" \
  --etcd "$etcd" --minio "$minio" --workdir "$work" \
  --seconds "${SECONDS_EACH:-150}" --histories "${HISTORIES:-0s 20s}"
