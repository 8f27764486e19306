#!/usr/bin/env python3
"""Idle footprint: an agent seeding ARTIFACTS (default 100) artifacts, against libtorrent
seeding the same torrents, in one run.

Publishes ARTIFACTS files of 1 MiB to an agent with the embedded control plane (so the agent
also runs the tracker and the catalog), then lets it sit for SECONDS (default 60) and reads
its resident memory (VmRSS, and the peak VmHWM) and the CPU time it used over that window
(utime + stime from /proc). The reference is a libtorrent 2 session (the PyPI binding, in a
Python process whose own baseline is measured too) seeding the same .torrent files from the
same data, announcing to the same tracker. Both idle at once, so they see the same machine.

    bench/agent-idle.py          # writes a Markdown table to stdout
    ARTIFACTS=20 SECONDS=20 bench/agent-idle.py

Needs a release build of `shoal` (built here) and the PyPI `libtorrent` module
(scripts/install-test-deps.sh installs it).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_seconds, stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target/release/shoal")
ARTIFACTS = int(os.environ.get("ARTIFACTS", "100"))
SECONDS = int(os.environ.get("SECONDS", "60"))

LT_SEEDER = r"""
import sys, time, libtorrent as lt
ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False, "alert_mask": 0})
for line in sys.stdin:
    torrent, save = line.split()
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save
    ses.add_torrent(atp)
while not all(h.status().is_seeding for h in ses.get_torrents()):
    time.sleep(0.1)
print("seeding", flush=True)
time.sleep(1e9)
"""

BASELINE = "import time, libtorrent; print('ready', flush=True); time.sleep(1e9)"


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
    raise KeyError(key)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "shoal"],
                   cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="shoal-bench-idle-")
    procs = []
    try:
        api, peer, server, tracker = 27620, 27621, 27622, 27623
        agent = subprocess.Popen(
            [SHOAL, "agent", "--data-dir", f"{work}/agent", "--node-id", "idle",
             "--api-listen", f"127.0.0.1:{api}", "--peer-listen", f"127.0.0.1:{peer}",
             "--server-api-listen", f"127.0.0.1:{server}",
             "--tracker-listen", f"127.0.0.1:{tracker}"],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/agent.log", "w"))
        procs.append(agent)
        wait_port(api)
        url = f"http://127.0.0.1:{api}"
        os.makedirs(f"{work}/src")
        os.makedirs(f"{work}/torrents")
        lines = []
        for i in range(ARTIFACTS):
            data = f"{work}/src/{i}/file-{i}.bin"
            os.makedirs(os.path.dirname(data))
            with open(data, "wb") as f:
                f.write(os.urandom(1 << 20))
            name = f"bench/idle-{i}:1"
            subprocess.run([SHOAL, "publish", data, "--name", name, "--agent", url],
                           check=True, stdout=subprocess.DEVNULL)
            torrent = f"{work}/torrents/{i}.torrent"
            subprocess.run([SHOAL, "info", name, "--agent", url, "--torrent", torrent],
                           check=True, stdout=subprocess.DEVNULL)
            lines.append(f"{torrent} {work}/src/{i}\n")
        status_json = json.loads(subprocess.run(
            [SHOAL, "status", "--agent", url, "--json"], capture_output=True, check=True).stdout)
        seeding = sum(t.get("state") == "TORRENT_STATE_SEEDING" for t in status_json["torrents"])
        if seeding != ARTIFACTS:
            sys.exit(f"the agent seeds {seeding} artifacts, not {ARTIFACTS}")

        lt_proc = subprocess.Popen([sys.executable, "-c", LT_SEEDER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        procs.append(lt_proc)
        lt_proc.stdin.write("".join(lines))
        lt_proc.stdin.close()
        if lt_proc.stdout.readline().strip() != "seeding":
            sys.exit("libtorrent did not start seeding")
        base = subprocess.Popen([sys.executable, "-c", BASELINE], stdout=subprocess.PIPE,
                                text=True)
        procs.append(base)
        base.stdout.readline()

        time.sleep(5)  # let start-up work (announces, first flushes) settle
        pids = {"shoal agent": agent.pid, "libtorrent (Python)": lt_proc.pid,
                "Python + libtorrent import, no session": base.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(SECONDS)
        rows = []
        for name, pid in pids.items():
            used = cpu_seconds(pid) - before[name]
            rows.append((name, status(pid, "VmRSS"), status(pid, "VmHWM"), used))
        print(f"Idle footprint: {ARTIFACTS} artifacts of 1 MiB seeded, measured over {SECONDS} s "
              f"of idling (the agent also runs the embedded control plane and tracker)\n")
        print("| process | RSS MiB | peak RSS MiB | CPU s over the window | CPU % |")
        print("|---|---|---|---|---|")
        for name, rss, hwm, used in rows:
            print(f"| {name} | {rss:.1f} | {hwm:.1f} | {used:.2f} | {100 * used / SECONDS:.2f} |")
        shoal, lt, py = rows
        lt_net = lt[1] - py[1]
        print(f"\n| ratio | value |\n|---|---|\n"
              f"| shoal RSS / libtorrent RSS (whole process) | **{shoal[1] / lt[1]:.2f}** |\n"
              f"| shoal RSS / libtorrent session RSS (minus the Python baseline) | "
              f"{shoal[1] / lt_net:.2f} |\n"
              f"| shoal CPU / libtorrent CPU | "
              f"{f'{shoal[3] / lt[3]:.2f}' if lt[3] >= 0.05 else 'n/a (libtorrent under 0.05 s)'} |")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
