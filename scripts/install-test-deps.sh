#!/usr/bin/env bash
# Installs what the test suites need and the base image may lack. Idempotent: each step
# is skipped when its tool is already there. Registries only (Debian, PyPI, Maven
# Central, the Go module proxy); nothing is downloaded any other way.
set -euo pipefail

need_apt=()
command -v kcat >/dev/null || need_apt+=(kcat)
command -v mvn >/dev/null || need_apt+=(maven)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v go >/dev/null || need_apt+=(golang-go)
# openssl for tests/security/gen-certs.sh (keytool comes with the JDK).
command -v openssl >/dev/null || need_apt+=(openssl)
python3 -c 'import venv' 2>/dev/null || need_apt+=(python3-venv)
# etcd for cluster mode's metadata tests. (No protoc: building Shoal needs only cargo.)
command -v etcd >/dev/null || need_apt+=(etcd-server)
# Headless Chromium and Node for the console's browser test (tests/console).
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(npm)
if [[ ${#need_apt[@]} -gt 0 ]]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# playwright-core for tests/console, at the version its package-lock.json pins.
console_tests="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/console" && pwd)"
[[ -d "$console_tests/node_modules/playwright-core" ]] \
  || (cd "$console_tests" && npm ci --no-audit --no-fund --silent)
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt || true
# cargo-fuzz for scripts/fuzz.sh (pinned; built from crates.io). The targets need nightly.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
CARGO_FUZZ_VERSION=0.13.1
cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$" \
  || cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
echo "test prerequisites present: cargo $(cargo --version | cut -d' ' -f2), java $(java -version 2>&1 | head -1 | cut -d'"' -f2), go $(go version | cut -d' ' -f3), kcat $(kcat -V 2>&1 | head -1 | awk '{print $2}'), $(openssl version | cut -d' ' -f1-2), etcd $(etcd --version | head -1 | awk '{print $3}'), $(chromium --version 2>/dev/null | head -1 | awk '{print $1, $2}')"
