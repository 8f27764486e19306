"""Helpers the benchmark scripts share: a process's CPU time and the machine's from /proc, waiting for a
listener, stopping the processes a benchmark started, and a stub tracker that hands out a
fixed peer list."""
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


class MachineCpu:
    """How busy the whole machine was between construction and `busy()`: the fraction of all
    cores' time not idle (from /proc/stat). Near 1.0 means the machine, not the system under
    test, set the pace."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    def busy(self):
        total, idle = self._sample()
        dt = total - self.start[0]
        return 1.0 - (idle - self.start[1]) / dt if dt > 0 else 0.0


def cpu_seconds(pid):
    """User plus system CPU seconds process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port, timeout=30, host="127.0.0.1"):
    """Waits until something accepts connections on host:port; exits the script after
    `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {host}:{port} after {timeout} s")


def stop(procs, timeout=10):
    """Terminates every process in `procs`, killing those still running after `timeout`."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


class PeerListTracker:
    """An HTTP tracker that answers every announce, whatever its info-hash, with the same
    compact peer list `peers` ([(ip, port)]), for clients that cannot be handed a peer
    directly (aria2 has no option to add one). Serves from a thread of this process on
    `host`, on a free port; `url` is the announce URL. Stop it with close()."""

    def __init__(self, peers, host="127.0.0.1"):
        compact = b"".join(socket.inet_aton(ip) + port.to_bytes(2, "big") for ip, port in peers)
        body = b"d8:intervali3600e5:peers%d:%se" % (len(compact), compact)

        class Announce(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Announce)
        self.url = f"http://{host}:{self.server.server_address[1]}/announce"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
