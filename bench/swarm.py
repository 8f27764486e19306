#!/usr/bin/env python3
"""One seed, N downloaders, real processes on shaped links: Shoal against libtorrent and a plain
HTTP server, in one run, each reported against the fluid lower bound.

Every host is a network namespace with one veth on a bridge (10.88.0.0/24); `tc` shapes each
host's upload (its veth) and download (the bridge side) to RATE (default 100mbit), with DELAY
one way (default 0ms). Host 0 seeds an artifact of SIZE_MIB (default 256) of random data;
hosts 1..N download it at the same moment. For each system the harness records every host's
completion time and reports p50, p99 and max divided by

    T* = max(S / u_seed, S / d_min, N * S / (u_seed + sum of the downloaders' u_i))

the time no distribution scheme can beat (every byte leaves the seed at least once, reaches
each host through its own link, and all N copies have to be uploaded by someone).

Two sites (SITES=2): two bridges, site A on 10.88.0.0/24 and site B on 10.88.1.0/24, joined
by a router namespace with one veth into each bridge (10.88.0.254 and 10.88.1.254, every
host's default route). The router's egress toward each site is shaped to WAN_RATE (default
20mbit), so each direction of the inter-site link is capped once, with WAN_DELAY one way
(default 0ms; like DELAY it needs netem). Site A holds the seed (host 0) and the first half
of the downloaders, hosts 1..ceil(N/2); site B the second half, hosts ceil(N/2)+1..N. Shoal
agents get the label site=a or site=b. For each system the harness reads the byte counters
of the router's veth toward site B before and after the system's run and reports the bytes
that crossed between the sites, divided by S: both directions, Ethernet frames as the router
sent and received them, so headers, ACKs and control traffic count too (a payload that
crosses exactly once shows as slightly above 1.0 x S: 1-2 % more with segmentation offload).
With w = WAN_RATE and N_A, N_B the downloaders in each site, the lower bound becomes

    T* = max(S / u_seed, S / d_min, N * S / (u_seed + sum of all downloaders' u_i),
             S / w,                               every byte enters site B at least once
             N_B * S / (w + sum of site B's u_i), site B's copies arrive over the WAN or
                                                  from site B's own uploads
             N_A * S / (u_seed + sum of site A's u_i + w))   site A's come from the seed,
                                                  site A's uploads or over the WAN

Systems:
  shoal       agents (host 0 with the embedded control plane) and `shoal get NAME:TAG`; the
              clock stops when `shoal get` exits (every byte verified and the copy in place).
  libtorrent  a libtorrent 2 session per host (PyPI binding; TCP, no DHT/LSD/encryption, no rate
              limits, unlimited unchoke slots, deep request queues), with the same .torrent and
              the same tracker (Shoal's control plane on host 0, which keeps running after its
              agents have dropped their copies); the clock stops when the host is seeding.
  http        nginx on host 0 and `curl` on every downloader.

Every copy is checked byte for byte (SHA-256) against the source. Results go to OUT (default
bench/results/swarm-<N>x<SIZE>MiB, with -2sites appended when SITES=2): `results.json`,
`results.md` (also printed), and `cdf.svg`, the completion-time CDF of each system.

    sudo bench/swarm.py                                  # N=16, 256 MiB, 100 Mbit/s
    N=4 SIZE_MIB=32 bench/swarm.py                       # a quick run (what CI runs)
    N=8 RATE=50mbit DELAY=5ms SYSTEMS=shoal,http bench/swarm.py
    QUEUE=50ms TMPDIR=/dev/shm bench/swarm.py            # shallower link queues; data on tmpfs
    SITES=2 N=8 WAN_RATE=20mbit bench/swarm.py           # two sites behind a 20 Mbit/s link

Needs root (namespaces), a release build of `shoal` (built here unless SHOAL_BIN names one),
nginx, curl and PyPI `libtorrent` (scripts/install-test-deps.sh). Adding another client: write
a `run_<name>` function like `run_http` below (start the seed on host 0, start every
downloader at once, return each host's seconds and the path of its copy) and add it to
RUNNERS; bench/README.md has the details.
"""
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import MachineCpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SHOAL_BIN: a `shoal` binary to use instead of building the release one (the CI smoke test
# passes its debug build).
SHOAL = os.environ.get("SHOAL_BIN") or os.path.join(ROOT, "target/release/shoal")
N = int(os.environ.get("N", "16"))
SIZE_MIB = int(os.environ.get("SIZE_MIB", "256"))
RATE = os.environ.get("RATE", "100mbit")
DELAY = os.environ.get("DELAY", "0ms")
SYSTEMS = os.environ.get("SYSTEMS", "shoal,libtorrent,http").split(",")
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))
SITES = int(os.environ.get("SITES", "1"))
WAN_RATE = os.environ.get("WAN_RATE", "20mbit")
WAN_DELAY = os.environ.get("WAN_DELAY", "0ms")
PREFIX = f"sw{os.getpid() % 100000}"
HUB = f"{PREFIX}-hub"
ROUTER = f"{PREFIX}-router"
# Payload bytes each host sent and received, per system that can tell: {system: {host: (up, down)}}.
TRAFFIC = {}
# The machine's CPU busy fraction during each system's timed run: {system: 0..1}.
CPU_BUSY = {}
# When each host had every byte verified, before copying it into place, for systems that say:
# {system: {host: seconds}}.
VERIFIED = {}

LT_HOST = r"""
import sys, time, libtorrent as lt
torrent, save, ip, role = sys.argv[1:5]
ses = lt.session({
    "listen_interfaces": f"{ip}:6882", "enable_dht": False, "enable_lsd": False,
    "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False,
    "enable_incoming_utp": False, "out_enc_policy": lt.enc_policy.disabled,
    "in_enc_policy": lt.enc_policy.enabled, "allow_multiple_connections_per_ip": True,
    "unchoke_slots_limit": -1, "max_out_request_queue": 1500,
    "max_allowed_in_request_queue": 2000, "request_queue_time": 3,
    "send_buffer_watermark": 8 * 1024 * 1024, "max_queued_disk_bytes": 64 * 1024 * 1024,
    "connections_limit": 400, "alert_mask": 0,
})
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(torrent)
atp.save_path = save
h = ses.add_torrent(atp)
start = time.time()
while not h.status().is_seeding:
    time.sleep(0.02)
print(f"done {time.time() - start:.3f}", flush=True)
time.sleep(1e9)  # keep seeding until killed
"""


def sh(*argv, check=True, **kw):
    return subprocess.run(argv, check=check, **kw)


def ns(i):
    return f"{PREFIX}-{i}"


def site(i):
    """Host i's site: 'a' for the seed and downloaders 1..ceil(N/2), 'b' for the rest; with one
    site, always 'a'."""
    return "a" if SITES == 1 or i <= (N + 1) // 2 else "b"


def subnet(s):
    return {"a": "10.88.0", "b": "10.88.1"}[s]


def addr(i):
    return f"{subnet(site(i))}.{i + 1}"


def router_addr(s):
    return f"{subnet(s)}.254"


def bridge(s):
    return {"a": "br0", "b": "br1"}[s]


def in_ns(i, *argv):
    return ["ip", "netns", "exec", ns(i), *argv]


def rate_bytes(rate, knob="RATE"):
    units = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
    for unit, factor in units.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * factor
    raise SystemExit(f"{knob} {rate!r}: use kbit, mbit or gbit")


def shape(netns, dev, rate=RATE, delay=DELAY, knob="DELAY"):
    """Caps `dev`'s egress at `rate` (a token bucket), behind a netem `delay` when one is asked
    for (netem is a kernel module some kernels lack: then a delay cannot be had, and the
    harness says so rather than run without it). `knob` names the delay in that message."""
    tbf = ["tbf", "rate", rate, "burst", "64kb", "latency", os.environ.get("QUEUE", "400ms")]
    if delay in ("0", "0ms"):
        sh("tc", "-n", netns, "qdisc", "replace", "dev", dev, "root", "handle", "1:", *tbf)
        return
    netem = subprocess.run(["tc", "-n", netns, "qdisc", "replace", "dev", dev, "root", "handle",
                            "1:", "netem", "delay", delay, "limit", "100000"],
                           capture_output=True, text=True)
    if netem.returncode != 0:
        raise SystemExit(f"{knob}={delay} needs the kernel's netem qdisc (sch_netem), which "
                         f"this kernel lacks: {netem.stderr.strip()}")
    sh("tc", "-n", netns, "qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:", *tbf)


def build_lab(hosts):
    """The hub namespace with one bridge per site, a namespace per host on its site's bridge,
    and with two sites the router between the bridges."""
    sh("ip", "netns", "add", HUB)
    for s in "ab"[:SITES]:
        sh("ip", "-n", HUB, "link", "add", bridge(s), "type", "bridge")
        sh("ip", "-n", HUB, "link", "set", bridge(s), "up")
    for i in range(hosts):
        sh("ip", "netns", "add", ns(i))
        sh("ip", "link", "add", "eth0", "netns", ns(i), "type", "veth", "peer", "name", f"h{i}",
           "netns", HUB)
        sh("ip", "-n", HUB, "link", "set", f"h{i}", "master", bridge(site(i)), "up")
        sh("ip", "-n", ns(i), "addr", "add", f"{addr(i)}/24", "dev", "eth0")
        sh("ip", "-n", ns(i), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(i), "link", "set", "lo", "up")
        if SITES == 2:
            sh("ip", "-n", ns(i), "route", "add", "default", "via", router_addr(site(i)))
        shape(ns(i), "eth0")   # the host's upload
        shape(HUB, f"h{i}")    # the host's download
    if SITES == 2:
        build_router()


def build_router():
    """The router namespace: veth `to-a` into site A's bridge and `to-b` into site B's, IPv4
    forwarding on, and each veth's egress (the traffic entering that site) shaped to WAN_RATE
    with WAN_DELAY."""
    sh("ip", "netns", "add", ROUTER)
    sh("ip", "-n", ROUTER, "link", "set", "lo", "up")
    for s in "ab":
        sh("ip", "link", "add", f"to-{s}", "netns", ROUTER, "type", "veth", "peer", "name",
           f"r{s}", "netns", HUB)
        sh("ip", "-n", HUB, "link", "set", f"r{s}", "master", bridge(s), "up")
        sh("ip", "-n", ROUTER, "addr", "add", f"{router_addr(s)}/24", "dev", f"to-{s}")
        sh("ip", "-n", ROUTER, "link", "set", f"to-{s}", "up")
        shape(ROUTER, f"to-{s}", WAN_RATE, WAN_DELAY, "WAN_DELAY")
    sh("ip", "netns", "exec", ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def wan_counters():
    """Bytes the router has sent into site B and received from it so far (frames on its veth
    toward site B: everything that crossed between the sites, headers included)."""
    out = sh("ip", "-n", ROUTER, "-s", "-j", "link", "show", "dev", "to-b",
             capture_output=True, text=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["tx"]["bytes"], stats["rx"]["bytes"]


def destroy_lab(hosts):
    """Deletes every namespace of this run, killing whatever still runs in them first (a
    system that failed midway leaves its processes behind)."""
    for name in [HUB, ROUTER] + [ns(i) for i in range(hosts)]:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wait_until(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def completion_times(name, procs, start, stderr_of):
    """Seconds from `start` until each of `procs` ({host: Popen}) exited; fails the run when one
    exits non-zero (with `stderr_of(host, proc)`) or TIMEOUT passes."""
    times = {}
    while len(times) < len(procs):
        for i, p in procs.items():
            if i not in times and p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"{name} on host {i}: {stderr_of(i, p)}")
                times[i] = time.time() - start
        if time.time() - start > TIMEOUT:
            raise SystemExit(f"{name}: {len(procs) - len(times)} hosts unfinished after "
                             f"{TIMEOUT} s")
        time.sleep(0.02)
    return times


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Procs:
    """Processes to kill when a system's run ends."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", log),
                             stderr=log, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def shoal(i, *args):
    return in_ns(i, SHOAL, *args)


def site_label(i):
    """The agent flags that tell the control plane host i's site (none with one site)."""
    return ["--label", f"site={site(i)}"] if SITES == 2 else []


def start_control_plane(work, procs, source):
    """Host 0's agent: the embedded control plane and tracker, and the published artifact."""
    log = open(f"{work}/shoal-0.log", "w")
    procs.start(shoal(0, "agent", "--data-dir", f"{work}/shoal-0", "--node-id", "host-0",
                      "--advertise-ip", addr(0), *site_label(0)), log)
    wait_until("the seed agent", lambda: sh(*shoal(0, "status"), check=False,
                                            capture_output=True).returncode == 0)
    sh(*shoal(0, "publish", source, "--name", "bench/swarm:1"), stdout=subprocess.DEVNULL)
    sh(*shoal(0, "info", "bench/swarm:1", "--torrent", f"{work}/artifact.torrent"),
       stdout=subprocess.DEVNULL)
    # The other hosts reach host 0's control plane over the lab network, not loopback: they
    # need a credential. One `agent` token, issued with the bootstrap admin token, serves all.
    with open(f"{work}/agent.token", "wb") as token:
        sh(*shoal(0, "token", "issue", "--role", "agent", "bench-agents",
                  "--server", f"http://{addr(0)}:7421",
                  "--token-file", f"{work}/shoal-0/catalog/admin.token"), stdout=token)


def run_shoal(work, source, procs):
    agents = Procs()
    for i in range(1, N + 1):
        log = open(f"{work}/shoal-{i}.log", "w")
        agents.start(shoal(i, "agent", "--data-dir", f"{work}/shoal-{i}", "--node-id",
                           f"host-{i}", "--control-plane", f"http://{addr(0)}:7421",
                           "--server-token-file", f"{work}/agent.token",
                           "--advertise-ip", addr(i), *site_label(i)), log)
    for i in range(1, N + 1):
        wait_until(f"agent {i}", lambda i=i: sh(*shoal(i, "status"), check=False,
                                                capture_output=True).returncode == 0)
    start = time.time()
    cpu = MachineCpu()
    gets = {i: subprocess.Popen(shoal(i, "get", "bench/swarm:1", "-o", f"{work}/out-shoal-{i}"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i in range(1, N + 1)}
    # `shoal get` says when every byte is verified, before it copies the data into place: the
    # moment the swarm's work is done (what the simulator predicts), timed by a reader per host.
    verified = {}

    def watch(i, stream, lines):
        for text in stream:
            if "every byte verified" in text and i not in verified:
                verified[i] = time.time() - start
            lines.append(text)

    errors = {i: [] for i in gets}
    readers = {i: threading.Thread(target=watch, args=(i, p.stderr, errors[i]), daemon=True)
               for i, p in gets.items()}
    for r in readers.values():
        r.start()

    def get_stderr(i, _):
        readers[i].join(timeout=5)  # the reader holds what `get` printed
        return "".join(errors[i])

    times = completion_times("shoal get", gets, start, get_stderr)
    CPU_BUSY["shoal"] = cpu.busy()
    for r in readers.values():
        r.join(timeout=5)
    VERIFIED["shoal"] = verified
    traffic = {}
    for i in range(0, N + 1):
        status = json.loads(sh(*shoal(i, "status", "--json"), capture_output=True).stdout)
        for t in status.get("torrents", []):
            if t.get("nameTag") == "bench/swarm:1":
                traffic[i] = (int(t.get("uploaded", 0)), int(t.get("downloaded", 0)))
    TRAFFIC["shoal"] = traffic
    agents.stop()
    # Host 0 keeps the control plane (the tracker for libtorrent) but not its copy.
    sh(*shoal(0, "rm", "bench/swarm:1"), stdout=subprocess.DEVNULL)
    return times, {i: f"{work}/out-shoal-{i}" for i in times}


def run_libtorrent(work, source, procs):
    hosts = Procs()
    torrent = f"{work}/artifact.torrent"
    seed_dir = os.path.dirname(source)
    seed = hosts.start(in_ns(0, sys.executable, "-c", LT_HOST, torrent, seed_dir, addr(0), "seed"),
                       open(f"{work}/lt-0.log", "w"), stdout=subprocess.PIPE, text=True)
    if not seed.stdout.readline().startswith("done"):
        raise SystemExit("the libtorrent seed did not finish checking its data")
    start = time.time()
    cpu = MachineCpu()
    leechers = {}
    for i in range(1, N + 1):
        save = f"{work}/out-lt-{i}"
        os.makedirs(save)
        leechers[i] = hosts.start(in_ns(i, sys.executable, "-c", LT_HOST, torrent, save, addr(i),
                                        "leech"), open(f"{work}/lt-{i}.log", "w"),
                                  stdout=subprocess.PIPE, text=True)
    times = {}
    import selectors
    sel = selectors.DefaultSelector()
    for i, p in leechers.items():
        sel.register(p.stdout, selectors.EVENT_READ, i)
    while len(times) < N:
        for key, _ in sel.select(timeout=1):
            i = key.data
            line = key.fileobj.readline()
            sel.unregister(key.fileobj)
            if not line.startswith("done"):
                raise SystemExit(f"libtorrent on host {i} failed; see {work}/lt-{i}.log")
            times[i] = time.time() - start
        if time.time() - start > TIMEOUT:
            raise SystemExit(f"libtorrent: {N - len(times)} hosts unfinished after {TIMEOUT} s")
    CPU_BUSY["libtorrent"] = cpu.busy()
    hosts.stop()
    name = os.path.basename(source)
    return times, {i: f"{work}/out-lt-{i}/{name}" for i in times}


def run_http(work, source, procs):
    hosts = Procs()
    www = os.path.dirname(source)
    conf = f"""user root; daemon off; master_process off; worker_processes 1;
pid {work}/nginx.pid; error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen {addr(0)}:8080; root {www}; }} }}
"""
    with open(f"{work}/nginx.conf", "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    hosts.start(in_ns(0, nginx, "-p", work, "-c", f"{work}/nginx.conf", "-e",
                      f"{work}/nginx-error.log"), open(f"{work}/nginx.log", "w"))
    wait_until("nginx", lambda: sh(*in_ns(0, "curl", "-sf", "-o", "/dev/null", "-r", "0-0",
                                         f"http://{addr(0)}:8080/{os.path.basename(source)}"),
                                  check=False).returncode == 0)
    start = time.time()
    cpu = MachineCpu()
    url = f"http://{addr(0)}:8080/{os.path.basename(source)}"
    curls = {i: subprocess.Popen(in_ns(i, "curl", "-sSf", "-o", f"{work}/out-http-{i}", url),
                                 stderr=subprocess.PIPE) for i in range(1, N + 1)}
    times = completion_times("curl", curls, start, lambda _, p: p.stderr.read().decode())
    CPU_BUSY["http"] = cpu.busy()
    hosts.stop()
    return times, {i: f"{work}/out-http-{i}" for i in times}


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def cdf_svg(results, t_star, path):
    """A completion-time CDF per system, as a small standalone SVG (no plotting library)."""
    width, height, left, bottom, top, right = 640, 400, 60, 50, 20, 150
    t_max = max(max(r["seconds"]) for r in results.values()) * 1.05
    x = lambda t: left + (width - left - right) * t / t_max  # noqa: E731
    y = lambda f: top + (height - top - bottom) * (1 - f)  # noqa: E731
    colours = {"shoal": "#1f77b4", "libtorrent": "#ff7f0e", "http": "#2ca02c"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="black"/>',
           f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(1)}" stroke="black"/>',
           f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">'
           f'seconds after the start</text>',
           f'<text x="15" y="{(top + height - bottom) / 2}" transform="rotate(-90 15 '
           f'{(top + height - bottom) / 2})" text-anchor="middle">hosts done</text>',
           f'<line x1="{x(t_star)}" y1="{y(0)}" x2="{x(t_star)}" y2="{y(1)}" stroke="grey" '
           f'stroke-dasharray="4"/><text x="{x(t_star) + 3}" y="{y(1) + 12}" fill="grey">T*</text>']
    for k in range(5):
        t = t_max * k / 4
        out.append(f'<text x="{x(t)}" y="{y(0) + 16}" text-anchor="middle">{t:.0f}</text>')
        out.append(f'<text x="{left - 6}" y="{y(k / 4) + 4}" text-anchor="end">{k * 25}%</text>')
    for n, (name, r) in enumerate(results.items()):
        times = sorted(r["seconds"])
        points = [f"{x(0)},{y(0)}"]
        for k, t in enumerate(times):
            points += [f"{x(t)},{y(k / len(times))}", f"{x(t)},{y((k + 1) / len(times))}"]
        colour = colours.get(name, "#555")
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{" ".join(points)}"/>')
        out.append(f'<text x="{width - right + 10}" y="{top + 20 + 18 * n}" fill="{colour}">'
                   f'{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


RUNNERS = {"shoal": run_shoal, "libtorrent": run_libtorrent, "http": run_http}


def lower_bound(size):
    """T* and its terms (the formulas in the docstring): every link at RATE, the WAN at
    WAN_RATE each way with two sites."""
    u = rate_bytes(RATE)
    terms = {"S/u_seed": size / u, "S/d_min": size / u,
             "N*S/(u_seed+sum u_i)": N * size / (u + N * u)}
    if SITES == 2:
        w = rate_bytes(WAN_RATE, "WAN_RATE")
        n_a = sum(site(i) == "a" for i in range(1, N + 1))
        n_b = N - n_a
        terms["S/w"] = size / w
        terms["N_B*S/(w+sum_B u_i)"] = n_b * size / (w + n_b * u)
        terms["N_A*S/(u_seed+sum_A u_i+w)"] = n_a * size / (u + n_a * u + w)
    return max(terms.values()), terms


def check_knobs():
    if os.geteuid() != 0:
        raise SystemExit("bench/swarm.py needs root (network namespaces, tc)")
    unknown = set(SYSTEMS) - set(RUNNERS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}: use {', '.join(RUNNERS)}")
    if SITES not in (1, 2):
        raise SystemExit(f"SITES={SITES}: use 1 (one bridge) or 2 (two sites and a router)")
    if SITES == 2 and N < 2:
        raise SystemExit(f"SITES=2 needs N >= 2 (a downloader in each site), not N={N}")
    if N + 1 > (253 if SITES == 2 else 254):
        raise SystemExit(f"N={N}: each site is one /24 subnet; use fewer downloaders")


def main():
    check_knobs()
    # A kill of the harness still runs the `finally` below, which deletes the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench/swarm.py: terminated"))
    if not os.environ.get("SHOAL_BIN"):
        sh("cargo", "build", "--release", "--locked", "--quiet", "-p", "shoal", cwd=ROOT)
    default_out = f"bench/results/swarm-{N}x{SIZE_MIB}MiB" + ("-2sites" if SITES == 2 else "")
    out_dir = os.environ.get("OUT", os.path.join(ROOT, default_out))
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="shoal-bench-swarm-")
    size = SIZE_MIB << 20
    t_star, t_star_terms = lower_bound(size)
    destroy_lab(N + 1)
    procs = Procs()
    results = {}
    try:
        build_lab(N + 1)
        os.makedirs(f"{work}/src")
        source = f"{work}/src/artifact.bin"
        with open(source, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1 << 20))
        want = sha256(source)
        start_control_plane(work, procs, source)
        for name in SYSTEMS:
            wan_before = wan_counters() if SITES == 2 else None
            times, copies = RUNNERS[name](work, source, procs)
            wan_after = wan_counters() if SITES == 2 else None
            for i, path in copies.items():
                if sha256(path) != want:
                    raise SystemExit(f"{name}: host {i}'s copy differs from the source")
                os.remove(path)
            seconds = [times[i] for i in sorted(times)]
            results[name] = {
                "seconds": seconds,
                "p50": statistics.median(seconds),
                "p99": percentile(seconds, 99),
                "max": max(seconds),
                "machine_cpu_busy": CPU_BUSY.get(name),
            }
            done = VERIFIED.get(name)
            if done and len(done) == len(seconds):
                verified = [done[i] for i in sorted(done)]
                results[name].update({"verified_seconds": verified,
                                      "verified_max": max(verified)})
            traffic = TRAFFIC.get(name)
            if traffic:
                results[name]["seed_upload_over_size"] = traffic.get(0, (0, 0))[0] / size
                results[name]["download_over_n_size"] = (
                    sum(d for _, d in traffic.values()) / (N * size))
            if SITES == 2:
                to_b, from_b = (after - before for after, before in zip(wan_after, wan_before))
                results[name].update({
                    "wan_bytes_a_to_b": to_b, "wan_bytes_b_to_a": from_b,
                    "wan_bytes": to_b + from_b, "wan_over_size": (to_b + from_b) / size,
                    "max_site_a": max(t for i, t in times.items() if site(i) == "a"),
                    "max_site_b": max(t for i, t in times.items() if site(i) == "b"),
                })
            print(f"{name}: max {max(seconds):.1f} s = {max(seconds) / t_star:.2f} x T*"
                  + (f"; seed sent {results[name]['seed_upload_over_size']:.2f} x S, "
                     f"hosts received {results[name]['download_over_n_size']:.2f} x N*S"
                     if traffic else "")
                  + (f"; WAN carried {results[name]['wan_over_size']:.2f} x S"
                     if SITES == 2 else "")
                  + (f"; every byte verified by {results[name]['verified_max']:.1f} s = "
                     f"{results[name]['verified_max'] / t_star:.2f} x T*"
                     if "verified_max" in results[name] else "")
                  + f"; machine CPU {100 * CPU_BUSY.get(name, 0):.0f} % busy",
                  file=sys.stderr, flush=True)
    finally:
        procs.stop()
        destroy_lab(N + 1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    report = {
        "n": N, "size_bytes": size, "rate": RATE, "delay": DELAY, "t_star_seconds": t_star,
        "commit": commit, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
        "systems": results,
    }
    if SITES == 2:
        report.update({"sites": 2, "wan_rate": WAN_RATE, "wan_delay": WAN_DELAY,
                       "t_star_terms_seconds": t_star_terms,
                       "site_of_host": {i: site(i) for i in range(N + 1)}})
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    if SITES == 2:
        b_first = (N + 1) // 2 + 1
        lines = [f"{N} downloaders in two sites (A: the seed and hosts 1-{b_first - 1}; B: hosts "
                 f"{b_first}-{N}), {SIZE_MIB} MiB, every host link {RATE} each way, the link "
                 f"between the sites {WAN_RATE} each way, {DELAY} one-way delay on host links, "
                 f"{WAN_DELAY} on the WAN; T* = {t_star:.1f} s (S / WAN_RATE = "
                 f"{t_star_terms['S/w']:.1f} s); commit {commit}, {os.cpu_count()} cores\n",
                 "| system | p50 s | p99 s | max s | p50 / T* | p99 / T* | max / T* | "
                 "seed sent / S | CPU busy | WAN bytes / S |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
    else:
        lines = [f"{N} downloaders, {SIZE_MIB} MiB, every link {RATE} each way, {DELAY} one-way "
                 f"delay; T* = {t_star:.1f} s; commit {commit}, {os.cpu_count()} cores\n",
                 "| system | p50 s | p99 s | max s | p50 / T* | p99 / T* | max / T* | "
                 "seed sent / S | CPU busy |",
                 "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | "
                     f"{r['p50'] / t_star:.2f} | {r['p99'] / t_star:.2f} | "
                     f"**{r['max'] / t_star:.2f}** | "
                     + (f"{r['seed_upload_over_size']:.2f}" if "seed_upload_over_size" in r
                        else "–")
                     + f" | {100 * (r['machine_cpu_busy'] or 0):.0f} % |"
                     + (f" {r['wan_over_size']:.2f} |" if SITES == 2 else ""))
    for name, r in results.items():
        if "verified_max" in r:
            lines.append(f"\n{name}: every host had every byte verified by {r['verified_max']:.1f} s "
                         f"({r['verified_max'] / t_star:.2f} x T*); the rest is copying into place.")
    lines.append("\nCPU busy: the machine's cores not idle during the timed run; near 100 % the "
                 "machine, not the system, set the pace.")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(table)
    cdf_svg(results, t_star, os.path.join(out_dir, "cdf.svg"))
    print(table)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
