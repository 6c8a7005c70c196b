# Sourced by the suites that drive Apache Kafka 4.x's own tools against a server (acls,
# quotas, admin-tools), after they set `here` to their own directory: takes the one
# argument, BOOTSTRAP, and sets `bootstrap`, `root` (the checkout) and `libs` (the
# Kafka 4.3.1 jars, fetched by bench/kafka/fetch-kafka.sh on first use).
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP (host:port)" >&2; exit 2; }
bootstrap="$1"
root="$(cd "$here/../../.." && pwd)"
libs="$("$root/bench/kafka/fetch-kafka.sh")"
