# Sourced by the suites that drive a Kafka command-line tool (acls, quotas): `check` and
# `absent` run the command the sourcing script names in $TOOL (a function or program)
# and count the result in `passed` / `failed`.
#
#   check NAME EXPECTED_TEXT -- TOOL ARGS...   the output must contain the text
#   absent NAME TEXT -- TOOL ARGS...           the output must not contain it

passed=0; failed=0
check() {
  local name="$1" want="$2"; shift 3
  local out
  out="$("$TOOL" "$@")" || true
  if grep -qF -- "$want" <<<"$out"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name: wanted '$want' in:"; sed 's/^/     /' <<<"$out"
  fi
}
absent() {
  local name="$1" unwanted="$2"; shift 3
  local out
  out="$("$TOOL" "$@")" || true
  if grep -qF -- "$unwanted" <<<"$out"; then
    failed=$((failed + 1)); echo "FAIL $name: '$unwanted' still in:"; sed 's/^/     /' <<<"$out"
  else
    passed=$((passed + 1)); echo "ok   $name"
  fi
}
