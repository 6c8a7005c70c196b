#!/usr/bin/env bash
# Run the franz-go compatibility tests against a Kafka-protocol server.
#
#   tests/compat/go/run.sh HOST:PORT [extra go test args, e.g. -run TestTopicAdmin]
#
# Modules come from the Go module proxy (versions pinned in go.mod/go.sum).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BOOTSTRAP (host:port) [go test args...]" >&2
    exit 2
fi
bootstrap="$1"
shift

cd "$(dirname "${BASH_SOURCE[0]}")"
export SHOAL_BOOTSTRAP="$bootstrap"
# A hard upper bound for the whole run; each operation has its own 30 s limit.
exec go test -count=1 -v -timeout 10m "$@" ./...
