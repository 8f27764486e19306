#!/usr/bin/env python3
"""The control plane at scale: N simulated agents report progress on one placement to one
`shoal server`, once per agent per second; the server's CPU per report, its memory, and the
latency of the placement's aggregate status (`placement show`), at each N in one run.

For each N in NS (default 10, 1000, 10000; the smallest is the reference), a fresh `shoal
server` starts as its own process, pinned to core 0 (`taskset -c 0`; PIN=0 to leave it free)
so "keeps up on one core" means one core; `shoal-loadgen` (crates/loadgen), pinned to core 1,
registers N agents over their own HTTP/2 connections, opens their assignment streams,
creates a placement to them, then has every agent report once a second (and heartbeat every
10 s) for WARMUP + SECONDS, while it reads the placement's aggregate status every 50 ms and
walks every node every 2 s from connections of their own. The generator reads the server's
/proc (CPU time, VmRSS, VmHWM) at the window's edges, so the server's cost is measured apart
from the generator's. The reference is N = min(NS) in the same run: the ratio of show
latency at the largest N to it says whether the aggregate's cost grows with N.

    bench/control-plane.py                         # N = 10, 1000, 10000
    NS=10,10000 SECONDS=20 bench/control-plane.py

Knobs: NS (10,1000,10000), SECONDS (30, the measured window), WARMUP (5), PER_CONNECTION
(1: agents per HTTP/2 connection), PIN (1), OUT (bench/results/control-plane), SHOAL_BIN and
LOADGEN_BIN (build nothing when both are given; otherwise both are built with cargo
--release). Writes OUT/results.json and OUT/results.md (also printed). Needs taskset
(util-linux) when PIN=1; does not need root. Each side needs one file descriptor per
connection: the script raises its children's soft limit to the hard one.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = [int(n) for n in os.environ.get("NS", "10,1000,10000").split(",")]
SECONDS = int(os.environ.get("SECONDS", "30"))
WARMUP = int(os.environ.get("WARMUP", "5"))
PER_CONNECTION = int(os.environ.get("PER_CONNECTION", "1"))
PIN = os.environ.get("PIN", "1") == "1"
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench/results/control-plane"))


def binaries():
    shoal, loadgen = os.environ.get("SHOAL_BIN"), os.environ.get("LOADGEN_BIN")
    if shoal and loadgen:
        return shoal, loadgen
    subprocess.run(
        ["cargo", "build", "--release", "-p", "shoal", "-p", "shoal-loadgen"],
        cwd=ROOT,
        check=True,
    )
    return (
        shoal or os.path.join(ROOT, "target/release/shoal"),
        loadgen or os.path.join(ROOT, "target/release/shoal-loadgen"),
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    """Runs in each child before exec: one file descriptor per agent connection."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pinned(core, argv):
    return (["taskset", "-c", str(core)] if PIN else []) + argv


def run_one(shoal, loadgen, n, work):
    """One fresh server, one generator run at N agents; returns the generator's report with
    the server's idle RSS added."""
    api, tracker = free_port(), free_port()
    data = os.path.join(work, f"server-{n}")
    log = open(os.path.join(work, f"server-{n}.log"), "wb")
    server = subprocess.Popen(
        pinned(0, [
            shoal, "server",
            "--data-dir", data,
            "--api-listen", f"127.0.0.1:{api}",
            "--tracker-listen", f"127.0.0.1:{tracker}",
            "--announce-url", f"http://127.0.0.1:{tracker}/announce",
        ]),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_fd_limit,
    )
    try:
        wait_port(api)
        idle_rss = rss_kib(server.pid)
        generator = subprocess.run(
            pinned(1, [
                loadgen,
                "--server", f"http://127.0.0.1:{api}",
                "--agents", str(n),
                "--agents-per-connection", str(PER_CONNECTION),
                "--warmup", str(WARMUP),
                "--seconds", str(SECONDS),
                "--server-pid", str(server.pid),
            ]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=raise_fd_limit,
            timeout=600 + WARMUP + SECONDS,
        )
        if generator.returncode != 0:
            sys.exit(f"shoal-loadgen failed at N={n}:\n{generator.stderr.decode(errors='replace')}")
        report = json.loads(generator.stdout)
        report["server_idle_rss_kib"] = idle_rss
        return report
    finally:
        stop([server])
        log.close()


def ms(us):
    return us / 1000.0


def table(results):
    ref = results[0]
    rows = [
        "| N | reports/s (due) | report p50 / p99 ms | server CPU µs/report | server cores | "
        "server RSS MiB (idle → end, peak) | KiB/agent | show p50 / p99 ms | show ÷ ref (p50, p99) "
        "| walk all nodes p50 ms | fan-out ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rep, srv, show = r["reports"], r["server"], r["show"]["latency"]
        due = rep["due"] / r["window_seconds"]
        idle, end, peak = r["server_idle_rss_kib"], srv["end"]["rss_kib"], srv["end"]["hwm_kib"]
        per_agent = (end - idle) / r["agents"]
        ref_show = ref["show"]["latency"]
        ratio = (
            show["p50_us"] / max(ref_show["p50_us"], 1),
            show["p99_us"] / max(ref_show["p99_us"], 1),
        )
        walk = r["walk"]["latency"]["p50_us"] if r.get("walk") else 0
        rows.append(
            f"| {r['agents']:,} | {rep['ok_per_second']:,.0f} ({due:,.0f}) "
            f"| {ms(rep['latency']['p50_us']):.2f} / {ms(rep['latency']['p99_us']):.2f} "
            f"| {srv['cpu_us_per_report']:.1f} | {srv['cpu_cores']:.2f} "
            f"| {idle / 1024:.0f} → {end / 1024:.0f}, {peak / 1024:.0f} | {per_agent:.1f} "
            f"| {ms(show['p50_us']):.2f} / {ms(show['p99_us']):.2f} | {ratio[0]:.2f}, {ratio[1]:.2f} "
            f"| {ms(walk):.1f} | {r['assignment_fanout_ms']:.0f} |"
        )
    busy = ", ".join(f"N={r['agents']:,}: {r['machine_cpu_busy']:.2f}" for r in results)
    generator = ", ".join(f"N={r['agents']:,}: {r['generator_cpu_cores']:.2f}" for r in results)
    errors = ", ".join(
        f"N={r['agents']:,}: {sum(r['reports']['errors'].values())}" for r in results
    )
    rows.append("")
    rows.append(
        f"Machine CPU busy (both cores, everything) during each window: {busy}. Generator cores: "
        f"{generator}. Refused or failed reports: {errors}."
    )
    return "\n".join(rows)


def main():
    shoal, loadgen = binaries()
    os.makedirs(OUT, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="shoal-cp-bench-") as work:
        for n in sorted(NS):
            print(f"N={n}: {SECONDS} s window after {WARMUP} s warm-up", file=sys.stderr)
            report = run_one(shoal, loadgen, n, work)
            rep = report["reports"]
            print(
                f"  {rep['ok_per_second']:,.0f} reports/s of {rep['due'] / report['window_seconds']:,.0f} due, "
                f"server {report['server']['cpu_us_per_report']:.1f} µs/report, "
                f"show p50 {ms(report['show']['latency']['p50_us']):.2f} ms",
                file=sys.stderr,
            )
            results.append(report)
            time.sleep(1)
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "pinned": PIN,
        "agents_per_connection": PER_CONNECTION,
        "reference_agents": results[0]["agents"],
        "show_ratio_largest_over_reference": {
            "p50": results[-1]["show"]["latency"]["p50_us"] / max(results[0]["show"]["latency"]["p50_us"], 1),
            "p99": results[-1]["show"]["latency"]["p99_us"] / max(results[0]["show"]["latency"]["p99_us"], 1),
        },
        "runs": results,
    }
    md = table(results)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
