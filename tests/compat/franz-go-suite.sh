#!/usr/bin/env bash
# Run franz-go's own kgo integration test suite against a Kafka-protocol server and summarise.
#
#   tests/compat/franz-go-suite.sh BOOTSTRAP        e.g. tests/compat/franz-go-suite.sh 127.0.0.1:9092
#
# This is a measurement: it exits 0 whatever the number of failing tests, and non-zero only
# when the suite could not be run at all (no Go, download or build failure, no test ran).
# Last line printed:  franz-go-suite: N passed, M failed
# (counts are top-level tests of ./pkg/kgo/...; failing subtests are listed under their parent).
#
# By default every top-level test runs in its own process with its own timeout, so that one
# test that hangs against an incomplete server (say, a consumer-group test) costs only its own
# timeout instead of aborting the rest of the suite. FRANZ_GO_SUITE_MODE=single runs the plain
# `go test -json ./pkg/kgo/...` instead (faster, tests run in parallel as upstream intends).
#
# Environment:
#   FRANZ_GO_VERSION                franz-go module version (default pinned below)
#   FRANZ_GO_SUITE_MODE             isolated (default) or single
#   FRANZ_GO_TEST_TIMEOUT_SECONDS   per-test timeout in isolated mode (default 180),
#                                   whole-run timeout in single mode (default 600)
#   FRANZ_GO_SUITE_BUDGET_SECONDS   isolated mode: stop starting tests after this long
#                                   (default 1800); tests not started count as failed
#   FRANZ_GO_TEST_RUN               optional regexp: only run the top-level tests it matches
#   KGO_LOG_LEVEL                   client log level inside the tests (default none; info, debug)
#   KGO_TEST_RECORDS, KGO_TEST_MAX_TOPIC_PARTS, ...  passed through to the suite
#   SHOAL_CACHE                     raw results are kept in $SHOAL_CACHE/franz-go-suite
#                                   (default $HOME/.cache/shoal)
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"
version="${FRANZ_GO_VERSION:-v1.22.2}"
mode="${FRANZ_GO_SUITE_MODE:-isolated}"
case "$mode" in
  isolated) test_timeout="${FRANZ_GO_TEST_TIMEOUT_SECONDS:-180}" ;;
  single)   test_timeout="${FRANZ_GO_TEST_TIMEOUT_SECONDS:-600}" ;;
  *) echo "FRANZ_GO_SUITE_MODE must be isolated or single" >&2; exit 2 ;;
esac
budget="${FRANZ_GO_SUITE_BUDGET_SECONDS:-1800}"
[[ "$test_timeout" =~ ^[0-9]+$ && "$budget" =~ ^[0-9]+$ ]] \
  || { echo "FRANZ_GO_TEST_TIMEOUT_SECONDS and FRANZ_GO_SUITE_BUDGET_SECONDS must be numbers" >&2; exit 2; }
cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
outdir="$cache/franz-go-suite"
results="$outdir/last-run.json"
errlog="$outdir/last-run.stderr"

cannot_run() {
  echo "franz-go-suite: could not run the suite: $1" >&2
  exit 1
}

command -v go >/dev/null 2>&1 || cannot_run "go is not on PATH"
command -v python3 >/dev/null 2>&1 || cannot_run "python3 is not on PATH (used to read go test -json)"

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-franz-go.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$outdir"
: >"$results"
: >"$errlog"

# kgo lives in the root module github.com/twmb/franz-go; download that module's source.
# (Run outside any module so that no go.mod around us is consulted.)
if ! dl_json="$(cd "$work" && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "github.com/twmb/franz-go@$version" 2>&1)"; then
  echo "$dl_json" >&2
  cannot_run "go mod download github.com/twmb/franz-go@$version failed"
fi
src="$(printf '%s' "$dl_json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir",""))')"
[[ -n "$src" && -d "$src/pkg/kgo" ]] || cannot_run "no source directory in: $dl_json"

# The module cache is read-only: work on a writable copy.
cp -r "$src" "$work/franz-go"
chmod -R u+w "$work/franz-go"
mod="$work/franz-go"

# Fail fast when nothing listens at the (first) bootstrap address: every test would otherwise
# spend its own seconds trying to connect.
first="${bootstrap%%,*}"
host="${first%:*}"; port="${first##*:}"
host="${host#[}"; host="${host%]}"
if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
  cannot_run "nothing accepts connections at $first"
fi

export KGO_SEEDS="$bootstrap" KGO_TEST_RF="${KGO_TEST_RF:-1}" KGO_LOG_LEVEL="${KGO_LOG_LEVEL:-none}"
echo "franz-go-suite: franz-go $version kgo tests against $bootstrap ($mode mode, timeout ${test_timeout}s)" >&2

rc=0
if [[ "$mode" == single ]]; then
  run_args=()
  [[ -n "${FRANZ_GO_TEST_RUN:-}" ]] && run_args=(-run "$FRANZ_GO_TEST_RUN")
  # Outer bound (compilation included) in case the test binary wedges past its own -timeout.
  (cd "$mod" && timeout -k 30 "$(( test_timeout + 600 ))" \
     go test -count=1 -timeout "${test_timeout}s" -json "${run_args[@]}" ./pkg/kgo/...) \
    >"$results" 2>"$errlog" || rc=$?
else
  mkdir -p "$work/bin"
  pkgs="$(cd "$mod" && go list ./pkg/kgo/... 2>>"$errlog")" || cannot_run "go list failed: $(tail -n 20 "$errlog")"
  start=$SECONDS
  for pkg in $pkgs; do
    rel="${pkg#github.com/twmb/franz-go/}"
    bin="$work/bin/$(echo "$rel" | tr '/' '_').test"
    if ! (cd "$mod" && go test -c -o "$bin" "./$rel") >>"$errlog" 2>&1; then
      # Report the build failure as a package failure in the results.
      printf '{"Action":"output","Package":"%s","Output":"build failed, see %s\\n"}\n{"Action":"fail","Package":"%s"}\n' \
        "$pkg" "$errlog" "$pkg" >>"$results"
      rc=1
      continue
    fi
    [[ -x "$bin" ]] || continue   # package without tests
    tests="$(cd "$mod/$rel" && "$bin" -test.list '.*' 2>>"$errlog" | grep -E '^(Test|Example|Fuzz)' || true)"
    for t in $tests; do
      if [[ -n "${FRANZ_GO_TEST_RUN:-}" ]] && ! [[ "$t" =~ $FRANZ_GO_TEST_RUN ]]; then
        continue
      fi
      if (( SECONDS - start >= budget )); then
        # Leave a "run" event without an outcome: the summary counts it as not finished.
        printf '{"Action":"run","Package":"%s","Test":"%s"}\n{"Action":"output","Package":"%s","Test":"%s","Output":"not started: suite budget of %ss used up\\n"}\n' \
          "$pkg" "$t" "$pkg" "$t" "$budget" >>"$results"
        continue
      fi
      trc=0
      (cd "$mod/$rel" && timeout -k 10 "$(( test_timeout + 30 ))" \
         go tool test2json -t -p "$pkg" "$bin" -test.v=test2json -test.count=1 \
           -test.run "^${t}\$" -test.timeout "${test_timeout}s") >>"$results" 2>>"$errlog" || trc=$?
      if (( trc == 124 || trc == 137 )); then
        printf '{"Action":"output","Package":"%s","Test":"%s","Output":"killed after %ss\\n"}\n' \
          "$pkg" "$t" "$(( test_timeout + 30 ))" >>"$results"
      fi
    done
  done
  echo "franz-go-suite: isolated runs took $(( SECONDS - start ))s" >&2
fi

echo "franz-go-suite: raw results in $results" >&2

python3 - "$results" "$errlog" "$rc" "$mode" <<'PY'
import json, sys
from collections import OrderedDict

path, errpath, rc, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
state = OrderedDict()   # (pkg, test) -> action
elapsed = {}
output = {}             # (pkg, test) -> list of output lines
pkg_fail = []
pkg_output = {}
nonjson = []
with open(path, errors="replace") as f:
    for line in f:
        line = line.rstrip("\n")
        try:
            ev = json.loads(line)
        except ValueError:
            if line.strip():
                nonjson.append(line)
            continue
        pkg, test, act = ev.get("Package", ""), ev.get("Test"), ev.get("Action")
        if test is None:
            if act == "output":
                pkg_output.setdefault(pkg, []).append(ev.get("Output", ""))
            elif act == "fail":
                pkg_fail.append(pkg)
            continue
        key = (pkg, test)
        if act == "run":
            state.setdefault(key, "run")
        elif act in ("pass", "fail", "skip"):
            state[key] = act
            elapsed[key] = ev.get("Elapsed", 0)
        elif act == "output":
            output.setdefault(key, []).append(ev.get("Output", ""))

top = [(k, v) for k, v in state.items() if "/" not in k[1]]
passed = [k for k, v in top if v == "pass"]
failed = [k for k, v in top if v in ("fail", "run")]
skipped = [k for k, v in top if v == "skip"]
unfinished = {k for k, v in top if v == "run"}

import re
TESTLINE = re.compile(r"^\s*\S+_test\.go:\d+: ")

def excerpt(keys, n=8):
    """The most telling output lines of a failed test: panics, t.Error lines, else the tail."""
    lines = [l.rstrip() for k in keys for l in output.get(k, []) if l.strip()
             and not l.startswith(("=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- FAIL", "--- PASS", "--- SKIP"))]
    picked = []
    for i, l in enumerate(lines):
        if l.startswith("panic:") or "killed after" in l or "not started:" in l:
            picked += [l] + [x for x in lines[i + 1:i + 4] if not x.startswith("goroutine ")]
            break
    # t.Errorf/t.Fatalf lines, de-duplicated (the same error is often reported many times)
    seen = set()
    errs = []
    for i, l in enumerate(lines):
        if TESTLINE.match(l):
            body = l.strip()
            if body not in seen:
                seen.add(body)
                errs.append(body)
    k = max(n - len(picked), 3)
    picked += errs[:k]
    if len(errs) > k:
        picked.append(f"... and {len(errs) - k} more distinct error lines")
    return picked or lines[-n:]

def short(pkg):
    return pkg.replace("github.com/twmb/franz-go/", "")

print(f"franz-go-suite: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped "
      f"(top-level tests, {mode} mode)")
if skipped:
    print("skipped: " + ", ".join(t for _, t in skipped))
if failed:
    print("failed tests:")
    for key in failed:
        pkg, test = key
        why = "did not finish (timeout or panic)" if key in unfinished else f"{elapsed.get(key, 0):.1f}s"
        print(f"  FAIL {test} [{short(pkg)}] ({why})")
        subs = [k[1] for k, v in state.items()
                if k[0] == pkg and k[1].startswith(test + "/") and v in ("fail", "run")]
        for s in subs[:10]:
            print(f"      {s}")
        if len(subs) > 10:
            print(f"      ... and {len(subs) - 10} more failing subtests")
        for l in excerpt([key] + [(pkg, s) for s in subs]):
            print(f"      | {l[:300]}")
for pkg in pkg_fail:
    if not any(k[0] == pkg for k in failed):
        print(f"package {short(pkg)} failed outside any test:")
        for l in [l.rstrip() for l in pkg_output.get(pkg, []) if l.strip()][-15:]:
            print(f"      | {l[:300]}")
if not top:
    print("no test ran; stderr of go test:")
    try:
        with open(errpath, errors="replace") as f:
            for l in f.read().splitlines()[-30:]:
                print("      | " + l)
    except OSError:
        pass
    for l in nonjson[-15:]:
        print("      | " + l)
print(f"franz-go-suite: {len(passed)} passed, {len(failed)} failed")
sys.exit(0 if top else 3)
PY
