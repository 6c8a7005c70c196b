#!/usr/bin/env bash
# Run the franz-go transaction compatibility tests against a Kafka-protocol server.
#
#   tests/compat/txn/go/run.sh HOST:PORT [extra go test args, e.g. -run TestAbortedTransaction]
#
# A module of its own (same pinned franz-go as tests/compat/go and tests/compat/groups/go),
# from the Go module proxy.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BOOTSTRAP (host:port) [go test args...]" >&2
    exit 2
fi
bootstrap="$1"
shift

cd "$(dirname "${BASH_SOURCE[0]}")"
export SHOAL_BOOTSTRAP="$bootstrap"
# A hard upper bound for the whole run; every wait inside has its own limit.
exec go test -count=1 -v -timeout "${SHOAL_TXN_GO_TIMEOUT:-4m}" "$@" ./...
