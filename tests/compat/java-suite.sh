# Shared steps of the Java compatibility runners (java/, groups/java/, txn/java/ and
# lost-ack/). Source it, then call the functions; they print with the suite's NAME.
#
#   java_suite_build NAME PROJECT_DIR BUILD_DIR
#       builds the Maven project (offline first, online when ~/.m2 lacks something) into
#       BUILD_DIR and sets JAVA_CP; returns 1 (after printing why) if it cannot.
#   java_suite_reachable NAME BOOTSTRAP
#       returns 1 (after printing why) when nothing accepts connections at the first
#       address of BOOTSTRAP.
#   java_suite_run NAME TIMEOUT_S MAIN_CLASS ARGS...
#       runs MAIN_CLASS with the JVM options in the array `jvm_opts`, killed after
#       TIMEOUT_S + 60 s if it wedges (the programs have their own global timeouts);
#       returns the program's exit code.

java_suite_build() {
  local name="$1" project="$2" build="$3"
  mkdir -p "$build"
  local tool
  for tool in mvn java; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$name: $tool is not on PATH" >&2; return 1; }
  done
  local mvn_args=(-q -B -Dstyle.color=never -f "$project/pom.xml" "-Dshoal.build.dir=$build"
                  compile dependency:build-classpath "-Dmdep.outputFile=$build/classpath.txt")
  if ! mvn -o "${mvn_args[@]}" >"$build/mvn-offline.log" 2>&1; then
    echo "$name: offline build failed, building online (first run?)" >&2
    if ! timeout 900 mvn "${mvn_args[@]}" >"$build/mvn.log" 2>&1; then
      tail -n 40 "$build/mvn.log" >&2
      echo "$name: build failed" >&2
      return 1
    fi
  fi
  [[ -s "$build/classpath.txt" && -d "$build/classes" ]] || { echo "$name: build failed" >&2; return 1; }
  JAVA_CP="$build/classes:$(cat "$build/classpath.txt")"
}

java_suite_reachable() {
  local name="$1" first="${2%%,*}"
  local host="${first%:*}" port="${first##*:}"
  host="${host#[}"; host="${host%]}"
  if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
    echo "$name: nothing accepts connections at $first"
    return 1
  fi
}

java_suite_run() {
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
