#!/usr/bin/env python3
"""Real BitTorrent clients and a real tracker, run on loopback for Shoal's interop tests
(`crates/shoal/tests/interop_clients.rs`). Python standard library only, except the
`libtorrent` client, which imports the PyPI binding through `lt_tool.py`.

  clients.py tracker PORT DIR HASH...                      run opentracker on 127.0.0.1:PORT
  clients.py wait-peers ANNOUNCE_URL HASH seeds|leechers COUNT SECONDS
  clients.py seed CLIENT TORRENT SAVE_DIR STATE_DIR PORT   seed until killed
  clients.py download CLIENT TORRENT SAVE_DIR STATE_DIR PORT SECONDS [PEER]

CLIENT is transmission (transmission-daemon 3.00), aria2 (aria2c 1.36), qbittorrent
(qbittorrent-nox 4.5, libtorrent 2.0) or libtorrent (the PyPI binding). Every client is set up
for plain TCP on 127.0.0.1 only: no DHT, LSD, PEX, uTP, UPnP/NAT-PMP, and no required
encryption (Shoal speaks neither uTP nor MSE). PORT is the client's peer port; its control
port (RPC, Web UI) is picked here. STATE_DIR holds the client's configuration and log.

`seed` adds TORRENT with its data under SAVE_DIR (SAVE_DIR/<name>), has the client verify it,
prints the line `seeding` once the client reports every piece verified and answers a plain
handshake for the torrent on PORT, then runs until killed.
For the v1-only clients (transmission, aria2) it first writes a hybrid torrent's BEP 47 padding
files as zeros under SAVE_DIR/<name>/.pad/, as those clients would have on disk.
`download` adds TORRENT into the empty SAVE_DIR and exits 0 once the client reports every
piece verified and has shut down cleanly (so every byte is on disk); PEER (HOST:PORT), if
given, is handed to the client directly (qbittorrent and libtorrent only: Transmission 3.00
and aria2 have no way to add a peer by address, they learn peers from trackers or accept
incoming connections). On timeout or a client error it exits 1 with the client's log tail.

`tracker` writes the whitelist of HASH (40 hex digits each; Debian builds opentracker with a
whitelist: any other info-hash is refused) into DIR, which must be world-readable
(opentracker chroots to DIR and drops root for `nobody`), then execs opentracker listening on
TCP and UDP PORT. `wait-peers` scrapes until the tracker counts COUNT seeds (complete) or
leechers (incomplete) for HASH (40 hex digits).

Every client process is started with PR_SET_PDEATHSIG, so it dies with this script even when
this script is killed with SIGKILL.
"""
import base64
import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

HINT = "install the interop clients with scripts/install-test-deps.sh"


def fail(message, log=None):
    if log and os.path.exists(log):
        with open(log, "rb") as f:
            tail = f.read()[-6000:].decode("utf-8", "replace")
        message += f"\n--- last lines of {log} ---\n{tail}"
    sys.exit(message)


_next_port = (os.getpid() * 7919) % 2000


def free_port():
    """A free loopback port in 30000-31999: below the kernel's ephemeral range, so no outgoing
    connection can take it before the client binds it (the Rust tests use 20000-29999)."""
    global _next_port
    for _ in range(2000):
        port = 30000 + _next_port % 2000
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    fail("no free port in 30000-31999")


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


def spawn(argv, log):
    """Starts a client with its output in `log`; it is killed if this script dies."""
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        sys.exit(f"{argv[0]} not found: {HINT}")


def stop(proc, seconds=30):
    """Waits for a client that was asked to exit; kills it if it does not within `seconds`."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def poll(what, seconds, check, proc=None, log=None, interval=0.1):
    """Calls `check` until it returns True (anything else describes the state so far, for the
    failure message); fails after `seconds` or if `proc` exits."""
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            fail(f"{what}: the client exited with status {proc.returncode} "
                 f"(last state: {last})", log)
        try:
            result = check()
        except (OSError, urllib.error.URLError, ConnectionError) as e:
            result, last = None, f"{type(e).__name__}: {e}"
        if result is True:
            return
        if result is not None:
            last = result
        time.sleep(interval)
    fail(f"{what}: not done after {seconds:.0f}s (last state: {last})", log)


def http(url, data=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as reply:
        return reply.read()


# --- bencode, just enough to read a scrape reply and a torrent's file list --------------------

def bdecode(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        out, i = [], i + 1
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            out[k], i = bdecode(data, i)
        return out, i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n], colon + 1 + n


def info_hash(torrent):
    """The 20 bytes peers put in the handshake: SHA-1 of the info dictionary's original bytes
    when it has v1 metadata (v1 and hybrid), else its SHA-256 truncated (BEP 52)."""
    with open(torrent, "rb") as f:
        data = f.read()
    i = 1
    while data[i:i + 1] != b"e":
        key, i = bdecode(data, i)
        start = i
        value, i = bdecode(data, i)
        if key == b"info":
            raw = data[start:i]
            if b"pieces" in value:
                return hashlib.sha1(raw).digest()
            return hashlib.sha256(raw).digest()[:20]
    sys.exit(f"{torrent}: no info dictionary")


def wait_accepting(torrent, port, seconds, proc=None, log=None):
    """Waits until the client on 127.0.0.1:PORT answers a BitTorrent handshake for TORRENT.

    A client can report a torrent as seeding a moment before it accepts peers for it
    (qBittorrent 4.5 drops the first connections to a hybrid torrent it has just checked), so
    `seed` only says `seeding` once a plain handshake is answered with the same info-hash."""
    want = info_hash(torrent)
    peer_id = b"-SP0001-" + os.urandom(6).hex().encode()
    hello = b"\x13BitTorrent protocol" + bytes(8) + want + peer_id

    def check():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(hello)
            got = b""
            while len(got) < 48:
                chunk = s.recv(68)
                if not chunk:
                    return "connection closed before a handshake"
                got += chunk
            return got[28:48] == want or f"handshake for {got[28:48].hex()}"

    poll(f"client on port {port} answering handshakes", seconds, check, proc, log, interval=0.5)


def write_padding(torrent, save_dir):
    """Writes the BEP 47 padding files of a multi-file hybrid torrent as zeros under SAVE_DIR.

    Transmission 3.00 and aria2 1.36 do not know BEP 47: to them a hybrid torrent's `.pad/N`
    entries are ordinary files, which they create (as zeros) when they download and need on
    disk to seed. A v1-only client that downloaded the torrent would have them; so give them
    to the seed."""
    with open(torrent, "rb") as f:
        meta, _ = bdecode(f.read())
    info = meta[b"info"]
    for entry in info.get(b"files", []):
        if b"p" not in entry.get(b"attr", b""):
            continue
        path = os.path.join(save_dir, info[b"name"].decode(), *(c.decode() for c in entry[b"path"]))
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(entry[b"length"])


# --- opentracker ------------------------------------------------------------------------------

def tracker(port, directory, hashes):
    with open(os.path.join(directory, "whitelist"), "w") as f:
        for h in hashes:
            f.write(h.lower() + "\n")
    os.chmod(directory, 0o755)
    os.chmod(os.path.join(directory, "whitelist"), 0o644)
    argv = ["opentracker", "-i", "127.0.0.1", "-p", str(port), "-P", str(port),
            "-d", directory, "-w", "whitelist"]
    os.chdir(directory)
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        sys.exit(f"opentracker not found: {HINT}")


def wait_peers(announce, info_hash, kind, count, seconds):
    scrape = announce.replace("/announce", "/scrape")
    raw = bytes.fromhex(info_hash)
    url = f"{scrape}?info_hash={urllib.parse.quote_from_bytes(raw)}"
    field = {"seeds": b"complete", "leechers": b"incomplete"}[kind]

    def check():
        reply, _ = bdecode(http(url))
        if b"failure reason" in reply:
            return f"tracker failure: {reply[b'failure reason'].decode()}"
        entry = reply.get(b"files", {}).get(raw)
        if entry and entry.get(field, 0) >= count:
            return True
        return f"scrape: {entry}"

    poll(f"tracker {announce}: {count} {kind} announced for {info_hash}", seconds, check)


# --- Transmission (transmission-daemon 3.00, JSON RPC) ---------------------------------------

class Transmission:
    # RPC status codes (libtransmission/transmission.h, tr_torrent_activity).
    STOPPED, CHECK_WAIT, CHECK, DOWNLOAD_WAIT, DOWNLOAD, SEED_WAIT, SEED = range(7)

    def __init__(self, save_dir, state, port):
        self.log = os.path.join(state, "transmission.log")
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.rpc_port}/transmission/rpc"
        self.session = ""
        config = os.path.join(state, "transmission")
        os.makedirs(config, exist_ok=True)
        # Settings the command line cannot set (PEX, queues, ratio and idle limits, host
        # whitelist); the rest is on the command line so `--help` documents it.
        with open(os.path.join(config, "settings.json"), "w") as f:
            json.dump({
                "pex-enabled": False,
                "dht-enabled": False,
                "lpd-enabled": False,
                "utp-enabled": False,
                "encryption": 0,  # 0: prefer plaintext, 1: prefer encryption, 2: require it
                "port-forwarding-enabled": False,
                "peer-port-random-on-start": False,
                "rpc-host-whitelist-enabled": False,
                "rpc-whitelist-enabled": True,
                "rpc-whitelist": "127.0.0.1",
                "download-queue-enabled": False,
                "seed-queue-enabled": False,
                "queue-stalled-enabled": False,
                "ratio-limit-enabled": False,
                "idle-seeding-limit-enabled": False,
                "speed-limit-up-enabled": False,
                "speed-limit-down-enabled": False,
                "alt-speed-enabled": False,
                "blocklist-enabled": False,
                "start-added-torrents": True,
                "trash-original-torrent-files": False,
                "bind-address-ipv6": "::1",
            }, f)
        self.proc = spawn([
            "transmission-daemon", "-f", "-g", config, "-p", str(self.rpc_port),
            "-r", "127.0.0.1", "-T", "-P", str(port), "-i", "127.0.0.1", "-w", save_dir,
            "--no-incomplete-dir", "-C", "-O", "-Y", "-M", "--no-utp", "-et", "-GSR",
            "--log-debug" if os.environ.get("CLIENTS_DEBUG") else "--log-info", "-e", self.log,
        ], open(os.path.join(state, "transmission.out"), "wb"))
        poll("transmission-daemon RPC", 30, lambda: self.call("session-get") is not None,
             self.proc, self.log)

    def call(self, method, **arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(3):
            headers = {"X-Transmission-Session-Id": self.session,
                       "Content-Type": "application/json"}
            try:
                reply = json.loads(http(self.url, body, headers))
            except urllib.error.HTTPError as e:
                if e.code == 409:  # CSRF protection: retry with the session id it hands out
                    self.session = e.headers["X-Transmission-Session-Id"]
                    continue
                raise
            if reply["result"] != "success":
                fail(f"transmission {method}: {reply['result']}", self.log)
            return reply["arguments"]
        fail(f"transmission {method}: no session id", self.log)

    def add(self, torrent, save_dir, paused):
        with open(torrent, "rb") as f:
            metainfo = base64.b64encode(f.read()).decode()
        added = self.call("torrent-add", metainfo=metainfo, paused=paused,
                          **{"download-dir": save_dir})
        self.id = (added.get("torrent-added") or added["torrent-duplicate"])["id"]

    def status(self):
        (t,) = self.call("torrent-get", ids=[self.id], fields=[
            "status", "percentDone", "leftUntilDone", "error", "errorString", "recheckProgress",
            "peersConnected", "haveValid", "sizeWhenDone"])["torrents"]
        if t["error"]:
            fail(f"transmission reports an error on the torrent: {t['errorString']}", self.log)
        return t

    def seed(self, torrent, save_dir):
        self.add(torrent, save_dir, paused=True)
        self.call("torrent-verify", ids=[self.id])

        def verified():
            t = self.status()
            done = t["status"] == self.STOPPED and t["leftUntilDone"] == 0 and t["haveValid"] > 0
            return done or t
        poll("transmission verifying the data", 90, verified, self.proc, self.log)
        self.call("torrent-start", ids=[self.id])
        poll("transmission seeding", 30,
             lambda: self.status()["status"] == self.SEED or self.status(), self.proc, self.log)

    def wait_no_peers(self):
        """Transmission 3.00 keeps at most one peer per IP address and torrent (its peer atoms
        are keyed by address alone) and silently drops a second connection from 127.0.0.1
        while the first is listed; so after the readiness probe, wait until it is gone."""
        poll("transmission dropping the probe connection", 30,
             lambda: self.status()["peersConnected"] == 0 or self.status(), self.proc, self.log)

    def download(self, torrent, save_dir, seconds):
        self.add(torrent, save_dir, paused=False)

        def complete():
            t = self.status()
            return (t["leftUntilDone"] == 0 and t["percentDone"] == 1
                    and t["status"] in (self.SEED_WAIT, self.SEED, self.STOPPED)) or t
        poll("transmission downloading", seconds, complete, self.proc, self.log)
        # Stopping the torrent closes its files; session-close ends the daemon.
        self.call("torrent-stop", ids=[self.id])
        self.call("session-close")
        stop(self.proc)


# --- aria2 (aria2c 1.36) -------------------------------------------------------------------------

def aria2_args(save_dir, state, port):
    return [
        "aria2c", "--no-conf", f"--dir={save_dir}", f"--listen-port={port}",
        "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--bt-require-crypto=false",
        "--bt-min-crypto-level=plain", "--disable-ipv6=true", "--file-allocation=none",
        "--check-certificate=false", "--summary-interval=0", "--console-log-level=warn",
        f"--log={os.path.join(state, 'aria2.log')}", "--log-level=info",
        f"--dht-file-path={os.path.join(state, 'dht.dat')}",
    ]


class Aria2:
    def __init__(self, state):
        self.log = os.path.join(state, "aria2.log")
        self.out = os.path.join(state, "aria2.out")

    def rpc(self, method, *params):
        body = json.dumps({"jsonrpc": "2.0", "id": "shoal", "method": method,
                           "params": list(params)}).encode()
        reply = json.loads(http(self.url, body, {"Content-Type": "application/json"}))
        if "error" in reply:
            fail(f"aria2 {method}: {reply['error']}", self.log)
        return reply["result"]

    def seed(self, torrent, save_dir, state, port):
        rpc_port = free_port()
        self.url = f"http://127.0.0.1:{rpc_port}/jsonrpc"
        # RPC mode keeps aria2 running and lets us ask whether it is seeding.
        self.proc = spawn(aria2_args(save_dir, state, port) + [
            "--enable-rpc=true", f"--rpc-listen-port={rpc_port}", "--rpc-listen-all=false",
            "--check-integrity=true", "--seed-ratio=0.0", torrent,
        ], open(self.out, "wb"))

        def seeding():
            active = self.rpc("aria2.tellActive", ["status", "seeder", "completedLength",
                                                   "totalLength", "verifiedLength",
                                                   "verifyIntegrityPending"])
            if len(active) != 1:
                return active or "no active download"
            (d,) = active
            checking = "verifiedLength" in d or "verifyIntegrityPending" in d
            if not checking and d["seeder"] != "true":
                fail(f"aria2 checked the data and is not a seed (pieces fail their hash): {d}",
                     self.log)
            return (not checking and d["completedLength"] == d["totalLength"]) or d
        poll("aria2 verifying and seeding", 90, seeding, self.proc, self.log)

    def download(self, torrent, save_dir, state, port, seconds):
        # Without RPC, aria2c exits when the download is complete; --seed-time=0 stops it from
        # seeding after that. Exit status 0 means every piece was downloaded and verified.
        self.proc = spawn(aria2_args(save_dir, state, port) + ["--seed-time=0", torrent],
                          open(self.out, "wb"))
        try:
            code = self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail(f"aria2c: download not complete after {seconds:.0f}s", self.log)
        if code != 0:
            fail(f"aria2c exited with status {code}", self.log)


# --- qBittorrent (qbittorrent-nox 4.5, Web API v2) ------------------------------------------

class QBittorrent:
    SEEDING = ("uploading", "stalledUP", "queuedUP", "forcedUP")

    def __init__(self, save_dir, state, port):
        self.log = os.path.join(state, "qBittorrent", "data", "logs", "qbittorrent.log")
        web_port = free_port()
        self.url = f"http://127.0.0.1:{web_port}/api/v2"
        config = os.path.join(state, "qBittorrent", "config")
        os.makedirs(config, exist_ok=True)
        with open(os.path.join(config, "qBittorrent.conf"), "w") as f:
            f.write(f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Port={port}
Session\\InterfaceAddress=127.0.0.1
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Encryption=2
Session\\BTProtocol=TCP
Session\\uTPEnabled=false
Session\\AnonymousModeEnabled=false
Session\\MultiConnectionsPerIp=true
Session\\QueueingSystemEnabled=false
Session\\TempPathEnabled=false
Session\\AddExtensionToIncompleteFiles=false
Session\\Preallocation=false
Session\\DefaultSavePath={save_dir}
Session\\GlobalMaxRatio=-1
Session\\GlobalMaxSeedingMinutes=-1

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port={web_port}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
Connection\\UPnP=false
""")
        # Encryption=2 is "disabled": plaintext only. LocalHostAuth=false lets requests from
        # 127.0.0.1 use the Web API without logging in. qbittorrent-nox 4.5 has no
        # --confirm-legal-notice flag (4.6 added it); LegalNotice/Accepted does the same.
        self.proc = spawn([
            "qbittorrent-nox", f"--profile={state}", f"--webui-port={web_port}",
            f"--torrenting-port={port}",
        ], open(os.path.join(state, "qbittorrent.out"), "wb"))
        poll("qbittorrent-nox Web API", 60, lambda: bool(http(f"{self.url}/app/version")),
             self.proc, self.log)

    def post(self, path, fields):
        return http(f"{self.url}/{path}", urllib.parse.urlencode(fields).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"})

    def add(self, torrent, save_dir, paused):
        boundary = uuid.uuid4().hex
        with open(torrent, "rb") as f:
            data = f.read()
        parts = []
        for name, value in (("savepath", save_dir), ("paused", paused),
                            ("skip_checking", "false"), ("contentLayout", "Original")):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                         f"\r\n\r\n{value}\r\n".encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="torrents"; '
                     f'filename="t.torrent"\r\nContent-Type: application/x-bittorrent\r\n\r\n'
                     .encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        reply = http(f"{self.url}/torrents/add", b"".join(parts),
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if reply.strip() != b"Ok.":
            fail(f"qbittorrent refused the torrent: {reply!r}", self.log)
        poll("qbittorrent adding the torrent", 30, lambda: len(self.torrents()) == 1,
             self.proc, self.log)
        self.hash = self.torrents()[0]["hash"]

    def torrents(self):
        return json.loads(http(f"{self.url}/torrents/info"))

    def status(self):
        (t,) = [t for t in self.torrents() if t["hash"] == self.hash]
        if t["state"] in ("error", "missingFiles"):
            fail(f"qbittorrent reports {t['state']} on the torrent", self.log)
        return t

    def complete(self):
        t = self.status()
        return (t["progress"] == 1 and t["state"] in self.SEEDING) or {
            k: t[k] for k in ("state", "progress", "num_seeds", "num_leechs")}

    def seed(self, torrent, save_dir):
        self.add(torrent, save_dir, paused="false")
        poll("qbittorrent verifying and seeding", 90, self.complete, self.proc, self.log)

    def download(self, torrent, save_dir, seconds, peer):
        self.add(torrent, save_dir, paused="false")
        if peer:
            self.post("torrents/addPeers", {"hashes": self.hash, "peers": peer})
        poll("qbittorrent downloading", seconds, self.complete, self.proc, self.log)
        # Pause (libtorrent flushes and closes the files), then shut down cleanly.
        self.post("torrents/pause", {"hashes": self.hash})
        try:
            self.post("app/shutdown", {})
        except (OSError, urllib.error.URLError):
            pass  # it may close the connection as it goes down
        stop(self.proc)


# --- libtorrent (PyPI), through lt_tool.py's loopback session ---------------------------------

def import_lt_tool():
    try:
        import lt_tool
    except ImportError as e:
        sys.exit(f"python3 cannot import libtorrent ({e}): {HINT}")
    return lt_tool


def libtorrent_seed(torrent, save_dir, port):
    lt_tool = import_lt_tool()
    lt = lt_tool.lt
    ses = lt_tool.session(port)
    handle = lt_tool.add(ses, torrent, save_dir)
    poll("libtorrent verifying and seeding", 90,
         lambda: handle.status().state == lt.torrent_status.seeding or str(handle.status().state))
    return ses, handle


def libtorrent_download(torrent, save_dir, port, seconds, peer):
    lt_tool = import_lt_tool()
    ses = lt_tool.session(port)
    handle = lt_tool.add(ses, torrent, save_dir)
    if peer:
        host, p = peer.rsplit(":", 1)
        handle.connect_peer((host, int(p)))
    poll("libtorrent downloading", seconds,
         lambda: handle.status().is_seeding or f"{handle.status().progress * 100:.1f}%")
    handle.pause()
    handle.flush_cache()
    del handle, ses


# --- command line ------------------------------------------------------------------------------

def seed(client, torrent, save_dir, state, port):
    os.makedirs(state, exist_ok=True)
    if client in ("transmission", "aria2"):
        write_padding(torrent, save_dir)
    if client == "transmission":
        c = Transmission(save_dir, state, port)
        c.seed(torrent, save_dir)
    elif client == "aria2":
        c = Aria2(state)
        c.seed(torrent, save_dir, state, port)
    elif client == "qbittorrent":
        c = QBittorrent(save_dir, state, port)
        c.seed(torrent, save_dir)
    elif client == "libtorrent":
        c = libtorrent_seed(torrent, save_dir, port)
    else:
        sys.exit(f"unknown client {client!r}")
    wait_accepting(torrent, port, 60, getattr(c, "proc", None), getattr(c, "log", None))
    if client == "transmission":
        c.wait_no_peers()
    print("seeding", flush=True)
    proc = getattr(c, "proc", None)
    while proc is None or proc.poll() is None:
        time.sleep(0.5)
    fail(f"{client} exited while seeding (status {proc.returncode})", getattr(c, "log", None))


def download(client, torrent, save_dir, state, port, seconds, peer):
    os.makedirs(state, exist_ok=True)
    start = time.time()
    if peer and client in ("transmission", "aria2"):
        sys.exit(f"{client} cannot be given a peer address; use a tracker or let the seed dial it")
    if client == "transmission":
        Transmission(save_dir, state, port).download(torrent, save_dir, seconds)
    elif client == "aria2":
        Aria2(state).download(torrent, save_dir, state, port, seconds)
    elif client == "qbittorrent":
        QBittorrent(save_dir, state, port).download(torrent, save_dir, seconds, peer)
    elif client == "libtorrent":
        libtorrent_download(torrent, save_dir, port, seconds, peer)
    else:
        sys.exit(f"unknown client {client!r}")
    print(json.dumps({"client": client, "seconds": round(time.time() - start, 2)}), flush=True)


def main(argv):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "tracker":
        tracker(int(argv[2]), argv[3], argv[4:])
    elif cmd == "wait-peers":
        wait_peers(argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]))
    elif cmd == "seed":
        seed(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif cmd == "download":
        download(argv[2], argv[3], argv[4], argv[5], int(argv[6]), float(argv[7]),
                 argv[8] if len(argv) > 8 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
