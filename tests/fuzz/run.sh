#!/usr/bin/env bash
# Runs each fuzz target of the protocol core for a bounded time on the stable toolchain:
# cargo-fuzz (libFuzzer) with --sanitizer none, as AddressSanitizer needs nightly and the crate
# has no unsafe code; debug assertions and overflow checks stay on (cargo-fuzz's default).
# Installs cargo-fuzz from crates.io when it is missing.
#
# New inputs go to a temporary directory (the first corpus directory libFuzzer is given), never
# into the committed corpus/<target>/, which is read along with regressions/<target>/. On a
# crash, the artifact (crash-*, timeout-*, oom-*) is in artifacts/<target>/: this prints where,
# and how to make it a regression test (tests/fuzz_corpus.rs replays regressions/ in every
# `cargo test`). Exits non-zero when any target found one.
#
# Usage: tests/fuzz/run.sh [SECONDS [TARGET...]]   (60 s per target by default, every target)
# CARGO may name the cargo to use (the Makefile passes deploy/cargo).
set -euo pipefail
cd "$(dirname "$0")"
cargo=${CARGO:-cargo}
seconds=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(wire_parse listener_frames)
fi
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS [TARGET...]]" >&2
  exit 2
fi

if ! "$cargo" fuzz --version >/dev/null 2>&1; then
  "$cargo" install cargo-fuzz --locked
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "artifacts/$target"
  before=$(ls "artifacts/$target")
  echo "== $target: ${seconds} s"
  # -timeout: an input that runs for a second is a hang (each one is a few hundred steps at
  # most); -rss_limit_mb: the harness keeps a few KB per input.
  if ! "$cargo" fuzz run --fuzz-dir . --sanitizer none "$target" \
    "$work/$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -print_final_stats=1; then
    failed+=("$target")
    echo "!! $target failed; its artifacts (see the libFuzzer output above):" >&2
    for artifact in $(comm -13 <(echo "$before") <(ls "artifacts/$target")); do
      known=""
      for regression in "regressions/$target"/*; do
        if [[ -f $regression ]] && cmp -s "artifacts/$target/$artifact" "$regression"; then
          known=" = tests/fuzz/$regression, a regression test not fixed yet"
        fi
      done
      echo "   tests/fuzz/artifacts/$target/$artifact$known" >&2
    done
    cat >&2 <<MSG
   Reproduce: cd tests/fuzz && cargo fuzz run --fuzz-dir . --sanitizer none $target <artifact>
   Make a new one a regression test: cp <artifact> tests/fuzz/regressions/$target/<what-it-shows>
   (cargo test --test fuzz_corpus then fails on it until the bug is fixed; keep the file after.)
MSG
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing found failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: no failure in ${targets[*]} (${seconds} s each)"
