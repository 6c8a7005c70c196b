#!/usr/bin/env bash
# Idempotent-producer and transaction compatibility suites with real clients, against a running
# Kafka-protocol server with topic auto-creation off, consumer groups, the idempotent producer
# and transactions.
#
#   tests/compat/txn/run.sh BOOTSTRAP            e.g. tests/compat/txn/run.sh 127.0.0.1:9092
#
# Runs ../jvm/run.sh txn (the Java client), python/run.sh (confluent-kafka) and go/run.sh
# (franz-go), one after the other. Last line: `txn-compat: N passed, M failed` (counting
# suites). Exit code: non-zero if any suite failed.
#
# Environment: SHOAL_TXN_SUITES="java python go" (a subset to run); everything the sub-runners
# take (see README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"

passed=0; failed=0; failures=()
start=$SECONDS
for suite in ${SHOAL_TXN_SUITES:-java python go}; do
  case "$suite" in
    java) cmd=("$here/../jvm/run.sh" txn "$bootstrap") ;;
    python|go) cmd=("$here/$suite/run.sh" "$bootstrap") ;;
    *) echo "unknown suite '$suite'" >&2; exit 2 ;;
  esac
  echo; echo "==> txn-compat suite: $suite"
  t0=$SECONDS
  if "${cmd[@]}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$suite")
  fi
  echo "==> $suite took $(( SECONDS - t0 )) s"
done

echo
[[ ${#failures[@]} -eq 0 ]] || echo "failed suites: ${failures[*]}"
echo "txn-compat: took $(( SECONDS - start )) s"
echo "txn-compat: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
