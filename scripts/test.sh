#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Installs what it needs first.
#
#   scripts/test.sh            everything: format, lints, tests, doc tests, fuzz smoke runs
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzz smoke runs (local iteration only)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n=== %s ===\n' "$*"; }

step "installing test dependencies"
scripts/install-test-deps.sh
command -v cargo-nextest >/dev/null || cargo install --quiet --locked cargo-nextest

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz smoke runs (libFuzzer + ASan)"
fuzz_seconds="${FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds"
elif [ "${CI:-}" = "true" ]; then
  echo "FUZZ_SECONDS=0 is not allowed in CI" >&2
  exit 1
fi

step "doc tests"
cargo test --workspace --doc --locked

step "tests (cargo nextest)"
cargo nextest run --workspace --locked --profile ci
