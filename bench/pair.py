#!/usr/bin/env python3
"""Single-pair transfer on loopback, Shoal -> Shoal against libtorrent -> libtorrent, in one run,
and Shoal -> aria2 on the v1 shape.

For each torrent shape (hybrid 4 MiB pieces, hybrid 64 KiB pieces, v1 256 KiB pieces) over one
file of SIZE_MIB (default 1024) on tmpfs: a seed that has hash-checked its data before the clock
starts, and a leecher timed from start to exit with every byte verified. Reports MiB/s, the
ratio Shoal / libtorrent, CPU seconds per GiB on each side, the rate at which one core hashes the
file (`openssl dgst -sha256` for hybrid, `-sha1` for v1) as the physical reference, and the
seed's peak RSS.

    bench/pair.py                 # writes a Markdown table to stdout
    SIZE_MIB=256 bench/pair.py    # a quicker run
    ROUNDS=1 bench/pair.py        # one transfer per system and shape instead of three
    SHOAL_BIN=path/to/shoal bench/pair.py   # that binary, nothing built

Each shape runs ROUNDS times per system, rotating which system goes first, and the table
shows the medians: on this VM, writing to pages tmpfs just freed is much cheaper than to pages
not touched for a while, so whichever system ran second in a fixed order had an edge.

libtorrent is tuned for a LAN: TCP only, no encryption, no DHT/LSD, unlimited unchoke slots, deep
request queues. Both sides of each pair share the machine's two cores.

aria2 (`aria2c`, Debian 12's 1.36) leeches from a Shoal seed (`shoal torrent seed`), on the v1
shape only: aria2 1.36 computes a wrong v1 info-hash for hybrid torrents (for one whose v1
info-hash is 5ba1b75e... it announced fc302516...), so the seed never answers its handshake
and it never receives a byte. aria2 cannot be handed a peer (it has no such option, and
given a magnet with x.pe= pointing at the seed it received nothing in 8 s), so a stub tracker
in this process (benchlib's PeerListTracker) answers its announce with the seed's address. Flags: no DHT, LPD or peer
exchange, no file allocation or integrity check of existing data, no disk cache, exit when done
(--seed-time=0); aria2 still checks every piece's SHA-1 as it arrives. aria2 works in one-second
ticks: it connects a second after the tracker answers, opens with an encrypted (MSE)
handshake, which Shoal does not speak, and retries in plain a second later, and it exits about
two seconds after its last byte. Those 3-4 idle seconds are a large share of its time at these
sizes (at 512 MiB: 2.0 s before the first byte, 1.2 s of data, 2.0 s after the last), so its
row has a second rate: SIZE over the span from its first byte on disk to its last (the file's
allocated blocks, polled every 5 ms). That one is not comparable with the other columns, which
run from start to exit.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import PeerListTracker, cpu_seconds, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SHOAL_BIN: a `shoal` binary to use instead of building the release one.
SHOAL = os.environ.get("SHOAL_BIN") or os.path.join(ROOT, "target", "release", "shoal")
LT_TOOL = os.path.join(ROOT, "crates", "shoal", "tests", "interop", "lt_tool.py")
SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


def aria2_cmd(torrent, out, tracker_url):
    """aria2c leeching `torrent` into `out`, its only peer source the tracker at `tracker_url`."""
    return ["aria2c", "--no-conf=true", f"--dir={out}", f"--bt-tracker={tracker_url}",
            f"--listen-port={free_port()}", "--enable-dht=false", "--enable-dht6=false",
            "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--bt-max-peers=0",
            "--bt-tracker-connect-timeout=10", "--bt-tracker-timeout=10",
            "--bt-stop-timeout=60", "--seed-time=0", "--file-allocation=none",
            "--check-integrity=false", "--disk-cache=0", "--quiet=true", torrent]


def wait_leecher(leech, got, poll):
    """Waits for `leech` to exit; returns its rusage and, when `poll`, the seconds from its
    first byte on disk to its last (the allocated blocks of `got`, checked every 5 ms)."""
    if not poll:
        status, rusage = os.wait4(leech.pid, 0)[1:]
        return status, rusage, None
    size, first, last = SIZE_MIB << 20, None, None
    while True:
        pid, status, rusage = os.wait4(leech.pid, os.WNOHANG)
        if pid:
            return status, rusage, (last - first) if first and last else None
        try:
            written = os.stat(got).st_blocks * 512
        except FileNotFoundError:
            written = 0
        now = time.time()
        if written and first is None:
            first = now
        if written >= size and last is None:
            last = now
        time.sleep(0.005)


def run_pair(kind, torrent, data_dir, data_file, work):
    port = free_port()
    out = tempfile.mkdtemp(dir=work)
    got = os.path.join(out, os.path.basename(data_file))
    tracker = None
    if kind in ("shoal", "aria2"):
        seed = subprocess.Popen([SHOAL, "torrent", "seed", torrent, "--data", data_file, "--listen", f"127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, timeout=600)  # listens only after the hash check
        if kind == "shoal":
            leech_cmd = [SHOAL, "torrent", "download", torrent, "-o", out, "--peer", f"127.0.0.1:{port}"]
        else:
            tracker = PeerListTracker([("127.0.0.1", port)])
            leech_cmd = aria2_cmd(torrent, out, tracker.url)
    else:
        seed = subprocess.Popen([sys.executable, LT_TOOL, "seed", torrent, data_dir, str(port), "3600", "--tuned"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert seed.stdout.readline().strip() == b"seeding"  # checked before the clock starts
        leech_cmd = [sys.executable, LT_TOOL, "download", torrent, out, f"127.0.0.1:{port}", "600", "--tuned"]
    seed_cpu0 = cpu_seconds(seed.pid)
    start = time.time()
    leech = subprocess.Popen(leech_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, rusage, data_seconds = wait_leecher(leech, got, poll=kind == "aria2")
    wall = time.time() - start
    seed_cpu = cpu_seconds(seed.pid) - seed_cpu0
    rss = peak_rss_mib(seed.pid)
    seed.kill()
    seed.wait()
    if tracker:
        tracker.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{kind}: the leecher failed: {leech.stderr.read().decode().strip()}")
    if subprocess.run(["cmp", "-s", got, data_file]).returncode != 0:
        sys.exit(f"{kind}: the downloaded file differs")
    subprocess.run(["rm", "-rf", out])
    gib = SIZE_MIB / 1024
    result = {"mib_s": SIZE_MIB / wall, "leech_cpu_gib": (rusage.ru_utime + rusage.ru_stime) / gib,
              "seed_cpu_gib": seed_cpu / gib, "seed_rss_mib": rss}
    if kind == "aria2":  # nan when the whole file landed between two polls
        result["data_mib_s"] = SIZE_MIB / data_seconds if data_seconds else float("nan")
    return result


def median_run(runs):
    """The median of each measure over several runs."""
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def openssl_rate(algo, path):
    start = time.time()
    subprocess.run(["openssl", "dgst", f"-{algo}", path], check=True, stdout=subprocess.DEVNULL)
    return SIZE_MIB / (time.time() - start)


def main():
    if not os.environ.get("SHOAL_BIN"):
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "shoal"], cwd=ROOT, check=True)
    if not shutil.which("aria2c"):
        sys.exit("bench/pair.py needs aria2c (apt-get install aria2)")
    work = tempfile.mkdtemp(prefix="shoal-pair-", dir="/dev/shm")
    try:
        data_dir = os.path.join(work, "data")
        os.mkdir(data_dir)
        data = os.path.join(data_dir, "payload.bin")
        with open(data, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1 << 20))
        sha256 = max(openssl_rate("sha256", data) for _ in range(2))
        sha1 = max(openssl_rate("sha1", data) for _ in range(2))
        rows = []
        for label, flag, piece in [("hybrid, 4 MiB pieces", "--hybrid", "4MiB"), ("hybrid, 64 KiB pieces", "--hybrid", "64KiB"), ("v1, 256 KiB pieces", "--v1", "256KiB")]:
            torrent = os.path.join(work, f"{flag[2:]}-{piece}.torrent")
            subprocess.run([SHOAL, "torrent", "create", data, "-o", torrent, flag, "--piece-length", piece, "--no-date", "--force"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # aria2 1.36 cannot join hybrid torrents (see the docstring): v1 only.
            kinds = ["shoal", "libtorrent"] + (["aria2"] if flag == "--v1" else [])
            runs = {kind: [] for kind in kinds}
            for round_ in range(ROUNDS):
                k = round_ % len(kinds)
                for kind in kinds[k:] + kinds[:k]:
                    runs[kind].append(run_pair(kind, torrent, data_dir, data, work))
            medians = {kind: median_run(r) for kind, r in runs.items()}
            hash_rate = sha256 if flag == "--hybrid" else sha1
            rows.append((label, medians["shoal"], medians["libtorrent"], medians.get("aria2"), hash_rate))
        print(f"Single pair on loopback, {SIZE_MIB} MiB on tmpfs, {os.cpu_count()} cores, median of {ROUNDS} rounds; one core hashes at "
              f"{sha256:.0f} MiB/s (sha256) / {sha1:.0f} MiB/s (sha1)\n")
        print("| torrent | Shoal MiB/s | libtorrent MiB/s | Shoal / libtorrent | Shoal / one-core hash rate | CPU s/GiB Shoal seed, leech | CPU s/GiB libtorrent seed, leech | seed peak RSS Shoal, libtorrent "
              "| Shoal -> aria2 MiB/s | Shoal -> aria2 MiB/s, first to last byte | CPU s/GiB Shoal seed, aria2 leech |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, s, l, a, h in rows:
            aria2 = (f"{a['mib_s']:.0f} | {a['data_mib_s']:.0f} | {a['seed_cpu_gib']:.2f}, {a['leech_cpu_gib']:.2f}" if a
                     else "n/a (hybrid) | | ")
            print(f"| {label} | {s['mib_s']:.0f} | {l['mib_s']:.0f} | **{s['mib_s'] / l['mib_s']:.2f}x** | {s['mib_s'] / h:.2f} | "
                  f"{s['seed_cpu_gib']:.2f}, {s['leech_cpu_gib']:.2f} | {l['seed_cpu_gib']:.2f}, {l['leech_cpu_gib']:.2f} | "
                  f"{s['seed_rss_mib']:.0f} MiB, {l['seed_rss_mib']:.0f} MiB | {aria2} |")
        print("\naria2 1.36 leeches from a Shoal seed on the v1 shape only: it computes a wrong info-hash for hybrid torrents "
              "and never gets a byte. Its first rate, start to exit, includes 3-4 s of its one-second ticks (connect, "
              "an encrypted handshake Shoal refuses, a plain retry, exit); the second counts only the span from its first "
              "byte on disk to its last.")
    finally:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
