#!/usr/bin/env bash
# Runs all of Shoal's tests, installing what they need on a fresh machine first:
#   a fresh build with only cargo (no protoc), formatting and lints,
#   unit/property/integration tests (cargo test, which starts the real binary), then the
#   real-client compatibility suites against a playground.
#
#   scripts/test.sh            everything
#   SHOAL_SKIP_FRANZ_SUITE=1   skip the (long, measurement-only) franz-go suite
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step prints how long the run has taken so far, so a slow stage shows in CI's log.
started=$(date +%s)
step() { echo; echo "==> [$(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s] $*"; }
step "installing test prerequisites"
bash scripts/install-test-deps.sh

step "fresh build with protoc hidden (dev profile in target/ on a fresh clone), and the playground starts from it"
bash scripts/check-fresh-build.sh

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test"
cargo test --workspace
step "fuzz targets, 20 s each on an unoptimised build (scripts/fuzz.sh for long runs)"
bash scripts/fuzz.sh --dev 20
step "compatibility suites"
cargo build -p shoal
bash tests/compat/run-all.sh target/debug/shoal
step "the web console in headless Chromium against a running demo"
bash tests/console/run.sh target/debug/shoal
step "a consumer group through agent restarts"
bash tests/compat/groups-restart/run.sh target/debug/shoal
step "exactly-once consume-transform-produce through processor and agent SIGKILLs"
bash tests/compat/txn-restart/run.sh target/debug/shoal
step "idempotent producers through lost acknowledgements"
bash tests/compat/lost-ack/run.sh target/debug/shoal
step "single agent on S3 (MinIO)"
bash tests/s3/run.sh target/debug/shoal
step "cluster mode: agents on etcd and MinIO (kills, store restarts, groups, zones, chunk cache; Java, librdkafka, kafka-python and franz-go suites against 3 agents)"
bash tests/cluster/run.sh target/debug/shoal
step "the Jepsen-style checker, short form: real clients against 3 agents through kill -9, SIGSTOP past the lease, an agent-etcd partition and clock skew (tests/checker/run.sh --minutes 30 --faults all for the long run)"
bash tests/checker/run.sh target/debug/shoal
step "all tests passed"
