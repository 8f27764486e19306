#!/usr/bin/env bash
# The main job, for now: build Shoal, make a sample artifact, create a hybrid torrent of it,
# seed it and download it again over loopback with every piece verified, and leave the seed
# running for the commands it prints. Later issues grow this into a local swarm of agents.
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

"$shoal" torrent create "$work/artifact" -o "$work/artifact.torrent" --force --comment "Shoal demo"
echo
if python3 -c 'import libtorrent' 2>/dev/null; then
  python3 crates/shoal/tests/interop/lt_tool.py hashes "$work/artifact.torrent" \
    | sed 's/^/demo: libtorrent reads the same torrent as: /'
fi

# A seed and a leecher on loopback: the leecher verifies every piece and exposes the files only
# when all of them are verified.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$shoal" torrent seed "$work/artifact.torrent" --data "$work/artifact" --listen "127.0.0.1:$port" \
  --seed-for 10m >/dev/null 2>"$work/seed.log" &
seed_pid=$!
trap 'kill $seed_pid 2>/dev/null' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
echo "demo: seeding on 127.0.0.1:$port (pid $seed_pid); downloading into $work/copy"
"$shoal" torrent download "$work/artifact.torrent" -o "$work/copy" --peer "127.0.0.1:$port"
diff -r "$work/artifact" "$work/copy/artifact" && echo "demo: the copy is byte-identical"
cat <<NEXT

The seed keeps running for 10 minutes (pid $seed_pid; stop it with: kill $seed_pid). Next, try:
  $shoal torrent show $work/artifact.torrent
  $shoal torrent download "\$($shoal torrent show $work/artifact.torrent --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["magnet"].split("&tr=")[0])')" -o $work/from-magnet --peer 127.0.0.1:$port
  $shoal torrent download --help
NEXT
trap - EXIT
