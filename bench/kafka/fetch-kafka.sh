#!/usr/bin/env bash
# Gather the jars of Apache Kafka 4.x (broker, tools and clients, version pinned in pom.xml
# next to this script) from Maven Central into a cache directory, and print that directory on
# stdout.
#
#   bench/kafka/fetch-kafka.sh            # -> ${SHOAL_CACHE:-$HOME/.cache/shoal}/kafka-libs
#   java -cp "$(bench/kafka/fetch-kafka.sh)/*" kafka.Kafka ...
#   bench/kafka/fetch-kafka.sh 4          # the same (from when a 3.9 broker was the default)
#
# Idempotent: when the cache already holds the jars for this exact pom.xml it does nothing.
# Everything but the final path goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
pom="$here/pom.xml"
libs="$cache/kafka-libs"
case "${1:-}" in ""|4) ;; *) echo "usage: $0 [4]" >&2; exit 2 ;; esac
marker="$libs/.shoal-complete"

command -v mvn >/dev/null 2>&1 || { echo "fetch-kafka: mvn (Maven) is not on PATH" >&2; exit 1; }

pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"

if [[ -f "$marker" && "$(cat "$marker")" == "$pom_sum" ]]; then
  echo "$libs"
  exit 0
fi

mkdir -p "$cache"

# Serialise concurrent fetches (flock is optional: util-linux may be missing).
lockfile="$cache/.$(basename "$libs").lock"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$lockfile"
  flock -w 600 9 || { echo "fetch-kafka: could not take $lockfile within 600s" >&2; exit 1; }
  if [[ -f "$marker" && "$(cat "$marker")" == "$pom_sum" ]]; then
    echo "$libs"
    exit 0
  fi
fi

echo "fetch-kafka: gathering Kafka jars into $libs (Maven Central, cached in ~/.m2)" >&2
work="$(mktemp -d "$cache/kafka-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Run Maven in a scratch copy so that nothing (target/ etc.) is written into the repository.
cp "$pom" "$work/pom.xml"
if ! (cd "$work" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$work/libs" >&2); then
  echo "fetch-kafka: mvn dependency:copy-dependencies failed" >&2
  exit 1
fi
if ! ls "$work/libs"/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "fetch-kafka: no kafka_2.13 jar was copied; giving up" >&2
  exit 1
fi
echo "$pom_sum" >"$work/libs/.shoal-complete"
rm -rf "$libs"
mv "$work/libs" "$libs"
echo "fetch-kafka: $(ls "$libs" | wc -l) jars ready" >&2
echo "$libs"
