#!/usr/bin/env bash
# The main job, for now: build Shoal, make a sample artifact, create a hybrid torrent of it,
# show what it holds, and check that libtorrent (if installed) reads the same info-hashes.
# Later issues grow this into a local swarm of agents.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  echo "demo: installing Rust with rustup (the toolchain is pinned in rust-toolchain.toml)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v curl >/dev/null && command -v cc >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq curl build-essential >/dev/null; }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo build --release --locked --quiet -p shoal
shoal=target/release/shoal
work="${DEMO_DIR:-$(mktemp -d -t shoal-demo.XXXXXX)}"
mkdir -p "$work/artifact/bin" "$work/artifact/lib"
head -c $((96 << 20)) /dev/urandom > "$work/artifact/lib/payload.bin"
printf '#!/bin/sh\necho hello from the artifact\n' > "$work/artifact/bin/run.sh"
chmod +x "$work/artifact/bin/run.sh"
echo "demo: created a 96 MiB sample artifact in $work/artifact"

"$shoal" torrent create "$work/artifact" -o "$work/artifact.torrent" --force \
  --tracker http://127.0.0.1:6969/announce --comment "Shoal demo"
echo
if python3 -c 'import libtorrent' 2>/dev/null; then
  python3 crates/shoal/tests/interop/lt_tool.py hashes "$work/artifact.torrent" \
    | sed 's/^/demo: libtorrent reads the same torrent as: /'
fi
cat <<NEXT

Next, try:
  $shoal torrent show $work/artifact.torrent --json
  $shoal torrent show "\$($shoal torrent show $work/artifact.torrent --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["magnet"])')"
  $shoal torrent create --help
NEXT
