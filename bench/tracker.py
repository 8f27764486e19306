#!/usr/bin/env python3
"""Tracker announces per second: Shoal's HTTP tracker against opentracker, in one run.

Each tracker runs pinned to core 0 (`taskset -c 0`); the load generator, `wrk` with one thread
and keep-alive connections, runs pinned to core 1. Both trackers serve the same info-hash
(Shoal's: an artifact published to an agent's embedded control plane; opentracker's: the same
hash in its whitelist), pre-filled with a swarm of PEERS (default 1000) peers, then take
announces from those same peers in turn (compact, numwant=50, half seeds, half leechers) for
SECONDS (default 10) per round. Rounds alternate which tracker goes first; the table shows the
medians. Before the timed rounds, a short run checks every response body: a failure reason
or a body without peers stops the benchmark. opentracker closes each connection after its
response (it has no keep-alive), so its load includes a TCP handshake per announce; Shoal keeps
connections open; a third row measures Shoal under opentracker's pattern (a new connection
per announce) for a like-for-like comparison.

    bench/tracker.py              # writes a Markdown table to stdout
    ROUNDS=1 SECONDS=5 bench/tracker.py

Needs: a release build of `shoal` (built here), `wrk` and `opentracker` (installed with apt
if missing), python3.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from benchlib import cpu_seconds, stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target/release/shoal")
CLIENTS = os.path.join(ROOT, "crates/shoal/tests/interop/clients.py")
PEERS = int(os.environ.get("PEERS", "1000"))
SECONDS = int(os.environ.get("SECONDS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))

# The load: every request an announce from the next peer of the pre-filled swarm.
LUA_LOAD = r"""
local hash = os.getenv("INFO_HASH")
local peers = tonumber(os.getenv("PEERS"))
local n = 0
local errors = 0
local samples = {}
request = function()
  n = n + 1
  local i = n % peers
  return wrk.format("GET", string.format(
    "/announce?info_hash=%s&peer_id=-WK0001-%012d&port=%d&uploaded=0&downloaded=0&left=%d&compact=1&numwant=50",
    hash, i, 10000 + i, i % 2), headers)
end
"""

# Keep-alive (wrk's default) or a new connection per announce, as opentracker imposes.
HEADERS_KEEP = 'local headers = {}\n'
HEADERS_CLOSE = 'local headers = {["Connection"] = "close"}\n'

# The same load with every response checked: run briefly before the timed rounds (a Lua
# `response` callback costs wrk enough time per request to make wrk the bottleneck).
LUA_CHECK = LUA_LOAD + r"""
response = function(status, headers, body)
  if status ~= 200 or body:find("failure reason", 1, true) or not body:find("5:peers", 1, true) then
    errors = errors + 1
    if #samples < 3 then samples[#samples + 1] = body:sub(1, 200) end
  end
end
done = function(summary, latency, requests)
  io.write(string.format("ERRORS %d\n", errors))
  for _, s in ipairs(samples) do io.write("SAMPLE " .. s .. "\n") end
end
"""


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def ensure_tools():
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("opentracker", "opentracker"))
               if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "install", "-y", "-qq", *missing, stdout=subprocess.DEVNULL)
    sh("cargo", "build", "--release", "--locked", "--quiet", "-p", "shoal", cwd=ROOT)


def prefill(base, hash_escaped):
    """Announces every peer once, so the swarm holds PEERS peers before the clock starts."""
    for i in range(PEERS):
        url = (f"{base}/announce?info_hash={hash_escaped}&peer_id=-WK0001-{i:012d}"
               f"&port={10000 + i}&uploaded=0&downloaded=0&left={i % 2}&compact=1&numwant=50")
        body = urllib.request.urlopen(url, timeout=5).read()
        if b"failure reason" in body:
            sys.exit(f"{base} refused the prefill: {body[:200]!r}")


def scrape_count(base, hash_escaped):
    body = urllib.request.urlopen(f"{base}/scrape?info_hash={hash_escaped}", timeout=5).read()
    # d5:filesd20:<hash>d8:completei<N>e10:downloadedi<N>e10:incompletei<N>eeee
    def num(key):
        at = body.find(key)
        return int(body[at + len(key) + 1:body.index(b"e", at + len(key))]) if at >= 0 else -1
    return num(b"8:complete") + num(b"10:incomplete")


def run_wrk(port, hash_escaped, script, seconds):
    env = dict(os.environ, INFO_HASH=hash_escaped, PEERS=str(PEERS))
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", script,
         f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=True).stdout
    # opentracker closes the connection after each response (no keep-alive), which wrk
    # counts as read errors and answers by reconnecting; that is its cost, not a failure.
    if "Non-2xx" in out or "timeout 0" not in out and "Socket errors" in out:
        sys.exit(f"errors from 127.0.0.1:{port}:\n{out}")
    rate = float(next(l for l in out.splitlines() if l.startswith("Requests/sec:")).split()[1])
    errors = [int(l.split()[1]) for l in out.splitlines() if l.startswith("ERRORS")]
    samples = [l for l in out.splitlines() if l.startswith("SAMPLE")]
    if errors and errors[0]:
        sys.exit(f"{errors[0]} bad responses from 127.0.0.1:{port}: {samples}")
    return rate


def main():
    ensure_tools()
    work = tempfile.mkdtemp(prefix="shoal-bench-tracker-")
    procs = []
    try:
        # Shoal: an agent with the embedded control plane, all on loopback, pinned to core 0.
        api, peer, server, tracker = 27520, 27521, 27522, 27523
        agent = subprocess.Popen(
            ["taskset", "-c", "0", SHOAL, "agent", "--data-dir", f"{work}/agent",
             "--node-id", "bench", "--api-listen", f"127.0.0.1:{api}",
             "--peer-listen", f"127.0.0.1:{peer}", "--server-api-listen", f"127.0.0.1:{server}",
             "--tracker-listen", f"127.0.0.1:{tracker}"],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/agent.log", "w"))
        procs.append(agent)
        wait_port(api)
        with open(f"{work}/artifact.bin", "wb") as f:
            f.write(os.urandom(1 << 20))
        agent_url = f"http://127.0.0.1:{api}"
        sh(SHOAL, "publish", f"{work}/artifact.bin", "--name", "bench/tracker:1",
           "--agent", agent_url, stdout=subprocess.DEVNULL)
        info = json.loads(subprocess.run(
            [SHOAL, "info", "bench/tracker:1", "--agent", agent_url, "--json"],
            capture_output=True, check=True).stdout)
        v1 = info["infoHashV1"]
        escaped = urllib.parse.quote_from_bytes(bytes.fromhex(v1), safe="")

        # opentracker, whitelisting the same hash, pinned to core 0.
        ot_port = 27530
        os.makedirs(f"{work}/ot", exist_ok=True)
        os.chmod(work, 0o755)
        os.chmod(f"{work}/ot", 0o755)
        ot = subprocess.Popen(["taskset", "-c", "0", sys.executable, CLIENTS, "tracker",
                               str(ot_port), f"{work}/ot", v1],
                              stdout=subprocess.DEVNULL, stderr=open(f"{work}/ot.log", "w"))
        procs.append(ot)
        wait_port(ot_port)
        time.sleep(0.5)  # opentracker reads its whitelist after it starts listening

        targets = {"shoal": (tracker, agent.pid), "opentracker": (ot_port, ot.pid)}
        for name, (port, _) in targets.items():
            prefill(f"http://127.0.0.1:{port}", escaped)
            count = scrape_count(f"http://127.0.0.1:{port}", escaped)
            # Shoal's own agent also announces the artifact: one more peer.
            if count < PEERS:
                sys.exit(f"{name} holds {count} peers after the prefill, not {PEERS}")
        script, close, check = f"{work}/load.lua", f"{work}/close.lua", f"{work}/check.lua"
        for path, text in ((script, HEADERS_KEEP + LUA_LOAD), (close, HEADERS_CLOSE + LUA_LOAD),
                           (check, HEADERS_KEEP + LUA_CHECK)):
            with open(path, "w") as f:
                f.write(text)
        for name, (port, _) in targets.items():
            run_wrk(port, escaped, check, 1)
        # The third row: Shoal with a new connection per announce, like opentracker's load.
        targets["shoal, connection per announce"] = (tracker, agent.pid)
        scripts = {"shoal": script, "opentracker": script,
                   "shoal, connection per announce": close}
        rates = {name: [] for name in targets}
        cpu = {name: [] for name in targets}
        order = list(targets)
        for r in range(ROUNDS):
            for name in (order if r % 2 == 0 else order[::-1]):
                port, pid = targets[name]
                before = cpu_seconds(pid)
                rates[name].append(run_wrk(port, escaped, scripts[name], SECONDS))
                cpu[name].append(cpu_seconds(pid) - before)
        shoal_rate = statistics.median(rates["shoal"])
        ot_rate = statistics.median(rates["opentracker"])
        print(f"Tracker announces per second: {PEERS}-peer swarm, HTTP keep-alive, "
              f"{CONNECTIONS} connections, wrk on core 1, tracker on core 0, "
              f"{SECONDS} s x {ROUNDS} rounds (median)\n")
        print("| tracker | announces/s | per round | CPU s per round |")
        print("|---|---|---|---|")
        for name in targets:
            print(f"| {name} | {statistics.median(rates[name]):,.0f} | "
                  f"{', '.join(f'{x:,.0f}' for x in rates[name])} | "
                  f"{', '.join(f'{x:.1f}' for x in cpu[name])} |")
        close_rate = statistics.median(rates["shoal, connection per announce"])
        print(f"\n| ratio | value | target |\n|---|---|---|\n"
              f"| shoal / opentracker | **{shoal_rate / ot_rate:.2f}** | >= 1.0 — "
              f"{'met' if shoal_rate >= ot_rate else 'not met'} |\n"
              f"| shoal / opentracker, both a connection per announce | "
              f"{close_rate / ot_rate:.2f} | |")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
