#!/usr/bin/env bash
# Runs the fuzz targets under libFuzzer with AddressSanitizer, on the pinned stable toolchain
# (RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz needs).
#
#   scripts/fuzz.sh                 every target for 20 s each (what CI runs)
#   scripts/fuzz.sh 600             every target for 10 minutes each
#   scripts/fuzz.sh 3600 torrent    one target for an hour
#
# New inputs go to fuzz/corpus/<target> (not committed); fuzz/seeds/<target> is the committed
# seed corpus. A crash leaves its input in fuzz/artifacts/<target>/ and fails this script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(bencode torrent magnet wire swarm tracker)
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run --sanitizer address "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: Seed|==[0-9]+==|SUMMARY|Done)|panicked|ERROR' || true
  if compgen -G "artifacts/$target/crash-*" >/dev/null || compgen -G "artifacts/$target/leak-*" >/dev/null; then
    echo "fuzz: $target found a failing input in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
