#!/usr/bin/env python3
"""The replicated control plane: a 3-node `shoal server` cluster on loopback (127.0.1.1-3),
default Raft settings. Measures, over its REST API:

- publish latency: sequential binds (`POST /v1/catalog:bind`, one name:tag each, the same
  small hybrid torrent), p50/p99, through the leader and through a follower (forwarded);
- publish throughput: THREADS concurrent publishers for SECONDS;
- catalog read throughput: THREADS concurrent linearizable reads (`GET /v1/catalog/artifacts`,
  one page of 1) against the leader and against a follower;
- election: the leader is killed (SIGKILL) ELECTIONS times; the time until a survivor names a
  new leader (polled every 10 ms), then the node is started again;
- catch-up: a follower is stopped (SIGSTOP) for STALL seconds while publishes continue; the
  time from SIGCONT until its applied index reaches the leader's commit index.

    bench/raft.py
    ELECTIONS=5 STALL=60 SECONDS=10 THREADS=8 bench/raft.py

Knobs: SECONDS (10), THREADS (8), SEQUENTIAL (300), ELECTIONS (5), STALL (60), OUT
(bench/results/raft), SHOAL_BIN (default: build with cargo --release). Loopback callers are
admins (no token needed). Writes OUT/results.json and OUT/results.md (also printed).
"""
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = float(os.environ.get("SECONDS", "10"))
THREADS = int(os.environ.get("THREADS", "8"))
SEQUENTIAL = int(os.environ.get("SEQUENTIAL", "300"))
ELECTIONS = int(os.environ.get("ELECTIONS", "5"))
STALL = float(os.environ.get("STALL", "60"))
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench/results/raft"))
HOSTS = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]


def shoal_bin():
    if os.environ.get("SHOAL_BIN"):
        return os.environ["SHOAL_BIN"]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shoal"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/shoal")


def bdecode_span(data, i):
    """The end of the bencoded value starting at data[i]."""
    c = data[i:i + 1]
    if c == b"i":
        return data.index(b"e", i) + 1
    if c in (b"l", b"d"):
        i += 1
        while data[i:i + 1] != b"e":
            i = bdecode_span(data, i)
        return i + 1
    colon = data.index(b":", i)
    return colon + 1 + int(data[i:colon])


def dict_items(data):
    """Top-level (key, raw value) pairs of a bencoded dictionary."""
    i, out = 1, {}
    while data[i:i + 1] != b"e":
        end = bdecode_span(data, i)
        key = data[data.index(b":", i) + 1:end]
        vend = bdecode_span(data, end)
        out[key] = data[end:vend]
        i = vend
    return out


class Api:
    def __init__(self, host):
        self.conn = http.client.HTTPConnection(host, 7421, timeout=30)

    def call(self, method, path, body=None):
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload else {}
        self.conn.request(method, path, payload, headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)


class Cluster:
    def __init__(self, shoal, work):
        self.shoal, self.work = shoal, work
        self.procs = [None] * 3
        with open(os.path.join(work, "secret"), "w") as f:
            f.write("bench-secret\n")
        for n in range(3):
            self.start(n)
        for h in HOSTS:
            wait_port(7421, host=h)

    def start(self, n):
        members = ",".join(f"{i + 1}={h}:7421" for i, h in enumerate(HOSTS))
        log = open(os.path.join(self.work, f"server-{n}.log"), "a")
        self.procs[n] = subprocess.Popen(
            [self.shoal, "server", "--data-dir", os.path.join(self.work, f"d{n}"),
             "--api-listen", f"{HOSTS[n]}:7421", "--tracker-listen", f"{HOSTS[n]}:6969",
             "--announce-url", f"http://{HOSTS[n]}:6969/announce", "--node-id", str(n + 1),
             "--cluster-secret-file", os.path.join(self.work, "secret"),
             "--initial-members", members],
            stdout=subprocess.DEVNULL, stderr=log)

    def status(self, n):
        try:
            return Api(HOSTS[n]).call("GET", "/v1/cluster")
        except Exception:
            return None

    def leader(self, exclude=None, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in range(3):
                if n == exclude or self.procs[n] is None:
                    continue
                s = self.status(n)
                if s and s.get("leaderId") and int(s["leaderId"]) - 1 != exclude:
                    return int(s["leaderId"]) - 1
            time.sleep(0.01)
        raise RuntimeError("no leader")


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    shoal = shoal_bin()
    work = tempfile.mkdtemp(prefix="shoal-raft-bench-")
    src = os.path.join(work, "x.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(1 << 20))
    subprocess.run([shoal, "torrent", "create", src, "-o", src + ".torrent", "--hybrid"],
                   check=True, stdout=subprocess.DEVNULL)
    meta = dict_items(open(src + ".torrent", "rb").read())
    info = base64.b64encode(meta[b"info"]).decode()
    layers = base64.b64encode(meta.get(b"piece layers", b"")).decode()
    cluster = Cluster(shoal, work)
    results = {"threads": THREADS, "seconds": SECONDS}
    counter = [0]
    lock = threading.Lock()

    def next_tag():
        with lock:
            counter[0] += 1
            return f"bench/x:{counter[0]}"

    def bind(api):
        api.call("POST", "/v1/catalog:bind",
                 {"nameTag": next_tag(), "info": info, "pieceLayers": layers})

    try:
        leader = cluster.leader()
        follower = (leader + 1) % 3
        # Sequential publish latency.
        for label, node in (("leader", leader), ("follower", follower)):
            api, lat = Api(HOSTS[node]), []
            for _ in range(SEQUENTIAL):
                t = time.perf_counter()
                bind(api)
                lat.append((time.perf_counter() - t) * 1000)
            results[f"publish_ms_{label}"] = {"p50": percentile(lat, 50),
                                              "p99": percentile(lat, 99), "n": len(lat)}

        def hammer(node, op):
            done, stop_at = [0], time.time() + SECONDS

            def worker():
                api = Api(HOSTS[node])
                while time.time() < stop_at:
                    op(api)
                    with lock:
                        done[0] += 1
            ts = [threading.Thread(target=worker) for _ in range(THREADS)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            return done[0] / SECONDS

        results["publish_per_s_leader"] = hammer(leader, bind)
        read = lambda api: api.call("GET", "/v1/catalog/artifacts?prefix=bench/&pageSize=1")
        results["read_per_s_leader"] = hammer(leader, read)
        results["read_per_s_follower"] = hammer(follower, read)

        # Catch-up after a stall, with publishes continuing meanwhile.
        cluster.procs[follower].send_signal(signal.SIGSTOP)
        stall_end = time.time() + STALL
        api, written = Api(HOSTS[leader]), 0
        while time.time() < stall_end:
            bind(api)
            written += 1
        cluster.procs[follower].send_signal(signal.SIGCONT)
        t = time.perf_counter()
        target = int(cluster.status(leader)["commitIndex"])
        while True:
            s = cluster.status(follower)
            if s and int(s.get("appliedIndex", 0)) >= target:
                break
            time.sleep(0.01)
        results["catch_up"] = {"stall_s": STALL, "entries_behind": written,
                               "seconds": time.perf_counter() - t}

        # Elections after SIGKILL of the leader.
        times = []
        for _ in range(ELECTIONS):
            leader = cluster.leader()
            cluster.procs[leader].kill()
            cluster.procs[leader].wait()
            cluster.procs[leader] = None
            t = time.perf_counter()
            cluster.leader(exclude=leader)
            times.append(time.perf_counter() - t)
            cluster.start(leader)
            wait_port(7421, host=HOSTS[leader])
            time.sleep(2)
        results["election_s"] = {"all": times, "max": max(times), "p50": percentile(times, 50)}
    finally:
        stop([p for p in cluster.procs if p])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    r = results
    md = "\n".join([
        "| measure | value |", "|---|---|",
        f"| publish latency via leader, p50 / p99 | {r['publish_ms_leader']['p50']:.1f} / {r['publish_ms_leader']['p99']:.1f} ms |",
        f"| publish latency via follower, p50 / p99 | {r['publish_ms_follower']['p50']:.1f} / {r['publish_ms_follower']['p99']:.1f} ms |",
        f"| publish throughput, {THREADS} clients | {r['publish_per_s_leader']:.0f} /s |",
        f"| linearizable reads, {THREADS} clients, leader | {r['read_per_s_leader']:.0f} /s |",
        f"| linearizable reads, {THREADS} clients, follower | {r['read_per_s_follower']:.0f} /s |",
        f"| new leader after SIGKILL of the leader, p50 / max of {ELECTIONS} | {r['election_s']['p50']:.2f} / {r['election_s']['max']:.2f} s |",
        f"| follower stalled {STALL:.0f} s ({r['catch_up']['entries_behind']} publishes behind) caught up in | {r['catch_up']['seconds']:.2f} s |",
    ])
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    sys.exit(main())
