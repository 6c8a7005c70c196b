# Shared steps of the Java compatibility runners: run.sh (the basic, groups and txn suites),
# ../lost-ack/run.sh and ../security/run.sh. Source it, then call the functions; they print
# with the caller's NAME.
#
#   jvm_build NAME MODULE
#       builds MODULE of the Maven reactor beside this file (with the harness it depends on;
#       offline first, online when ~/.m2 lacks something) into
#       ${SHOAL_CACHE:-$HOME/.cache/shoal}/jvm-compat-build/kafka-VERSION and sets JAVA_CP;
#       returns 1 (after printing why) if it cannot. VERSION is $SHOAL_KAFKA_CLIENTS
#       (e.g. 3.9.1: any kafka-clients release on Maven Central) or the pom's default.
#   jvm_reachable NAME BOOTSTRAP
#       returns 1 (after printing why) when nothing accepts connections at the first
#       address of BOOTSTRAP.
#   jvm_run NAME TIMEOUT_S MAIN_CLASS ARGS...
#       runs MAIN_CLASS with the JVM options in the array `jvm_opts`, killed after
#       TIMEOUT_S + 60 s if it wedges (the programs have their own global timeouts);
#       returns the program's exit code.

jvm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

jvm_build() {
  local name="$1" module="$2"
  local tool
  for tool in mvn java; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$name: $tool is not on PATH" >&2; return 1; }
  done
  local version_args=() build="${SHOAL_CACHE:-$HOME/.cache/shoal}/jvm-compat-build/kafka-default"
  if [[ -n "${SHOAL_KAFKA_CLIENTS:-}" ]]; then
    version_args=("-Dkafka.version=$SHOAL_KAFKA_CLIENTS")
    build="${SHOAL_CACHE:-$HOME/.cache/shoal}/jvm-compat-build/kafka-$SHOAL_KAFKA_CLIENTS"
  fi
  mkdir -p "$build"
  local mvn_args=(-q -B -Dstyle.color=never -f "$jvm_dir/pom.xml" -pl "$module" -am
                  "-Dshoal.build.dir=$build" "${version_args[@]}"
                  compile dependency:build-classpath)
  if ! mvn -o "${mvn_args[@]}" >"$build/mvn-offline-$module.log" 2>&1; then
    echo "$name: offline build failed, building online (first run?)" >&2
    if ! timeout 900 mvn "${mvn_args[@]}" >"$build/mvn-$module.log" 2>&1; then
      tail -n 40 "$build/mvn-$module.log" >&2
      echo "$name: build failed" >&2
      return 1
    fi
  fi
  local out="$build/$module"
  [[ -s "$out/classpath.txt" && -d "$out/classes" ]] || { echo "$name: build failed" >&2; return 1; }
  JAVA_CP="$out/classes:$(cat "$out/classpath.txt")"
}

jvm_reachable() {
  local name="$1" first="${2%%,*}"
  local host="${first%:*}" port="${first##*:}"
  host="${host#[}"; host="${host%]}"
  if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
    echo "$name: nothing accepts connections at $first"
    return 1
  fi
}

jvm_run() {
  local name="$1" timeout_s="$2" main="$3"
  shift 3
  local rc=0
  timeout -k 10 $(( timeout_s + 60 )) java "${jvm_opts[@]}" -cp "$JAVA_CP" "$main" "$@" || rc=$?
  if (( rc == 124 || rc == 137 )); then
    echo "$name: killed after ${timeout_s}s"
    echo "$name: 0 passed, 1 failed"
  fi
  return "$rc"
}
