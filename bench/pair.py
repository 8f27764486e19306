#!/usr/bin/env python3
"""Single-pair transfer on loopback, Shoal -> Shoal against libtorrent -> libtorrent, in one run.

For each torrent shape (hybrid 4 MiB pieces, hybrid 64 KiB pieces, v1 256 KiB pieces) over one
file of SIZE_MIB (default 1024) on tmpfs: a seed that has hash-checked its data before the clock
starts, and a leecher timed from start to exit with every byte verified. Reports MiB/s, the
ratio Shoal / libtorrent, CPU seconds per GiB on each side, the rate at which one core hashes the
file (`openssl dgst -sha256` for hybrid, `-sha1` for v1) as the physical reference, and the
seed's peak RSS.

    bench/pair.py                 # writes a Markdown table to stdout
    SIZE_MIB=256 bench/pair.py    # a quicker run
    ROUNDS=1 bench/pair.py        # one transfer per system and shape instead of three

Each shape runs ROUNDS times per system, alternating which system goes first, and the table
shows the medians: on this VM, writing to pages tmpfs just freed is much cheaper than to pages
not touched for a while, so whichever system ran second in a fixed order had an edge.

libtorrent is tuned for a LAN: TCP only, no encryption, no DHT/LSD, unlimited unchoke slots, deep
request queues. Both sides of each pair share the machine's two cores.
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_seconds, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target", "release", "shoal")
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


def run_pair(kind, torrent, data_dir, data_file, work):
    port = free_port()
    out = tempfile.mkdtemp(dir=work)
    if kind == "shoal":
        seed = subprocess.Popen([SHOAL, "torrent", "seed", torrent, "--data", data_file, "--listen", f"127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, timeout=600)  # listens only after the hash check
        leech_cmd = [SHOAL, "torrent", "download", torrent, "-o", out, "--peer", f"127.0.0.1:{port}"]
    else:
        seed = subprocess.Popen([sys.executable, LT_TOOL, "seed", torrent, data_dir, str(port), "3600", "--tuned"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert seed.stdout.readline().strip() == b"seeding"  # checked before the clock starts
        leech_cmd = [sys.executable, LT_TOOL, "download", torrent, out, f"127.0.0.1:{port}", "600", "--tuned"]
    seed_cpu0 = cpu_seconds(seed.pid)
    start = time.time()
    leech = subprocess.Popen(leech_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, rusage = os.wait4(leech.pid, 0)[1:]
    wall = time.time() - start
    seed_cpu = cpu_seconds(seed.pid) - seed_cpu0
    rss = peak_rss_mib(seed.pid)
    seed.kill()
    seed.wait()
    got = os.path.join(out, os.path.basename(data_file))
    if subprocess.run(["cmp", "-s", got, data_file]).returncode != 0:
        sys.exit(f"{kind}: the downloaded file differs")
    subprocess.run(["rm", "-rf", out])
    gib = SIZE_MIB / 1024
    return {"mib_s": SIZE_MIB / wall, "leech_cpu_gib": (rusage.ru_utime + rusage.ru_stime) / gib,
            "seed_cpu_gib": seed_cpu / gib, "seed_rss_mib": rss}


def median_run(runs):
    """The median of each measure over several runs."""
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def openssl_rate(algo, path):
    start = time.time()
    subprocess.run(["openssl", "dgst", f"-{algo}", path], check=True, stdout=subprocess.DEVNULL)
    return SIZE_MIB / (time.time() - start)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "shoal"], cwd=ROOT, check=True)
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
            runs = {"shoal": [], "libtorrent": []}
            for round_ in range(ROUNDS):
                order = ["shoal", "libtorrent"] if round_ % 2 == 0 else ["libtorrent", "shoal"]
                for kind in order:
                    runs[kind].append(run_pair(kind, torrent, data_dir, data, work))
            shoal, lt = median_run(runs["shoal"]), median_run(runs["libtorrent"])
            hash_rate = sha256 if flag == "--hybrid" else sha1
            rows.append((label, shoal, lt, hash_rate))
        print(f"Single pair on loopback, {SIZE_MIB} MiB on tmpfs, {os.cpu_count()} cores, median of {ROUNDS} rounds; one core hashes at "
              f"{sha256:.0f} MiB/s (sha256) / {sha1:.0f} MiB/s (sha1)\n")
        print("| torrent | Shoal MiB/s | libtorrent MiB/s | Shoal / libtorrent | Shoal / one-core hash rate | CPU s/GiB Shoal seed, leech | CPU s/GiB libtorrent seed, leech | seed peak RSS Shoal, libtorrent |")
        print("|---|---|---|---|---|---|---|---|")
        for label, s, l, h in rows:
            print(f"| {label} | {s['mib_s']:.0f} | {l['mib_s']:.0f} | **{s['mib_s'] / l['mib_s']:.2f}x** | {s['mib_s'] / h:.2f} | "
                  f"{s['seed_cpu_gib']:.2f}, {s['leech_cpu_gib']:.2f} | {l['seed_cpu_gib']:.2f}, {l['leech_cpu_gib']:.2f} | "
                  f"{s['seed_rss_mib']:.0f} MiB, {l['seed_rss_mib']:.0f} MiB |")
    finally:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
