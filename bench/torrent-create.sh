#!/usr/bin/env bash
# Torrent creation against the hardware's hashing speed, in one run on one machine.
#
# Reference: `openssl dgst -sha256` and `openssl dgst -sha1` over the same page-cached file
# (both use the CPU's SHA instructions; coreutils' sha256sum does not). A hybrid torrent
# needs both digests over every byte, so the target is:
#
#     t(shoal torrent create --hybrid) <= 0.75 * (t(openssl sha256) + t(openssl sha1))
#
# i.e. both hashes at hardware speed with both cores busy. Also reported: v1 against sha1 and
# v2 against sha256. Each timing is the median of RUNS runs.
#
#   bench/torrent-create.sh            1 GiB file in /dev/shm, 5 runs
#   SIZE_MIB=4096 RUNS=3 bench/torrent-create.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${SIZE_MIB:-1024}"
runs="${RUNS:-5}"
piece="${PIECE:-4MiB}"
dir="$(mktemp -d /dev/shm/shoal-bench.XXXXXX)"
trap 'rm -rf "$dir"' EXIT

cargo build --release --locked --quiet -p shoal
shoal="$PWD/target/release/shoal"
file="$dir/payload.bin"
head -c $((size_mib << 20)) /dev/urandom > "$file"
cat "$file" > /dev/null # page-cached (it is on tmpfs anyway)

# median wall-clock seconds of a command over $runs runs
median() {
  local times=()
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null 2>&1
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

t_sha256=$(median openssl dgst -sha256 "$file")
t_sha1=$(median openssl dgst -sha1 "$file")
t_hybrid=$(median "$shoal" torrent create "$file" -o "$dir/h.torrent" --force --no-date --hybrid --piece-length "$piece")
t_v2=$(median "$shoal" torrent create "$file" -o "$dir/v2.torrent" --force --no-date --v2 --piece-length "$piece")
t_v1=$(median "$shoal" torrent create "$file" -o "$dir/v1.torrent" --force --no-date --v1 --piece-length "$piece")
t_hybrid_1t=$(median "$shoal" torrent create "$file" -o "$dir/h1.torrent" --force --no-date --hybrid --piece-length "$piece" --threads 1)

mibs() { echo "scale=0; $size_mib / $1" | bc -l; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat <<REPORT
torrent creation, ${size_mib} MiB page-cached file, ${piece} pieces, median of ${runs} runs
machine: $(nproc) cores, ${cpu}; $(openssl version | cut -d' ' -f1-2); rustc $(rustc -V | cut -d' ' -f2)

| what                                  | seconds | MiB/s |
|---------------------------------------|---------|-------|
| openssl dgst -sha256                  | ${t_sha256} | $(mibs "$t_sha256") |
| openssl dgst -sha1                    | ${t_sha1} | $(mibs "$t_sha1") |
| shoal torrent create --hybrid         | ${t_hybrid} | $(mibs "$t_hybrid") |
| shoal torrent create --hybrid (1 thread) | ${t_hybrid_1t} | $(mibs "$t_hybrid_1t") |
| shoal torrent create --v2             | ${t_v2} | $(mibs "$t_v2") |
| shoal torrent create --v1             | ${t_v1} | $(mibs "$t_v1") |

hybrid / (sha256 + sha1):            $(ratio "$t_hybrid" "$(echo "$t_sha256 + $t_sha1" | bc -l)")   (target <= 0.75)
hybrid 1 thread / (sha256 + sha1):   $(ratio "$t_hybrid_1t" "$(echo "$t_sha256 + $t_sha1" | bc -l)")   (1.0 = one core at hardware speed)
v2 / sha256:                         $(ratio "$t_v2" "$t_sha256")
v1 / sha1:                           $(ratio "$t_v1" "$t_sha1")
REPORT
