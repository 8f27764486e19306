#!/usr/bin/env bash
# The main job: build Shoal and start a real local swarm on loopback. Agent 1 runs the embedded
# control plane (catalog, tracker, node registry); agents 2..N join it. Each agent is its own
# process with its own address (127.0.0.N) and data directory. The script publishes a generated
# artifact on agent 1, gets it on every other agent at once with every byte verified, compares
# each copy with the source, and leaves the agents running for the commands it prints; the
# stop.sh it writes stops them. If the script fails or is interrupted, it stops the agents itself.
#
# Settings (environment variables):
#   DEMO_DIR           where the data, logs, agents.pid and stop.sh go [default: a new temporary
#                      directory]
#   DEMO_AGENTS        how many agents, including the one with the control plane [default: 4]
#   DEMO_SIZE_MIB      the size of the sample artifact [default: 256]
#   DEMO_API_PORT      each agent's API port, on its own address [default: 7420]
#   DEMO_PEER_PORT     each agent's BitTorrent port, on its own address [default: 6881]
#   DEMO_SERVER_PORT   the control plane's API port, on 127.0.0.1 [default: 7421]
#   DEMO_TRACKER_PORT  the tracker's port, on 127.0.0.1 [default: 6969]
# Linux only: the agents use 127.0.0.2, 127.0.0.3, ..., which Linux routes to loopback with no
# setup.
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

agents="${DEMO_AGENTS:-4}"
size_mib="${DEMO_SIZE_MIB:-256}"
api_port="${DEMO_API_PORT:-7420}"
peer_port="${DEMO_PEER_PORT:-6881}"
server_port="${DEMO_SERVER_PORT:-7421}"
tracker_port="${DEMO_TRACKER_PORT:-6969}"
fail() {
  echo "demo: $*" >&2
  exit 1
}
is_number() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
is_number "$agents" 2 254 || fail "DEMO_AGENTS must be a number from 2 to 254, not '$agents'"
is_number "$size_mib" 1 1048576 || fail "DEMO_SIZE_MIB must be a positive number of MiB, not '$size_mib'"
for port in "$api_port" "$peer_port" "$server_port" "$tracker_port"; do
  is_number "$port" 1 65535 || fail "ports must be numbers from 1 to 65535, not '$port'"
done
[ "$api_port" != "$peer_port" ] || fail "DEMO_API_PORT and DEMO_PEER_PORT must differ"
for port in "$server_port" "$tracker_port"; do
  if [ "$port" = "$api_port" ] || [ "$port" = "$peer_port" ]; then
    fail "DEMO_SERVER_PORT and DEMO_TRACKER_PORT must differ from the agent ports (agent-1 is on 127.0.0.1 too)"
  fi
done
[ "$server_port" != "$tracker_port" ] || fail "DEMO_SERVER_PORT and DEMO_TRACKER_PORT must differ"

addr() { echo "127.0.0.$1"; }
api() { echo "http://$(addr "$1"):$api_port"; }
server="http://127.0.0.1:$server_port"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
seconds() { printf '%d.%ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# The ports must be free before anything starts: say which are taken and, when a demo agent
# holds them, how to stop that demo.
in_use() { (: <>"/dev/tcp/$1/$2") 2>/dev/null; }
busy=()
holders=()
check_port() {
  in_use "$1" "$2" || return 0
  busy+=("$1:$2")
  local holder hint
  holder=$(pgrep -af "shoal agent .*$1:$2" | head -n1 || true)
  if [[ $holder =~ --data-dir\ ([^ ]+) ]] && [ -x "$(dirname "${BASH_REMATCH[1]}")/stop.sh" ]; then
    hint="a demo runs there; stop it with: $(dirname "${BASH_REMATCH[1]}")/stop.sh"
  elif [ -n "$holder" ]; then
    hint="held by: $holder"
  else
    return 0
  fi
  [[ " ${holders[*]} " == *" $hint "* ]] || holders+=("$hint")
}
check_port 127.0.0.1 "$server_port"
check_port 127.0.0.1 "$tracker_port"
for i in $(seq "$agents"); do
  check_port "$(addr "$i")" "$api_port"
  check_port "$(addr "$i")" "$peer_port"
done
if [ "${#busy[@]}" -gt 0 ]; then
  echo "demo: these addresses are already in use: ${busy[*]}" >&2
  for hint in "${holders[@]}"; do echo "demo: $hint" >&2; done
  fail "stop what holds them, or choose other ports with DEMO_API_PORT, DEMO_PEER_PORT, DEMO_SERVER_PORT, DEMO_TRACKER_PORT"
fi

echo "demo: building Shoal (release; the first build takes several minutes)"
cargo build --release --locked -p shoal
shoal="$PWD/target/release/shoal"

if [ -n "${DEMO_DIR:-}" ]; then
  mkdir -p "$DEMO_DIR"
  work="$(cd "$DEMO_DIR" && pwd -P)"
  if [ -s "$work/agents.pid" ]; then
    while read -r pid; do
      if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "--data-dir $work/agent-"; then
        fail "agents of an earlier demo still run from $work (pid $pid); stop them with $work/stop.sh"
      fi
    done <"$work/agents.pid"
  fi
  # A fresh start: an earlier run's catalog would hold demo/sample:1 bound to other content.
  rm -rf "$work"/agent-* "$work"/get-* "$work"/out-* "$work/sample" "$work/agents.pid" "$work/stop.sh" \
    "$work/sample.torrent" "$work/hello.txt" "$work/hello-copy.txt"
else
  work="$(cd "$(mktemp -d -t shoal-demo.XXXXXX)" && pwd -P)"
fi

# stop.sh reads agents.pid (one PID a line, agent-1 first) and stops only processes that are
# still this demo's agents, so a PID reused since then is left alone.
cat >"$work/stop.sh" <<'STOP'
#!/usr/bin/env bash
# Stops the Shoal demo agents started from this directory: SIGTERM (each makes what it verified
# durable and exits), the other agents first and then agent-1, whose control plane and tracker
# they talk to until they stop; waits up to 20 s for each group, then reports.
set -uo pipefail
dir="$(cd "$(dirname "$0")" && pwd -P)"
pids=()
n=0
if [ -s "$dir/agents.pid" ]; then
  while read -r pid; do
    n=$((n + 1))
    # Only a process that is still this demo's agent: its PID may have been reused since.
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "--data-dir $dir/agent-$n "; then
      pids[n]=$pid
    fi
  done <"$dir/agents.pid"
fi
if [ "${#pids[@]}" -eq 0 ]; then
  echo "stop: no demo agent from $dir is running"
  rm -f "$dir/agents.pid"
  exit 0
fi
status=0
stop() {
  [ "$#" -gt 0 ] || return 0
  local i alive
  for i in "$@"; do kill -TERM "${pids[i]}" 2>/dev/null; done
  for _ in $(seq 200); do
    alive=0
    for i in "$@"; do kill -0 "${pids[i]}" 2>/dev/null && alive=1; done
    [ "$alive" -eq 1 ] || break
    sleep 0.1
  done
  for i in "$@"; do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      kill -KILL "${pids[i]}" 2>/dev/null
      echo "stop: agent-$i (pid ${pids[i]}) did not stop within 20 s; killed it (see $dir/agent-$i.log)"
      status=1
    else
      echo "stop: agent-$i (pid ${pids[i]}) stopped"
    fi
  done
}
others=()
for i in "${!pids[@]}"; do [ "$i" -eq 1 ] || others+=("$i"); done
stop "${others[@]}"
[ -z "${pids[1]:-}" ] || stop 1
rm -f "$dir/agents.pid"
echo "stop: the data and logs stay in $dir (remove them with: rm -rf $dir)"
exit "$status"
STOP
chmod +x "$work/stop.sh"
: >"$work/agents.pid"

# On failure or interruption, stop what was started; on success the agents keep running.
finished=0
gets=()
on_exit() {
  local rc=$?
  [ "$finished" -eq 0 ] || return 0
  echo "demo: stopped before the end (exit $rc); stopping the agents it started (logs stay in $work)" >&2
  [ "${#gets[@]}" -eq 0 ] || kill "${gets[@]}" 2>/dev/null || true
  "$work/stop.sh" >&2 || true
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until agent $1 answers on its API; on timeout, or if it exits, shows its log and fails.
wait_ready() {
  local i=$1 pid=$2
  for _ in $(seq 300); do
    "$shoal" status --agent "$(api "$i")" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "demo: agent-$i (pid $pid) did not answer on $(api "$i") within 30 s; the end of $work/agent-$i.log:" >&2
  else
    echo "demo: agent-$i exited; the end of $work/agent-$i.log:" >&2
  fi
  tail -n 20 "$work/agent-$i.log" | sed 's/^/  | /' >&2
  exit 1
}

for i in $(seq "$agents"); do
  args=(agent --data-dir "$work/agent-$i" --node-id "agent-$i"
    --label "role=$([ "$i" -eq 1 ] && echo origin || echo edge)"
    --api-listen "$(addr "$i"):$api_port" --peer-listen "$(addr "$i"):$peer_port")
  if [ "$i" -eq 1 ]; then
    args+=(--server-api-listen "127.0.0.1:$server_port" --tracker-listen "127.0.0.1:$tracker_port")
  else
    args+=(--control-plane "$server")
  fi
  # setsid: the agents outlive this script and its terminal, and a Ctrl-C typed later in that
  # terminal does not reach them.
  setsid "$shoal" "${args[@]}" </dev/null >"$work/agent-$i.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$work/agents.pid"
  wait_ready "$i" "$pid"
  if [ "$i" -eq 1 ]; then
    echo "demo: agent-1 (pid $pid) API $(api 1), peers 127.0.0.1:$peer_port, with the control plane: API $server, tracker http://127.0.0.1:$tracker_port/announce"
  else
    echo "demo: agent-$i (pid $pid) API $(api "$i"), peers $(addr "$i"):$peer_port"
  fi
done

mkdir -p "$work/sample/bin" "$work/sample/data"
head -c $((size_mib << 20)) /dev/urandom >"$work/sample/data/payload.bin"
printf '#!/bin/sh\necho hello from the sample artifact\n' >"$work/sample/bin/run.sh"
chmod +x "$work/sample/bin/run.sh"
echo "demo: generated a $size_mib MiB sample artifact in $work/sample"

start=$(date +%s%N)
"$shoal" publish "$work/sample" --name demo/sample:1 --agent "$(api 1)" | sed 's/^/demo: agent-1: /'
echo "demo: published in $(seconds "$(ms_since "$start")") (copied, hashed, cataloged, seeding)"

# Progress of agent $1's only torrent, from its status: " 47% 3 peers".
progress() {
  "$shoal" status --json --agent "$(api "$1")" 2>/dev/null | awk -F'"' '
    $2 == "bytesVerified" { v = $4 } $2 == "bytesTotal" { t = $4 }
    $2 == "peers" { p = $3; gsub(/[^0-9]/, "", p) }
    END { printf "%3d%% %d peer%s", (t > 0 ? 100 * v / t : 0), p, (p == 1 ? "" : "s") }'
}

echo "demo: agents 2..$agents get demo/sample:1 at once, each from every agent that has pieces"
start=$(date +%s%N)
for i in $(seq 2 "$agents"); do
  "$shoal" get demo/sample:1 -o "$work/out-$i" --agent "$(api "$i")" >"$work/get-$i.log" 2>&1 &
  gets+=("$!")
done
while :; do
  running=0
  for pid in "${gets[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
  [ "$running" -eq 1 ] || break
  line=""
  for i in $(seq 2 "$agents"); do line+="   agent-$i $(progress "$i")"; done
  echo "  $(seconds "$(ms_since "$start")")$line"
  sleep 1
done
elapsed=$(ms_since "$start")
failed=0
for k in "${!gets[@]}"; do
  i=$((k + 2))
  if wait "${gets[$k]}"; then
    tail -n 1 "$work/get-$i.log" | sed "s/^/demo: agent-$i: /"
  else
    failed=1
    echo "demo: agent-$i: shoal get failed:" >&2
    sed 's/^/  | /' "$work/get-$i.log" >&2
  fi
done
[ "$failed" -eq 0 ] || fail "some gets failed; agent logs are in $work"
echo "demo: $((agents - 1)) copies of $size_mib MiB in $(seconds "$elapsed")"
for i in $(seq 2 "$agents"); do
  diff -r "$work/sample" "$work/out-$i" >/dev/null \
    || fail "agent-$i: $work/out-$i differs from $work/sample"
  echo "demo: agent-$i: $work/out-$i is identical to the source (diff -r)"
done

# What each agent sent to its peers: the edge agents serve each other, not only the origin.
sent() {
  "$shoal" status --json --agent "$(api "$1")" | awk -F'"' '
    $2 == "uploaded" { u += $4 } END { printf "%.1f MiB", u / 1048576 }'
}
sent_line="demo: sent to peers: agent-1 $(sent 1)"
for i in $(seq 2 "$agents"); do sent_line+=", agent-$i $(sent "$i")"; done
echo "$sent_line"

echo
echo "\$ shoal nodes --server $server"
"$shoal" nodes --server "$server"
echo
echo "\$ shoal status --agent $(api 1)"
"$shoal" status --agent "$(api 1)"

last=$(api "$agents")
other=$(api 2)
cat <<NEXT

The $agents agents keep running. Logs and data: $work

Try the CLI (each agent answers on its own address; export SHOAL_AGENT=URL to leave out --agent):

  export PATH="$PWD/target/release:\$PATH"
  shoal ls --agent $last
  shoal info demo/sample:1 --agent $last --torrent $work/sample.torrent
  shoal status --agent $other
  date > $work/hello.txt
  shoal publish $work/hello.txt --name demo/hello:1 --agent $other
  shoal get demo/hello:1 -o $work/hello-copy.txt --agent $last
  shoal rm demo/sample:1 --agent $other
  shoal nodes --server $server --json

or the REST API (the same methods are gRPC on the same port):

  curl $(api 1)/v1/agent/status
  curl $(api 1)/metrics
  curl $(api 1)/v1/openapi.json

To stop the agents: $work/stop.sh
NEXT
finished=1
