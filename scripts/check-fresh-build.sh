#!/usr/bin/env bash
# README's run command on a machine with only the Rust toolchain and a C compiler:
# builds `shoal` with protoc hidden (a stub that fails stands first on PATH, PROTOC is
# unset), then starts the playground from that build and waits for its banner.
#
# On a fresh clone (no target/debug yet, as in CI) it builds the dev profile in the
# regular target/ directory, so the steps after it reuse that build instead of
# compiling every crate again; the release profile README uses differs only in
# optimisation, which has no bearing on what the build needs. In a checkout that has
# built before, it builds the release profile in a fresh target/fresh-build, removed
# afterwards, so cached build-script outputs cannot hide a call to protoc.
#
#   scripts/check-fresh-build.sh        (CI runs it; takes a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cat > "$work/bin/protoc" <<'STUB'
#!/bin/sh
echo "protoc was called during the build; Shoal must build with cargo alone" >&2
exit 1
STUB
chmod +x "$work/bin/protoc"

if [[ ! -d target/debug ]]; then
  target=target profile=debug keep=1
  flags=()
else
  target=target/fresh-build profile=release keep=
  rm -rf "$target"
  flags=(--release)
fi
echo "building shoal ($profile) in a fresh $target with protoc hidden"
start=$(date +%s)
env -u PROTOC PATH="$work/bin:$PATH" CARGO_TARGET_DIR="$target" \
  cargo build --locked "${flags[@]}" -p shoal
echo "built in $(( $(date +%s) - start )) s"
if command -v protoc >/dev/null && [[ $(PATH="$work/bin:$PATH" command -v protoc) != "$work/bin/protoc" ]]; then
  echo "the protoc stub did not shadow the real one" >&2; exit 1
fi

"$target/$profile/shoal" --version
"$target/$profile/shoal" playground --data-dir "$work/data" --listen 127.0.0.1:0 \
  >"$work/out.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  grep -q "Stop with Ctrl-C" "$work/out.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "Stop with Ctrl-C" "$work/out.log"; then
  echo "the playground did not start:" >&2; cat "$work/out.log" >&2; exit 1
fi
sed 's/\x1b\[[0-9;]*m//g' "$work/out.log"
kill -TERM "$pid"; wait "$pid" || true
[[ -n "$keep" ]] || rm -rf "$target"
echo "fresh build without protoc: ok"
