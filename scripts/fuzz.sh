#!/usr/bin/env bash
# Runs Shoal's cargo-fuzz targets (fuzz/) against their seed corpus and fails on any
# crash. Needs the nightly toolchain; installs the pinned cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh                 every target for 600 s (a long run)
#   scripts/fuzz.sh 30              every target for 30 s
#   scripts/fuzz.sh --dev 20        every target for 20 s, built unoptimised (what CI runs:
#                                   the build takes half as long, the runs find less)
#   scripts/fuzz.sh 300 records     one or more targets by name
#   scripts/fuzz.sh --seeds         rewrite the seed corpus in fuzz/corpus/
#   SHOAL_SKIP_FUZZ=1               skip (for machines without a nightly toolchain)
#
# The committed corpus (fuzz/corpus/<target>/) is only read: inputs a run finds go to
# fuzz/target/corpus/<target>/ (kept between local runs, gitignored); crashes go to
# fuzz/artifacts/<target>/. To keep a crash as a seed, fix it, then copy it into the
# corpus by hand (and add a regression test next to the decoder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.1
TARGETS=(request records batch object peer_cache group)

if [[ -n "${SHOAL_SKIP_FUZZ:-}" ]]; then
  echo "fuzz: skipped (SHOAL_SKIP_FUZZ is set)"
  exit 0
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: needs the nightly toolchain (rustup toolchain list shows none); set SHOAL_SKIP_FUZZ=1 to skip" >&2
  exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if [[ "${1:-}" == "--seeds" ]]; then
  cargo run --quiet --manifest-path fuzz/Cargo.toml --features seeds --bin gen-corpus -- fuzz/corpus
  exit 0
fi

# Release code with debug assertions (so integer overflow panics too), no sanitizer:
# Shoal's Rust is safe code (unsafe only in the allocator), and the C codecs are not
# instrumented by cargo-fuzz anyway; without ASan builds and runs are about twice as fast.
# --dev builds the dev profile instead (debug assertions are on there too).
FUZZ_FLAGS=(--fuzz-dir fuzz --sanitizer none --debug-assertions)
if [[ "${1:-}" == "--dev" ]]; then
  FUZZ_FLAGS=(--fuzz-dir fuzz --sanitizer none --dev)
  shift
fi

seconds="${1:-600}"
shift || true
[[ $# -gt 0 ]] && TARGETS=("$@")

start=$(date +%s)
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
echo "fuzz: built in $(( $(date +%s) - start )) s"

# -rss_limit_mb: a real leak or unbounded buffer shows as out-of-memory. Huge
# reservations from kafka-protocol's claimed counts are lazily-mapped by the process
# allocator (crates/shoal/src/alloc.rs, installed in every target) and never touched,
# so they do not count against it. (-malloc_limit_mb only acts with a sanitizer's
# allocator; with --sanitizer none it is the RSS limit that bounds memory.)
LIBFUZZER_FLAGS=(-max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1)

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="fuzz/target/fuzz-$t.log"
  t0=$(date +%s)
  # New inputs go to the first directory; the committed seeds are only read.
  if cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
      "${LIBFUZZER_FLAGS[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
    grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -8 >&2 || true
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -oE '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE) +cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 | sed -E 's/^#[0-9]+[[:space:]]+[A-Z]+ +//' || true)
  line=$(printf '%-11s %-5s %4d s  %10s execs  %7s/s  %s' "$t" "$status" "$(( $(date +%s) - t0 ))" "${execs:-?}" "${rate:-?}" "$cov")
  echo "fuzz: $line"
  summary+=("$line")
done

echo
echo "fuzz summary (${seconds} s per target, $(( $(date +%s) - start )) s in all, logs in fuzz/target/fuzz-<target>.log):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none -a <target> <file>)" >&2
  exit 1
fi
